"""Benchmark 3, quantisation of the big parts (runtime/quantize.py): memory and step time, no download.

Two tables. `memory`: full-size denoisers built from their published configs (benchmarks/full_size.py)
with random weights, quantised by each backend the device can run; the bytes the whole part's weights
take before and after, and those of its quantised Linear layers alone, counted from the tensors the
library really stores (`kubin.runtime.quantize.module_bytes`). `step`: the time of one denoiser call
quantised and not, the median over a generation's steps of a tiny model through Kubin's engine, and
one step of the full-size 2.2 UNet at a small size. Each measurement runs in its own process.

    venv/bin/python benchmarks/quantize.py                  # CPU: torchao-int8 and quanto-int8
    venv/bin/python benchmarks/quantize.py --parts kd22-unet --dtypes bf16 --no-full-step
    venv/bin/python benchmarks/quantize.py --device cuda --modes torchao-int8 quanto-int8 bnb-int8 bnb-nf4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import full_size  # noqa: E402  (the full-size configs and builders)

CPU_MODES = ("torchao-int8", "quanto-int8")  # bitsandbytes needs CUDA
COMPONENT = {"kd22-unet": "unet", "kd50-lite-dit": "transformer", "kd22-prior": "prior", "kd30-unet": "unet"}


def built(part: str, dtype, device: str):
    """The part at full size with random weights, as full_size.py's step benchmark builds it."""
    import torch

    if part in full_size.BUILT_IN_PLACE:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                module = full_size.build(part)
        finally:
            torch.set_default_dtype(previous)
    else:
        with torch.device("meta"):
            module = full_size.build(part)
        full_size.fill_random(module, dtype, device)
    keep = getattr(module, "_keep_in_fp32_modules", None) or []
    if dtype != torch.float32:  # as from_pretrained does
        for name, sub in module.named_modules():
            if any(k in name.split(".") for k in keep):
                sub.to(torch.float32)
    return module.eval().requires_grad_(False)


def one_memory(part: str, dtype_name: str, mode: str, device: str) -> dict:
    import resource

    import torch

    from kubin.runtime.memory import MemoryOptions
    from kubin.runtime.quantize import module_bytes, quantizable_linears, quantize_components, tensor_bytes

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    module = built(part, dtype, "cpu")  # quantised on the CPU before the move, as Kubin does
    layers = quantizable_linears(module)

    def linear_bytes() -> int:
        total = 0
        for name in layers:
            sub = module.get_submodule(name)
            total += tensor_bytes(sub.weight)
        return total

    before, linear_before = module_bytes(module), linear_bytes()
    start = time.perf_counter()
    notices = quantize_components({COMPONENT[part]: module}, MemoryOptions(quantize=mode), device)
    seconds = time.perf_counter() - start
    return {
        "part": part,
        "dtype": dtype_name,
        "mode": mode,
        "params": sum(p.numel() for p in module.parameters()),
        "layers": len(layers),
        "before": before,
        "after": module_bytes(module),
        "linear_before": linear_before,
        "linear_after": linear_bytes(),
        "quantise_s": seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
        "notice": notices[0] if notices else "",
    }


def one_tiny_step(model_id: str, mode: str, device: str, steps: int) -> dict:
    """A generation through the engine; the median time of the denoiser's calls (hooks around it)."""
    import torch

    from kubin.engine import Engine, Job
    from kubin.models.manager import ModelManager
    from kubin.runtime.memory import MemoryOptions

    manager = ModelManager(device=device, dtype="fp32", memory=MemoryOptions(quantize=mode))
    with tempfile.TemporaryDirectory(prefix="kubin-quantize-") as tmp:
        engine = Engine(manager, Path(tmp))
        model = manager.get(model_id)
        denoiser = model.pipe.transformer if hasattr(model, "pipe") else model.decoder.unet
        times: list[float] = []
        started: list[float] = []

        def before(*_):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started.append(time.perf_counter())

        def after(*_):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started.pop())

        denoiser.register_forward_pre_hook(before)
        denoiser.register_forward_hook(after)
        job = {"prompt": "a red cat", "steps": steps, "seed": 1}
        engine.run(Job("t2i", model_id, job))  # warm-up
        times.clear()
        engine.run(Job("t2i", model_id, job))
        engine.close(wait=True)
    manager.unload()
    return {"model": model_id, "mode": mode, "calls": len(times), "call_s": statistics.median(times)}


