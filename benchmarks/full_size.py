"""Benchmark 2, full-size architectures with random weights: no download, the real configs.

Two tables. `count` builds every big part on PyTorch's meta device (no memory, no time) and gives
its parameters and the weight memory per precision: what each part needs on a GPU, and so what each
offload mode has to hold at once. `step` builds a denoiser for real with random weights (on the CPU
here, on a GPU with --device cuda) and times one denoising step as the pipeline takes it (the
guidance batch of two for 2.2 and 3.0; two calls for Kandinsky 5), with the peak memory of the
process, once per option set; each measurement runs in its own process so peaks do not mix.

    venv/bin/python benchmarks/full_size.py count
    venv/bin/python benchmarks/full_size.py step                      # CPU: kd22 fp32/bf16/options, kd50 Lite bf16
    venv/bin/python benchmarks/full_size.py step --parts kd30-unet --dtypes bf16 --size 256
    venv/bin/python benchmarks/full_size.py step --device cuda --size 1024 --dtypes fp16 bf16   # on a GPU

The configs are written out below from the published config.json files (diffusers' conversion
scripts and the authors' repos), so nothing is fetched.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import machine_line

# kandinsky-community/kandinsky-2-2-decoder unet/config.json: the 2.1 UNet of diffusers'
# scripts/convert_kandinsky_to_diffusers.py, conditioned on the 1280-d image embedding only.
KD22_UNET = {
    "act_fn": "silu",
    "addition_embed_type": "image",
    "addition_embed_type_num_heads": 64,
    "attention_head_dim": 64,
    "block_out_channels": [384, 768, 1152, 1536],
    "cross_attention_dim": 768,
    "down_block_types": [
        "ResnetDownsampleBlock2D",
        "SimpleCrossAttnDownBlock2D",
        "SimpleCrossAttnDownBlock2D",
        "SimpleCrossAttnDownBlock2D",
    ],
    "encoder_hid_dim": 1280,
    "encoder_hid_dim_type": "image_proj",
    "in_channels": 4,
    "layers_per_block": 3,
    "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
    "out_channels": 8,
    "resnet_time_scale_shift": "scale_shift",
    "sample_size": 64,
    "up_block_types": [
        "SimpleCrossAttnUpBlock2D",
        "SimpleCrossAttnUpBlock2D",
        "SimpleCrossAttnUpBlock2D",
        "ResnetUpsampleBlock2D",
    ],
}
# kandinsky-2-2-decoder movq/config.json (the same MoVQ as 2.1).
KD22_MOVQ = {
    "block_out_channels": [128, 256, 256, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "norm_type": "spatial",
    "num_vq_embeddings": 16384,
    "out_channels": 3,
    "up_block_types": ["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
    "vq_embed_dim": 4,
}
# The 2.2 prior's CLIP ViT-bigG-14 image and text towers (laion/CLIP-ViT-bigG-14-laion2B-39B-b160k).
CLIP_BIGG_VISION = {
    "hidden_size": 1664,
    "intermediate_size": 8192,
    "num_attention_heads": 16,
    "num_hidden_layers": 48,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1280,
}
CLIP_BIGG_TEXT = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "vocab_size": 49408,
}
# kandinskylab Kandinsky-5.0 Lite transformer/config.json (the authors' dit_params).
KD50_LITE_DIT = {
    "in_visual_dim": 16,
    "out_visual_dim": 16,
    "time_dim": 512,
    "patch_size": (1, 2, 2),
    "model_dim": 1792,
    "ff_dim": 7168,
    "num_text_blocks": 2,
    "num_visual_blocks": 32,
    "axes_dims": (16, 24, 24),
    "visual_cond": True,
    "in_text_dim": 3584,
    "in_text_dim2": 768,
}
# Kandinsky 6.0 Video Lite transformer: the released dimensions (the authors' ComfyUI adapter lists them
# for its checkpoint detector, kandinskylab/kandinsky-6 comfyui/kandinsky6/register.py); the audio branch is
# half the video width. Pro (model_dim 4096) is diffusers' default config; its audio widths are not given
# there, so Pro's count assumes half the video width as in Lite (model card: Lite 3B, Pro 29B).
KD6_COMMON = {
    "cross_gates": True,
    "fix_modulation": True,
    "ca_rope": True,
    "visual_token_type_num_embeddings": 2,
}
KD6_LITE_DIT = KD6_COMMON | {
    "time_dim": 512,
    "model_dim": 1792,
    "ff_dim": 7168,
    "num_text_blocks": 2,
    "num_visual_blocks": 32,
    "axes_dims": (16, 24, 24),
    "model_dim_a": 896,
    "time_dim_a": 512,
    "ff_dim_a": 3584,
    "axes_dims_a": (16, 24, 24),
}
KD6_PRO_DIT = KD6_COMMON | {"model_dim_a": 2048, "ff_dim_a": 8192}
# Qwen/Qwen2.5-VL-7B-Instruct config.json (transformers' own default is the 72B).
QWEN25_VL_7B = {
    "text_config": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "out_hidden_size": 3584},
}
# openai/clip-vit-large-patch14 text tower.
CLIP_L_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
}
TEXT_TOKENS = {"kd30": 128, "kd50": 128}  # prompt length the step is timed with

PARTS = {
    # name: (family, what, builder key)
    "kd22-prior": ("kd22", "PriorTransformer (diffusion prior)"),
    "kd22-clip-image": ("kd22", "CLIP ViT-bigG image encoder"),
    "kd22-clip-text": ("kd22", "CLIP ViT-bigG text encoder"),
    "kd22-unet": ("kd22", "decoder UNet"),
    "kd22-movq": ("kd22", "MoVQ"),
    "kd30-unet": ("kd30", "Kandinsky3UNet"),
    "kd50-lite-dit": ("kd50", "Kandinsky 5 Lite transformer"),
    "kd50-qwen": ("kd50", "Qwen2.5-VL 7B text encoder"),
    "kd50-clip-text": ("kd50", "CLIP ViT-L text encoder"),
    "kd6-lite-dit": ("kd6", "Kandinsky 6 Video Lite video+audio transformer"),
    "kd6-pro-dit": ("kd6", "Kandinsky 6 Video Pro video+audio transformer (audio widths assumed)"),
}
STEP_PARTS = ("kd22-unet", "kd50-lite-dit", "kd30-unet")
# Parts that keep plain tensors (not buffers) made in __init__, which a meta build cannot fill in.
BUILT_IN_PLACE = ("kd50-lite-dit",)


def build(part: str):
    """The part with its real architecture, on whatever device is current (meta for counting)."""
    if part == "kd22-unet":
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel(**KD22_UNET)
    if part == "kd22-movq":
        from diffusers import VQModel

        return VQModel(**KD22_MOVQ)
    if part == "kd22-prior":
        from diffusers import PriorTransformer

        return PriorTransformer()  # diffusers' defaults are the Kandinsky prior (its conversion script)
    if part == "kd22-clip-image":
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        return CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_BIGG_VISION))
    if part == "kd22-clip-text":
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        return CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG_TEXT))
    if part == "kd30-unet":
        from diffusers import Kandinsky3UNet

        return Kandinsky3UNet()  # diffusers' defaults are kandinsky-3's unet/config.json
    if part == "kd50-lite-dit":
        from diffusers import Kandinsky5Transformer3DModel

        return Kandinsky5Transformer3DModel(**KD50_LITE_DIT)
    if part in ("kd6-lite-dit", "kd6-pro-dit"):
        from diffusers import Kandinsky6Transformer3DModel

        return Kandinsky6Transformer3DModel(**(KD6_LITE_DIT if part == "kd6-lite-dit" else KD6_PRO_DIT))
    if part == "kd50-qwen":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**QWEN25_VL_7B))
    if part == "kd50-clip-text":
        from transformers import CLIPTextConfig, CLIPTextModel

        return CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT))
    raise SystemExit(f"unknown part {part}")


def count(args) -> int:
    import torch

    print("| part | family | parameters | fp32 GB | fp16/bf16 GB | int8 GB (weights only) |")
    print("|---|---|---|---|---|---|")
    for part, (family, what) in PARTS.items():
        with torch.device("meta"):
            module = build(part)
        n = sum(p.numel() for p in module.parameters())
        gb = n / 1e9
        print(f"| {what} (`{part}`) | {family} | {n / 1e9:.3f} B | {gb * 4:.2f} | {gb * 2:.2f} | {gb:.2f} |")
    return 0


def step_inputs(part: str, size: int, dtype, device: str):
    """One denoising step's inputs at an image of size x size, as the pipeline builds them."""
    import torch

    latent = size // 8
    g = torch.Generator("cpu").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    if part == "kd22-unet":  # classifier-free guidance: negative and positive as one batch of 2
        kwargs = {
            "sample": randn(2, 4, latent, latent),
            "timestep": torch.tensor([500, 500], device=device),
            "encoder_hidden_states": None,
            "added_cond_kwargs": {"image_embeds": randn(2, 1280)},
        }
        return [kwargs]
    if part == "kd30-unet":
        tokens = TEXT_TOKENS["kd30"]
        kwargs = {
            "sample": randn(2, 4, latent, latent),
            "timestep": torch.tensor([500, 500], device=device),
            "encoder_hidden_states": randn(2, tokens, 4096),
            "encoder_attention_mask": torch.ones(2, tokens, device=device, dtype=torch.long),
        }
        return [kwargs]
    if part == "kd50-lite-dit":  # the pipeline calls the transformer twice: prompt, then negative
        tokens = TEXT_TOKENS["kd50"]
        visual = torch.cat(
            [
                randn(1, 1, latent, latent, 16),
                torch.zeros(1, 1, latent, latent, 17, dtype=dtype, device=device),
            ],
            dim=-1,
        )
        kwargs = {
            "hidden_states": visual,
            "encoder_hidden_states": randn(1, tokens, 3584),
            "pooled_projections": randn(1, 768),
            "timestep": torch.tensor([500.0], device=device, dtype=dtype),
            "visual_rope_pos": [
                torch.arange(1, device=device),
                torch.arange(latent // 2, device=device),
                torch.arange(latent // 2, device=device),
            ],
            "text_rope_pos": torch.arange(tokens, device=device),
            "scale_factor": [1.0, 1.0, 1.0],
            "sparse_params": None,
        }
        return [kwargs, kwargs]
    raise SystemExit(f"no step for {part}")


OPTION_SETS = {
    "default": "SDPA attention (PyTorch's default)",
    "attention-slicing": "attention in slices (set_attention_slice('auto'))",
    "channels-last": "weights and input in channels-last memory format",
    "compile": "torch.compile of the denoiser (warm-up reported apart)",
}


def fill_random(module, dtype, device: str) -> None:
    """Random weights, fast: build on meta, allocate, fill each tensor from a normal distribution."""
    import torch

    module.to(dtype=dtype)  # still on meta: allocated below in the precision measured, never in fp32 first
    module.to_empty(device=device)
    g = torch.Generator("cpu").manual_seed(0)
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=g) * 0.02)


