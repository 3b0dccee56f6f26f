"""LoRA training cost: one step of Kubin's training loop against a plain diffusers + peft step on the same
model part, pictures, rank and batch (the plain loop encodes the pictures once, as caching does, and does
only forward, loss, backward, clipping and the AdamW step), alternating in the same process; then steps per
second of Kubin's loop with the encodings cached on disk and with the encoders run every step. For a
text-to-video model (`--clips`), only the last: Kubin's loop on short generated clips, cached and not.

    venv/bin/python benchmarks/training.py                        # tiny-kd22's decoder on the CPU
    venv/bin/python benchmarks/training.py --model kd22 --device cuda --resolution 768 --steps 50
    venv/bin/python benchmarks/training.py --model tiny-kd50-t2v --clips --frames 5 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from machine import machine_line

MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


def make_pictures(folder: Path, count: int, size: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        array = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / f"pic{i}.png")
    return folder


def make_clips(folder: Path, count: int, size: int, frames: int, fps: float) -> Path:
    """`count` mp4 clips of random frames, each (frames - 1) / fps seconds and a little more."""
    import imageio_ffmpeg
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        writer = imageio_ffmpeg.write_frames(str(folder / f"clip{i}.mp4"), (size, size), fps=fps,
                                             macro_block_size=2, ffmpeg_log_level="error")  # fmt: skip
        writer.send(None)
        for _ in range(frames + 2):
            writer.send(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        writer.close()
    return folder


def sources_of(spec) -> dict[str, str]:
    from kubin.models.tiny import tiny_model_folder

    if spec.tiny:
        return {sub.name: str(sub) for sub in tiny_model_folder(spec.id).iterdir() if sub.is_dir()}
    return spec.sources


def kubin_steps(spec, pictures: Path, root: Path, args, cache: bool, name: str) -> tuple[list[float], float]:
    """Per-step times of Kubin's loop (from its step events), and the whole run's wall time."""
    from kubin.training.loop import Trainer
    from kubin.training.options import TrainingOptions

    options = TrainingOptions(model=spec.id, data=str(pictures), output=name, steps=args.steps, rank=args.rank,
                              batch_size=args.batch, resolution=args.resolution, cache_latents=cache,
                              checkpoint_every=10**6, target_modules=[] if args.clips else MODULES,
                              mixed_precision=args.mixed_precision, frames=args.frames, fps=args.fps)  # fmt: skip
    marks: list[float] = []
    trainer = Trainer(
        options, spec, sources_of(spec), root / "runs" / name, root / "lora", device=args.device
    )
    start = time.perf_counter()
    trainer.run(lambda e: e.kind == "step" and marks.append(time.perf_counter()))
    whole = time.perf_counter() - start
    return [b - a for a, b in zip(marks, marks[1:], strict=False)], whole


def plain_steps(spec, pictures: Path, args) -> list[float]:
    """The diffusers training example's decoder step, with peft's LoRA, on latents encoded beforehand."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, KandinskyV22Pipeline, KandinskyV22PriorPipeline
    from peft import LoraConfig
    from PIL import Image

    from kubin.models.prior_decoder import find_prior_and_decoder

    prior_dir, decoder_dir = find_prior_and_decoder(spec, sources_of(spec))
    prior = KandinskyV22PriorPipeline.from_pretrained(prior_dir).to(args.device)
    decoder = KandinskyV22Pipeline.from_pretrained(decoder_dir).to(args.device)
    unet, movq, encoder = decoder.unet, decoder.movq, prior.image_encoder
    for module in (unet, movq, encoder):
        module.requires_grad_(False)
    torch.manual_seed(0)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=MODULES))  # fmt: skip
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    scheduler = DDPMScheduler.from_config(decoder.scheduler.config)
    images = [Image.open(p).convert("RGB").resize((args.resolution, args.resolution))
              for p in sorted(pictures.glob("*.png"))]  # fmt: skip
    with torch.no_grad():
        arrays = np.stack([np.asarray(image, dtype=np.float32) / 127.5 - 1 for image in images])
        pixels = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous().to(args.device)
        latents_all = movq.encode(pixels).latents
        clip = prior.image_processor(images, return_tensors="pt").pixel_values.to(args.device)
        embeds_all = encoder(clip).image_embeds
    unet.train()
    times = []
    for step in range(args.steps):
        start = time.perf_counter()
        picked = torch.arange(step * args.batch, (step + 1) * args.batch) % len(images)
        latents, embeds = latents_all[picked], embeds_all[picked]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (args.batch,), device=args.device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        predicted = unet(noisy, timesteps, None, added_cond_kwargs={"image_embeds": embeds}).sample[:, :4]
        loss = F.mse_loss(predicted.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny-kd22")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each loop")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--pictures", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", action="store_true", help="a text-to-video model: train on short clips")
    parser.add_argument("--frames", type=int, default=0, help="frames of each clip (0: the model's own)")
    parser.add_argument("--fps", type=float, default=8, help="the clips' frame rate")
    args = parser.parse_args()
    import os

    import torch

    from kubin.models.registry import resolve_model

    print(machine_line(args.device, torch.get_num_threads()))
    print(f"load average {os.getloadavg()[0]:.1f}")
    spec = resolve_model(args.model)
    root = Path(tempfile.mkdtemp(prefix="kubin-train-bench-"))
    if args.clips:
        frames = args.frames or int(spec.defaults["t2v"]["frames"])
        clips = make_clips(root / "clips", args.pictures, args.resolution, frames, args.fps)
        return video_steps(spec, clips, root, args, frames)
    pictures = make_pictures(root / "pictures", args.pictures, args.resolution)
    ours, plain, cached, uncached = [], [], [], []
    for round_ in range(args.rounds):
        steps, whole = kubin_steps(spec, pictures, root, args, True, f"cached{round_}")
        ours += steps[1:]
        cached.append((args.steps / whole, len(steps) / sum(steps)))
        plain += plain_steps(spec, pictures, args)
        steps, whole = kubin_steps(spec, pictures, root, args, False, f"uncached{round_}")
        uncached.append((args.steps / whole, len(steps) / sum(steps)))
    mine, theirs = statistics.median(ours), statistics.median(plain)
    print(f"\n{spec.id}, decoder UNet, rank {args.rank}, batch {args.batch}, {args.resolution}x{args.resolution}, "
          f"{args.steps} steps x {args.rounds} rounds, {args.device}, mixed precision {args.mixed_precision}\n")  # fmt: skip
    print("| loop | median step | ratio |")
    print("|---|---|---|")
    print(f"| plain diffusers + peft | {theirs * 1000:.1f} ms | 1.00 |")
    print(f"| Kubin (cached encodings) | {mine * 1000:.1f} ms | {mine / theirs:.2f} |")
    print("\n| Kubin's loop | steps/s, whole run (load, cache, steps, save) | steps/s, steps only |")
    print("|---|---|---|")
    for label, runs in (("encodings cached on disk", cached), ("encoders every step", uncached)):
        whole = statistics.median(r[0] for r in runs)
        steps_only = statistics.median(r[1] for r in runs)
        print(f"| {label} | {whole:.1f} | {steps_only:.1f} |")


