"""Benchmark 1, app overhead: the same job through Kubin's engine and as a plain diffusers call.

Both sides run the very same loaded pipeline objects with the same parameters and seed, so they make
the same pixels (checked before timing). The engine's side is a whole job as a user runs it: submit
(validation, seed), the queue hand-off to the worker thread, the progress/cancel hook on every step
and saving the PNG with its metadata. The plain side is the diffusers call alone, and again with a
plain `image.save(png)`, the least a script does with its image. Runs alternate between the sides
so drift of the machine hits both alike; the table gives medians and their ratio.

    venv/bin/python benchmarks/overhead.py                        # tiny-kd22 and tiny-kd50-t2i on CPU
    venv/bin/python benchmarks/overhead.py --models tiny-kd22 --runs 100 --steps 25
    venv/bin/python benchmarks/overhead.py --device cuda --models kd22 --steps 50 --size 768
    venv/bin/python benchmarks/overhead.py --models tiny-kd6 --steps 4       # text to video with sound

A model without text to image runs text to video: the engine's side then also writes the mp4, its WebP
preview and (Kandinsky 6) the soundtrack's AAC track and WAV; the plain side's save is diffusers'
`export_to_video` and a WAV. Its "same" check is the frame count and the soundtrack's samples (the
mp4 is lossy).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from machine import machine_line

SEED = 1234
PROMPT = "a red cat sitting on a wooden chair, oil painting"


def plain_call(model, params, seed: int) -> Callable[[], list]:
    """The diffusers call a script would write for this model, on the engine's loaded pipelines."""
    import torch

    def gen():
        return [torch.Generator("cpu").manual_seed(seed)]

    family = model.spec.family
    if family in ("kd22", "kd21"):

        def run():
            with torch.no_grad():
                embeds = model.prior(
                    prompt=params.prompt,
                    negative_prompt=params.prior_negative or None,
                    num_images_per_prompt=1,
                    num_inference_steps=params.prior_steps,
                    guidance_scale=params.prior_guidance_scale,
                    generator=gen(),
                )
                extra = {"prompt": params.prompt} if family == "kd21" else {}
                return model.decoder(
                    image_embeds=embeds.image_embeds,
                    negative_image_embeds=embeds.negative_image_embeds,
                    width=params.width,
                    height=params.height,
                    num_inference_steps=params.steps,
                    guidance_scale=params.guidance_scale,
                    generator=gen(),
                    **extra,
                ).images

        return run
    if family == "kd50":

        def run():
            with torch.no_grad():
                return model.pipe(
                    prompt=[params.prompt],
                    negative_prompt=params.negative_prompt or None,
                    width=params.width,
                    height=params.height,
                    num_inference_steps=params.steps,
                    guidance_scale=params.guidance_scale,
                    generator=gen(),
                ).image

        return run
    if family == "kd30":

        def run():
            with torch.no_grad():
                return model.pipe(
                    prompt=params.prompt,
                    negative_prompt=params.negative_prompt or None,
                    width=params.width,
                    height=params.height,
                    num_inference_steps=params.steps,
                    guidance_scale=params.guidance_scale,
                    num_images_per_prompt=1,
                    generator=gen(),
                ).images

        return run
    if family == "kd6":  # text to video with its soundtrack: the frames and the waveform

        def run():
            with torch.no_grad():
                out = model.pipe(
                    prompt=params.prompt,
                    negative_prompt=params.negative_prompt or None,
                    width=params.width,
                    height=params.height,
                    num_frames=params.frames,
                    frame_rate=float(params.fps),
                    num_inference_steps=params.steps,
                    guidance_scale=params.guidance_scale,
                    generator=gen()[0],
                    sample_audio=params.sample_audio,
                )
            return [(out.frames[0], out.audio[0].float().numpy() if out.audio is not None else None)]

        return run
    raise SystemExit(f"overhead.py has no plain diffusers call for the {family} family yet")