def one_step(part: str, dtype_name: str, options: str, size: int, device: str, steps: int) -> dict:
    """Runs in its own process: build the part, time `steps` steps, report the peak memory."""
    import resource

    import torch

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    start = time.perf_counter()
    if part in BUILT_IN_PLACE:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # weights made in the measured precision, never in fp32 first
        try:
            with torch.device(device):
                module = build(part)
        finally:
            torch.set_default_dtype(previous)
    else:
        with torch.device("meta"):
            module = build(part)
        fill_random(module, dtype, device)
    # As from_pretrained does: the parts a model keeps in fp32 whatever the precision (Kandinsky 5's
    # time embeddings and modulations) go back to fp32.
    keep = getattr(module, "_keep_in_fp32_modules", None) or []
    if dtype != torch.float32:
        for name, sub in module.named_modules():
            if any(k in name.split(".") for k in keep):
                sub.to(torch.float32)
    module.eval()
    if options == "attention-slicing":
        module.set_attention_slice("auto")
    inputs = step_inputs(part, size, dtype, device)
    if options == "channels-last":
        module.to(memory_format=torch.channels_last)
        for kwargs in inputs:
            if kwargs.get("sample") is not None and kwargs["sample"].dim() == 4:
                kwargs["sample"] = kwargs["sample"].to(memory_format=torch.channels_last)
    built = time.perf_counter() - start
    forward = torch.compile(module) if options == "compile" else module

    def run():
        with torch.inference_mode():
            for kwargs in inputs:
                forward(**kwargs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    start = time.perf_counter()
    run()  # warm-up (and compilation)
    warmup = time.perf_counter() - start
    times, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)  # all threads: hardly moved by other programs' load
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    peak_gpu = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
    return {
        "part": part,
        "dtype": dtype_name,
        "options": options,
        "size": size,
        "build_s": built,
        "warmup_s": warmup,
        "step_s": statistics.median(times),
        "step_cpu_s": statistics.median(cpu),
        "steps": steps,
        "peak_rss_gb": peak_rss / 1e9,
        "peak_gpu_gb": peak_gpu / 1e9,
        "params": sum(p.numel() for p in module.parameters()),
    }