def video_steps(spec, clips: Path, root: Path, args, frames: int) -> None:
    """Kubin's loop on clips, encodings cached and not (alternating rounds): there is no plain loop to hold
    it against here (diffusers ships no Kandinsky 5 training example)."""
    cached, uncached = [], []
    for round_ in range(args.rounds):
        for cache, runs in ((True, cached), (False, uncached)):
            steps, whole = kubin_steps(spec, clips, root, args, cache, f"{'c' if cache else 'u'}{round_}")
            runs.append((args.steps / whole, len(steps) / sum(steps)))
    print(f"\n{spec.id}, transformer, rank {args.rank}, batch {args.batch}, {args.pictures} clips of {frames} "
          f"frames at {args.resolution}x{args.resolution}, {args.steps} steps x {args.rounds} rounds, "
          f"{args.device}, mixed precision {args.mixed_precision}\n")  # fmt: skip
    print("| Kubin's loop on clips | steps/s, whole run (load, cache, steps, save) | steps/s, steps only |")
    print("|---|---|---|")
    for label, runs in (("encodings cached on disk", cached), ("encoders every step", uncached)):
        whole = statistics.median(r[0] for r in runs)
        steps_only = statistics.median(r[1] for r in runs)
        print(f"| {label} | {whole:.1f} | {steps_only:.1f} |")


if __name__ == "__main__":
    main()
