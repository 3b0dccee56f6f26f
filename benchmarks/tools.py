"""Benchmark: the tool models' latency through Kubin's engine vs. the plain transformers pipeline.

Depth (a `depth-estimation` pipeline) and captions (an `image-text-to-text` pipeline): the engine's side is
what the UI, the CLI and the API call (`kubin.tools.jobs.estimate_depth` / `caption_image`: a tool job
queued, handed to the worker thread, the model fetched from the model manager, the image converted, the
result returned); the plain side calls the very same loaded pipeline object directly. Outputs are checked
to be identical first; runs alternate between the sides; the table gives medians and their ratio, and the
ratio of CPU time.

    venv/bin/python benchmarks/tools.py                        # tiny-depth and tiny-caption on the CPU
    venv/bin/python benchmarks/tools.py --full-size --runs 10  # Depth Anything V2 small and Florence-2 base
                                                               # architectures, random weights (no download)
    venv/bin/python benchmarks/tools.py --depth-model depth-anything/Depth-Anything-V2-Small-hf --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_line


def full_size_depth(folder: Path) -> str:
    """Depth Anything V2 small's architecture (DepthAnythingConfig's defaults, 24.8 M parameters) with random
    weights and its image processor (518 px), saved to a folder."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(DepthAnythingConfig()).eval().save_pretrained(folder)
    DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14, resample=3,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)  # fmt: skip
    return str(folder)


def full_size_caption(folder: Path, tokens: int) -> str:
    """Florence-2 base's architecture (DaViT base vision tower, a 6+6-layer 768-wide BART, 768 px, 577 image
    tokens) with random weights, a byte-level tokenizer, and exactly `tokens` new tokens per caption."""
    import torch
    from transformers import BartConfig, Florence2Config, Florence2ForConditionalGeneration, GenerationConfig

    from kubin.tools.tiny import save_caption

    save_caption(folder)  # the tokenizer and processor; the model is replaced below
    from transformers import AutoProcessor, CLIPImageProcessor, Florence2Processor

    tokenizer = AutoProcessor.from_pretrained(folder).tokenizer
    torch.manual_seed(0)
    text = BartConfig(vocab_size=51289, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                      decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024,
                      pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)  # fmt: skip
    config = Florence2Config(vision_config={"projection_dim": 768}, text_config=text,
                             image_token_id=tokenizer.image_token_id)  # fmt: skip
    model = Florence2ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(decoder_start_token_id=2, eos_token_id=2, pad_token_id=1, bos_token_id=0,
                                               min_new_tokens=tokens, max_new_tokens=tokens, do_sample=False,
                                               num_beams=1)  # fmt: skip
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"height": 768, "width": 768}, crop_size={"height": 768, "width": 768},
                                         do_center_crop=False, image_seq_length=577)  # fmt: skip
    Florence2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return str(folder)


def measure(sides: dict, runs: int) -> dict[str, tuple[list[float], list[float]]]:
    times = {name: ([], []) for name in sides}
    for _ in range(runs):
        for name, call in sides.items():  # alternate, so drift of the machine hits both alike
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth-model", default="tiny-depth")
    parser.add_argument("--caption-model", default="tiny-caption")
    parser.add_argument("--full-size", action="store_true", help="full-size architectures, random weights")
    parser.add_argument("--tokens", type=int, default=20, help="new tokens per caption (--full-size)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="the side of the test photo")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    os.environ.setdefault("KUBIN_CACHE_DIR", tempfile.mkdtemp(prefix="kubin-bench-tools-"))

    import numpy as np
    import torch
    from PIL import Image

    from kubin.engine import Engine
    from kubin.models.manager import ModelManager
    from kubin.tools.caption import caption
    from kubin.tools.jobs import caption_image, estimate_depth
    from kubin.tools.models import ToolModels

    scratch = Path(tempfile.mkdtemp(prefix="kubin-bench-tools-"))
    if args.full_size:
        args.depth_model = full_size_depth(scratch / "depth")
        args.caption_model = full_size_caption(scratch / "caption", args.tokens)
    engine = Engine(ModelManager(args.device, "fp32"), scratch / "output",
                    tool_models=ToolModels(args.depth_model, args.caption_model))  # fmt: skip
    photo = Image.fromarray(
        (np.random.default_rng(0).random((args.size, args.size, 3)) * 255).astype(np.uint8)
    )
    # Load both models through the engine once; the plain side calls the same pipeline objects.
    estimate_depth(engine, photo)
    caption_image(engine, photo)
    depth_pipe = engine.manager.tool_model(f"depth:{args.depth_model}", lambda: None)
    caption_pipe = engine.manager.tool_model(f"caption:{args.caption_model}", lambda: None)
    florence = "<CAPTION>"

    def plain_depth():
        with torch.no_grad():
            return depth_pipe(photo)["depth"]

    def plain_caption():
        with torch.no_grad():
            return caption_pipe(images=photo, text=florence, return_full_text=False)[0]["generated_text"]

    assert np.array_equal(np.asarray(plain_depth()), np.asarray(estimate_depth(engine, photo)))
    assert " ".join(plain_caption().split()) == caption_image(engine, photo) == caption(caption_pipe, photo)

    print(machine_line(args.device, torch.get_num_threads()))
    print(
        f"Load average: {os.getloadavg()[0]:.2f}; {args.runs} runs per side, a {args.size}x{args.size} photo\n"
    )
    print("| tool | model | engine median (s) | plain median (s) | ratio | CPU-time ratio |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("depth", args.depth_model, lambda: estimate_depth(engine, photo), plain_depth),
        ("caption", args.caption_model, lambda: caption_image(engine, photo), plain_caption),
    ]
    for tool, model, through_engine, plain in rows:
        times = measure({"engine": through_engine, "plain": plain}, args.runs)
        (ew, ec), (pw, pc) = times["engine"], times["plain"]
        name = (
            "random-weight " + ("Depth Anything V2 small" if tool == "depth" else "Florence-2 base")
            if args.full_size
            else model
        )
        e, p = statistics.median(ew), statistics.median(pw)
        cpu = statistics.median(ec) / statistics.median(pc) if statistics.median(pc) else float("nan")
        print(f"| {tool} | {name} | {e:.4f} | {p:.4f} | {e / p:.3f} | {cpu:.3f} |")
    engine.close(wait=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
