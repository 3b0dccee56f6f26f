"""LoRA cost: the same job through Kubin's engine with one adapter and without, alternating, on the same
loaded model and seed. The adapter (random weights, `--rank`, on the denoiser's attention projections) is
made here with peft on the loaded model's own part, saved as a file and used by name, as a user would.
Its first job loads it (timed apart); later jobs only switch it on or off. Fused (`lora.fuse`,
--fuse-lora): a job that merges it into the weights (the first timed apart), then a timed one that runs merged.

    venv/bin/python benchmarks/lora.py                       # tiny-kd22 and tiny-kd50-t2i on the CPU
    venv/bin/python benchmarks/lora.py --models kd22 --device cuda --steps 25 --size 768 --runs 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from machine import machine_line

# The denoiser part of each family and its attention projections (what LoRA trainers adapt).
TARGETS = {"decoder": ["to_q", "to_k", "to_v", "to_out.0"], "transformer": ["to_query", "to_key", "to_value"]}


def make_adapter(module, targets: list[str], rank: int, path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    torch.manual_seed(0)
    module.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=False))
    state = get_peft_model_state_dict(module)
    module.delete_adapters("default")
    save_file({k: v.detach().float().cpu().contiguous() for k, v in state.items()}, str(path))


def bench(model_id: str, args) -> dict:
    from kubin.engine import Engine, Job
    from kubin.models.lora import LoraLibrary
    from kubin.models.manager import ModelManager

    folder = Path(tempfile.mkdtemp(prefix="kubin-lora-bench-"))
    manager = ModelManager(device=args.device, dtype=args.dtype)
    engine = Engine(manager, folder / "out", loras=LoraLibrary(folder / "lora"))
    spec = manager.spec(model_id)
    values = {"prompt": "a red cat on a chair", "seed": 1234}
    values.update({"steps": args.steps} if args.steps else {})
    values.update({"width": args.size, "height": args.size} if args.size else {})
    run = lambda **more: engine.run(Job("t2i", model_id, {**values, **more}))  # noqa: E731
    run()  # load the model
    model = manager.get(model_id)
    part, module = next((p, m) for p, m in model.lora_modules().items() if p in TARGETS)
    (folder / "lora").mkdir()
    make_adapter(module, TARGETS[part], args.rank, folder / "lora" / "bench.safetensors")
    start = time.perf_counter()
    run(loras=["bench:1"])
    first = time.perf_counter() - start
    engine.loras.fuse = True
    start = time.perf_counter()
    run(loras=["bench:1"])  # merges it
    first_fused = time.perf_counter() - start
    # Rounds of the three kinds of job, so that a busy machine's drift touches each alike: without, with
    # (unfused), and with it fused, after an untimed fused job that merges it again.
    plain, adapted, fused = [], [], []
    for _ in range(args.runs):
        engine.loras.fuse = False
        for times, more in ((plain, {}), (adapted, {"loras": ["bench:1"]})):
            start = time.perf_counter()
            run(**more)
            times.append(time.perf_counter() - start)
        engine.loras.fuse = True
        run(loras=["bench:1"])  # merges it
        start = time.perf_counter()
        run(loras=["bench:1"])  # runs merged
        fused.append(time.perf_counter() - start)
    engine.close(wait=True)
    manager.unload()
    return {"model": spec.id, "part": part, "first": first, "plain": statistics.median(plain),
            "adapted": statistics.median(adapted), "fused": statistics.median(fused),
            "first_fused": first_fused}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["tiny-kd22", "tiny-kd50-t2i"])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=0, help="0: the model's own")
    parser.add_argument("--size", type=int, default=0, help="0: the model's own")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    args = parser.parse_args()
    import torch

    print(machine_line(args.device, torch.get_num_threads()))
    print(f"\nOne adapter of rank {args.rank} vs none, median of {args.runs} rounds of: a job "
          "without it, one with it unfused, one with it fused (after one that merges it)\n")  # fmt: skip
    print("| model | part | job without | with, unfused | ratio | with, fused | ratio | unfused/fused "
          "| first job with (loads it) | first fused job (merges it) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model_id in args.models:
        r = bench(model_id, args)
        print(f"| {r['model']} | {r['part']} | {r['plain']:.3f} s | {r['adapted']:.3f} s | "
              f"{r['adapted'] / r['plain']:.2f} | {r['fused']:.3f} s | {r['fused'] / r['plain']:.2f} | "
              f"{r['adapted'] / r['fused']:.2f} | {r['first']:.3f} s | {r['first_fused']:.3f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