def step(args) -> int:
    rows = []
    for part in args.parts:
        for dtype in args.dtypes:
            for options in args.options:
                if options in ("attention-slicing", "channels-last") and part == "kd50-lite-dit":
                    continue  # a transformer: no slicing hook, no 4-D convolutions
                if options == "attention-slicing" and part == "kd30-unet":
                    continue  # Kandinsky3UNet has no set_attention_slice
                cmd = [
                    sys.executable, __file__, "_one", part, dtype, options,
                    str(args.size), args.device, str(args.steps),
                ]  # fmt: skip
                print(f"{part} {dtype} {options} ...", file=sys.stderr, flush=True)
                done = subprocess.run(cmd, capture_output=True, text=True, env=_env(args))
                if done.returncode != 0:
                    tail = (done.stderr.strip().splitlines() or ["?"])[-1]
                    rows.append({"part": part, "dtype": dtype, "options": options, "error": tail})
                    continue
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # each result as soon as it is in
    print(machine_line(args.device, args.threads))
    print(f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    gpu = args.device.startswith("cuda")
    print(
        "| part | size | precision | options | s / step | CPU s / step | warm-up s | build s | peak RSS GB"
        + (" | peak GPU GB |" if gpu else " |")
    )
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if gpu else ""))
    for r in rows:
        if "error" in r:
            print(f"| {r['part']} | | {r['dtype']} | {r['options']} | failed: {r['error'][:80]} | | | | |")
            continue
        line = (
            f"| {PARTS[r['part']][1]} | {r['size']}x{r['size']} | {r['dtype']} | {r['options']} | "
            f"{r['step_s']:.2f} | {r['step_cpu_s']:.2f} | {r['warmup_s']:.2f} | {r['build_s']:.1f} | {r['peak_rss_gb']:.1f} |"
        )
        if gpu:
            line += f" {r['peak_gpu_gb']:.1f} |"
        print(line)
    return 0


def _env(args) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_one":  # the child process of `step`
        part, dtype, options, size, device, steps = argv[1:]
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        print(json.dumps(one_step(part, dtype, options, int(size), device, int(steps))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("count", help="parameters and weight memory of every big part (meta device)")
    s = sub.add_parser("step", help="time one denoising step of full-size denoisers with random weights")
    s.add_argument("--parts", nargs="+", default=["kd22-unet", "kd50-lite-dit"], choices=STEP_PARTS)
    s.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "fp16", "bf16"])
    s.add_argument(
        "--options",
        nargs="+",
        default=["default", "attention-slicing", "channels-last"],
        choices=list(OPTION_SETS),
    )
    s.add_argument("--size", type=int, default=256, help="image side in pixels (latent = size / 8)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    s.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    return count(args) if args.command == "count" else step(args)


if __name__ == "__main__":
    sys.exit(main())