def measure(model_id: str, args, out: Path) -> dict:
    import numpy as np

    from kubin.engine import Engine, Job
    from kubin.models.manager import ModelManager
    from kubin.params import params_class

    manager = ModelManager(device=args.device, dtype=args.dtype)
    engine = Engine(manager, out / "engine")
    spec = manager.spec(model_id)
    overrides = {"prompt": PROMPT, "seed": SEED, "negative_prompt": ""}
    if args.steps:
        overrides["steps"] = args.steps
    if args.size:
        overrides.update(width=args.size, height=args.size)
    task = "t2i" if spec.supports("t2i") else "t2v"  # a video model: its video and (Kandinsky 6) its sound
    values = {**spec.defaults.get(task, {}), **overrides}
    params = params_class(task).from_dict(values)
    model = manager.get(model_id, task)
    plain = plain_call(model, params, SEED)
    plain_dir = out / "plain"
    plain_dir.mkdir(parents=True, exist_ok=True)

    def via_engine():
        handle = engine.run(Job(task, model_id, dict(values)))
        return handle.results[0]

    def via_diffusers():
        return plain()[0]

    def via_diffusers_saved():
        output = plain()[0]
        if task == "t2i":
            path = plain_dir / "plain.png"
            output.save(path)
            return path
        # A script's save of a video: diffusers' own mp4 export, and the sound as a WAV.
        from diffusers.utils import export_to_video

        from kubin.outputs import wav_bytes

        frames, sound = output
        path = plain_dir / "plain.mp4"
        export_to_video(frames, str(path), fps=params.fps)
        if sound is not None:
            path.with_suffix(".wav").write_bytes(wav_bytes(sound, model.pipe.audio_sample_rate))
        return path

    from PIL import Image

    made, plain_output = via_engine(), via_diffusers()
    if task == "t2i":
        engine_pixels = np.asarray(Image.open(made.path).convert("RGB"))
        same = bool(np.array_equal(engine_pixels, np.asarray(plain_output.convert("RGB"))))
    else:  # the mp4 is lossy: the same frame count and the very same soundtrack samples
        from kubin.outputs import wav_bytes

        frames, sound = plain_output
        same = made.frames == len(frames)
        if sound is not None:
            same = same and made.audio.read_bytes() == wav_bytes(sound, model.pipe.audio_sample_rate)

    sides = {"engine": via_engine, "diffusers": via_diffusers, "diffusers+save": via_diffusers_saved}
    for _ in range(args.warmup):
        for fn in sides.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for i in range(args.runs):
        # Rotate which side goes first, so neither always runs on a warmer cache.
        for name in order[i % 3 :] + order[: i % 3]:
            # CPU time of the whole process (the engine's worker thread too): unlike the wall clock it
            # hardly grows when other programs share the CPUs.
            start, start_cpu = time.perf_counter(), time.process_time()
            sides[name]()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    engine.close(wait=True)
    manager.unload()
    return {
        "model": model_id,
        "steps": f"{params.prior_steps}+{params.steps}"
        if hasattr(params, "prior_steps") and spec.family in ("kd21", "kd22")
        else str(params.steps),
        "size": f"{params.width}x{params.height}",
        "same": same,
        "times": times,
        "cpu": cpu,
    }


def summarise(row: dict) -> list[str]:
    t = row["times"]
    med = {name: statistics.median(v) for name, v in t.items()}
    # Per-run ratios: each engine run against the plain run made next to it, then the median of those.
    paired = statistics.median(e / p for e, p in zip(t["engine"], t["diffusers"], strict=True))
    q = {name: statistics.quantiles(v, n=4) for name, v in t.items()}
    return [
        row["model"],
        row["size"],
        row["steps"],
        str(len(t["engine"])),
        f"{med['diffusers'] * 1000:.1f} ({q['diffusers'][0] * 1000:.1f}-{q['diffusers'][2] * 1000:.1f})",
        f"{med['diffusers+save'] * 1000:.1f}",
        f"{med['engine'] * 1000:.1f} ({q['engine'][0] * 1000:.1f}-{q['engine'][2] * 1000:.1f})",
        f"{med['engine'] / med['diffusers']:.3f}",
        f"{paired:.3f}",
        f"{med['engine'] / med['diffusers+save']:.3f}",
        f"{statistics.median(row['cpu']['engine']) / statistics.median(row['cpu']['diffusers']):.3f}",
        "yes" if row["same"] else "NO",
    ]


HEADER = [
    "model",
    "size",
    "steps",
    "runs",
    "diffusers ms (IQR)",
    "diffusers+save ms",
    "Kubin engine ms (IQR)",
    "ratio",
    "paired ratio",
    "ratio vs +save",
    "CPU-time ratio",
    "same pixels",
]


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny-kd22", "tiny-kd50-t2i"])
    parser.add_argument("--runs", type=int, default=50, help="timed runs per side (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per side first")
    parser.add_argument(
        "--steps", type=int, default=25, help="denoising steps (default 25; 0: the model's own)"
    )
    parser.add_argument("--size", type=int, default=0, help="width = height (default: the model's own)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    logging_quiet()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kubin-overhead-") as tmp:
        for model_id in args.models:
            row = measure(model_id, args, Path(tmp) / model_id)
            rows.append(summarise(row))
            print(f"{model_id}: done", file=sys.stderr, flush=True)
    print(machine_line(args.device, args.threads))
    print(
        f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (other work on the machine)"
    )
    print()
    print(markdown_table(rows))
    return 0


def logging_quiet() -> None:
    import logging

    import diffusers
    import transformers

    logging.basicConfig(level=logging.WARNING)
    diffusers.utils.logging.disable_progress_bar()  # the loading bars, not timed but noisy
    transformers.utils.logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
