"""Benchmark 4, torch.compile and diffusers' step caches (runtime/speed.py) against a plain diffusers call.

Each row loads the model through Kubin's ModelManager with one speed option (so runtime/speed.py sets it
up as a user gets it) and times the plain diffusers call a script would write on that pipeline
(benchmarks/overhead.py's `plain_call`), the same prompt, size, steps and seed for every row. The
baseline is the same call on the model loaded without options. Runs alternate between the baseline and
the option so drift of the machine hits both alike; ratios are of medians. "max px diff" is the largest
difference of one 8-bit channel from the baseline's image. For compile, "warm-up s" is the first call's
time (tracing and compiling) less a steady-state call.

    venv/bin/python benchmarks/speed.py                      # tiny-kd50-t2i on the CPU, 50 steps
    venv/bin/python benchmarks/speed.py --steps 25 --runs 5 --options "none (plain diffusers)" compile

(The tiny Kandinsky 5 pipelines make 64x64 or 128x128 only: other sizes are resized to those.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from overhead import PROMPT, SEED, logging_quiet, machine_line, plain_call  # noqa: E402

OPTIONS = {
    "none (plain diffusers)": {},
    "first_block (default 0.05)": {"cache": "first_block"},
    "first_block 0.3": {"cache": "first_block", "cache_threshold": 0.3},
    "taylorseer (default every 5)": {"cache": "taylorseer"},
    "taylorseer every 2": {"cache": "taylorseer", "cache_threshold": 2},
    "compile": {"compile": True},
    "compile + first_block 0.3": {"compile": True, "cache": "first_block", "cache_threshold": 0.3},
}


def load(model_id: str, memory: dict, args):
    from kubin.models.manager import ModelManager
    from kubin.params import params_class
    from kubin.runtime.memory import MemoryOptions

    manager = ModelManager(device=args.device, dtype=args.dtype, memory=MemoryOptions(**memory))
    spec = manager.spec(model_id)
    values = {**spec.defaults.get("t2i", {}), "prompt": PROMPT, "seed": SEED, "negative_prompt": ""}
    values["steps"] = args.steps
    if args.size:
        values.update(width=args.size, height=args.size)
    params = params_class("t2i").from_dict(values)
    model = manager.get(model_id, "t2i")
    return manager, params, plain_call(model, params, SEED)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    image = fn()[0]
    return time.perf_counter() - start, image


def measure(model_id: str, label: str, memory: dict, baseline, args) -> list[str]:
    import numpy as np

    manager, params, run = load(model_id, memory, args)
    first, image = timed(run)
    for _ in range(args.warmup):
        run(), baseline["run"]()
    times, base_times = [], []
    for i in range(args.runs):
        pair = [(times, run), (base_times, baseline["run"])]
        for bucket, fn in pair if i % 2 == 0 else pair[::-1]:
            bucket.append(timed(fn)[0])
    manager.unload()
    steady, base = statistics.median(times), statistics.median(base_times)
    diff = np.abs(np.asarray(image, dtype=int) - baseline["pixels"]).max()
    return [
        model_id,
        label,
        f"{params.width}x{params.height}",
        str(params.steps),
        str(args.runs),
        f"{base * 1000:.1f}",
        f"{steady * 1000:.1f}",
        f"{steady / base:.2f}x",
        str(int(diff)),
        f"{first - steady:.1f}" if memory.get("compile") else "-",
        # (the first compiled call at this size, less a steady one; the baseline has none)
    ]


HEADER = [
    "model",
    "option",
    "size",
    "steps",
    "runs",
    "plain ms",
    "option ms",
    "time ratio",
    "max px diff",
    "warm-up s",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-kd50-t2i")
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--size", type=int, default=0, help="width = height (default: the model's own)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per side (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per side first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kubin-speed-") as tmp:
        # A cold compile: inductor's on-disk cache of earlier runs would hide most of the warm-up.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tmp
        import numpy as np
        import torch

        torch.set_num_threads(args.threads)
        logging_quiet()
        manager, _, run = load(args.model, {}, args)
        baseline = {"run": run, "pixels": np.asarray(run()[0], dtype=int)}
        for label in args.options:
            rows.append(measure(args.model, label, OPTIONS[label], baseline, args))
            print(f"{label}: done", file=sys.stderr, flush=True)
        manager.unload()
    print(machine_line(args.device, args.threads))
    print(f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
