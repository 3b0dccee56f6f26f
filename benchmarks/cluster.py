"""Benchmark: jobs on a Ray Serve cluster. Throughput with 1 vs 2 worker replicas on the same tiny model, and
the time a job takes through the cluster against the same job in the local engine (the front end's added
latency), on one local Ray instance.

    venv/bin/python benchmarks/cluster.py                       # tiny-kd22, 16 jobs from 4 clients
    venv/bin/python benchmarks/cluster.py --jobs 32 --steps 50 --size 128 --cpus 4

Throughput: `--jobs` jobs from 4 clients (each client's jobs run one after another, so up to 4 run at
once), timed from the first submit to the last job's end, after one warm-up job per replica (the model
load). Latency: `--runs` jobs one at a time, alternating between the local engine and the cluster with
one replica, each timed from submit to its end (the output saved); medians and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_line


def job(args, owner: str, seed: int, smallest: bool = False):
    """The benchmark's job; `smallest`: 64x64 and 2 steps, where the time is mostly overhead."""
    from kubin.engine import Job

    size, steps = (64, 2) if smallest else (args.size, args.steps)
    values = {
        "prompt": "a red cat",
        "width": size,
        "height": size,
        "steps": steps,
        "prior_steps": 2,
        "seed": seed,
    }
    return Job("t2i", args.model, values, owner=owner)


def throughput(engine, args) -> float:
    """Jobs per minute: --jobs jobs from 4 clients."""
    start = time.perf_counter()
    handles = [engine.submit(job(args, f"client{n % 4}", n)) for n in range(args.jobs)]
    for handle in handles:
        handle.wait()
        assert handle.state == "done", handle.error
    return args.jobs / (time.perf_counter() - start) * 60


def timed(engine, args, seed: int, smallest: bool) -> float:
    start = time.perf_counter()
    handle = engine.run(job(args, "one", seed, smallest))
    assert handle.state == "done", handle.error
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-kd22")
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument(
        "--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray instance"
    )
    args = parser.parse_args()
    if os.environ.get("KUBIN_BENCH_OWN_SESSION") != "1":
        # Linux's autogroup scheduling shares the CPU between sessions first: the Ray instance runs in a
        # session of its own, so the local engine must too, or on a shared machine it gets a smaller share.
        env = os.environ | {"KUBIN_BENCH_OWN_SESSION": "1"}
        return subprocess.call([sys.executable, *sys.argv], env=env, start_new_session=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # each replica and the local engine: one torch thread
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from kubin.cluster import ClusterSettings
    from kubin.cluster.client import Cluster
    from kubin.cluster.local import start_local_ray
    from kubin.engine import Engine
    from kubin.models.manager import ModelManager

    out = Path(tempfile.mkdtemp(prefix="kubin-bench-cluster-"))
    worker = {"device": "cpu", "dtype": "fp32", "sources": {}, "memory": {}}
    head = start_local_ray(num_cpus=args.cpus)
    rows, latency = [], {}
    try:
        for replicas in (1, 2):
            settings = ClusterSettings(head.address, replicas=replicas, replica_cpus=args.cpus / 2)
            started = time.perf_counter()
            cluster = Cluster(settings, worker).start()
            deploy_s = time.perf_counter() - started
            engine = Engine(ModelManager("cpu", "fp32"), out / f"r{replicas}", cluster=cluster)
            for n in range(replicas):  # each replica loads the model once, outside the timing
                engine.submit(job(args, f"warm{n}", n))
            for handle in engine.pending():
                handle.wait()
            time.sleep(1)
            rows.append((replicas, throughput(engine, args), deploy_s))
            if replicas == 1:
                local = Engine(ModelManager("cpu", "fp32"), out / "local")
                timed(local, args, 0, False)  # its model load
                for smallest in (False, True):
                    for run in range(args.runs):
                        latency.setdefault(("local", smallest), []).append(timed(local, args, run, smallest))
                        latency.setdefault(("cluster", smallest), []).append(
                            timed(engine, args, run, smallest)
                        )
                local.close(wait=True)
            engine.cluster = None
            engine.close(wait=True)
            cluster.close()
    finally:
        head.stop()

    print(machine_line("cpu", 1) + f"; load average {os.getloadavg()[0]:.1f} at the end; Ray {ray_version()}")
    print(f"\n{args.model}, {args.size}x{args.size}, {args.steps} decoder + 2 prior steps, {args.jobs} jobs "
          f"from 4 clients, a local Ray instance with {args.cpus} CPUs\n")  # fmt: skip
    print("| replicas | jobs/min | ratio to 1 replica | deploy s |\n|---|---|---|---|")
    for replicas, per_min, deploy_s in rows:
        print(f"| {replicas} | {per_min:.1f} | {per_min / rows[0][1]:.2f}x | {deploy_s:.1f} |")
    print(
        f"\n| one job (median of {args.runs}) | local engine ms | cluster (1 replica) ms | ratio | added ms |"
    )
    print("|---|---|---|---|---|")
    for smallest, what in ((False, f"{args.size}x{args.size}, {args.steps} steps"), (True, "64x64, 2 steps")):
        local_ms = statistics.median(latency[("local", smallest)]) * 1000
        cluster_ms = statistics.median(latency[("cluster", smallest)]) * 1000
        added = cluster_ms - local_ms
        print(f"| {what} | {local_ms:.0f} | {cluster_ms:.0f} | {cluster_ms / local_ms:.2f}x | {added:.0f} |")
    return 0


def ray_version() -> str:
    import ray

    return ray.__version__


if __name__ == "__main__":
    sys.exit(main())