def one_full_step(part: str, mode: str, size: int, device: str, steps: int) -> dict:
    import torch

    from kubin.runtime.memory import MemoryOptions
    from kubin.runtime.quantize import quantize_components

    module = built(part, torch.float32, "cpu")
    if mode != "none":
        quantize_components({COMPONENT[part]: module}, MemoryOptions(quantize=mode), device)
    module.to(device)
    inputs = full_size.step_inputs(part, size, torch.float32, device)

    def run():
        with torch.inference_mode():
            for kwargs in inputs:
                module(**kwargs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    run()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"part": part, "mode": mode, "size": size, "step_s": statistics.median(times)}


def child(kind: str, *values: str, args) -> dict:
    cmd = [sys.executable, __file__, "_" + kind, *values]
    print(" ".join(values), "...", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, env=full_size._env(args))
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:100]}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def gb(n: int) -> str:
    return f"{n / 1e9:.3f}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("_"):  # a child process
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        kind, values = argv[0], argv[1:]
        if kind == "_memory":
            row = one_memory(values[0], values[1], values[2], values[3])
        elif kind == "_tiny":
            row = one_tiny_step(values[0], values[1], values[2], int(values[3]))
        else:
            row = one_full_step(values[0], values[1], int(values[2]), values[3], int(values[4]))
        print(json.dumps(row))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["kd22-unet", "kd50-lite-dit"], choices=list(COMPONENT))
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--modes", nargs="+", default=list(CPU_MODES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", nargs="+", default=["tiny-kd50-t2i", "tiny-kd22"])
    parser.add_argument("--tiny-steps", type=int, default=20)
    parser.add_argument("--full-step-size", type=int, default=128, help="image size of the full-size step")
    parser.add_argument("--no-full-step", action="store_true", help="skip the full-size 2.2 UNet step")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    memory = []
    for part in args.parts:
        for dtype in args.dtypes:
            if part == "kd50-lite-dit" and dtype == "fp32" and "bf16" in args.dtypes:
                continue  # 8 GB of fp32 weights: bf16 is what it runs in on a GPU
            for mode in args.modes:
                memory.append({"part": part, "dtype": dtype, "mode": mode})
                memory[-1].update(child("memory", part, dtype, mode, args.device, args=args))
    tiny = []
    for model_id in args.tiny:
        for mode in ("none", *args.modes):
            tiny.append({"model": model_id, "mode": mode})
            tiny[-1].update(child("tiny", model_id, mode, args.device, str(args.tiny_steps), args=args))
    full = []
    if not args.no_full_step:
        for mode in ("none", *args.modes):
            full.append({"part": "kd22-unet", "mode": mode})
            size = str(args.full_step_size)
            full[-1].update(child("full", "kd22-unet", mode, size, args.device, "2", args=args))

    print(full_size.machine_line(args.device, args.threads))
    print(f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print(
        "| part | weights in | backend | parameters | whole part GB before → after | ratio "
        "| its Linear layers GB before → after | ratio | quantise s | peak RSS GB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in memory:
        what = full_size.PARTS[r["part"]][1]
        if "error" in r:
            print(f"| {what} | {r['dtype']} | {r['mode']} | failed: {r['error']} | | | | | | |")
            continue
        print(
            f"| {what} | {r['dtype']} | {r['mode']} | {r['params'] / 1e9:.3f} B | "
            f"{gb(r['before'])} → {gb(r['after'])} | {r['after'] / r['before']:.3f} | "
            f"{gb(r['linear_before'])} → {gb(r['linear_after'])} ({r['layers']} layers) | "
            f"{r['linear_after'] / r['linear_before']:.3f} | {r['quantise_s']:.1f} | {r['peak_rss_gb']:.1f} |"
        )
    print()
    print("| model (fp32) | backend | denoiser calls | s / call (median) | vs unquantised |")
    print("|---|---|---|---|---|")
    for rows, key in ((tiny, "model"), (full, "part")):
        base = {r[key]: r.get("call_s", r.get("step_s")) for r in rows if r["mode"] == "none"}
        for r in rows:
            name = r[key] if key == "model" else f"{full_size.PARTS[r['part']][1]}, {args.full_step_size} px"
            if "error" in r:
                print(f"| {name} | {r['mode']} | failed: {r['error']} | | |")
                continue
            seconds = r.get("call_s", r.get("step_s"))
            calls = r.get("calls", "1 step (2 steps timed)")
            ratio = f"{seconds / base[r[key]]:.2f}x" if base.get(r[key]) else ""
            print(f"| {name} | {r['mode']} | {calls} | {seconds:.4f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
