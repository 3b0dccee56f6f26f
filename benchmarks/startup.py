"""Benchmark 3, start-up: how long `python -m kubin --help` takes, and how long from `python -m kubin`
to the page answering (HTTP 200 on /), without loading a model (Kubin loads one on the first job).

Each run is a fresh process, as a user starts it; the table gives the median, fastest and slowest.

    venv/bin/python benchmarks/startup.py               # 10 runs each
    venv/bin/python benchmarks/startup.py --runs 20 --port 7990
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from machine import machine_line

REPO = Path(__file__).resolve().parents[1]
HELP_GOAL_S = 2.0
PAGE_GOAL_S = 5.0


def environment() -> dict[str, str]:
    env = dict(os.environ)
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else src
    env["HF_HUB_OFFLINE"] = "1"  # nothing at start may wait on the network
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return env


def time_help(python: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [python, "-m", "kubin", "--help"], env=environment(), check=True, capture_output=True, cwd=REPO
    )
    return time.perf_counter() - start


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def time_page(python: str, port: int, folder: Path, timeout: float = 60.0) -> tuple[float, float]:
    """Seconds from starting the process to the first HTTP 200 from the page, and the CPU seconds the
    process used by then (stopped at once; this one does not grow when other work shares the CPUs)."""
    port = free_port(port)
    cmd = [
        python, "-m", "kubin",
        "--port", str(port),
        "--config", str(folder / "user.yaml"),  # no user file: the defaults, as on a fresh install
        "--output-dir", str(folder / "output"),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=environment(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    answered = None
    try:
        while answered is None:
            elapsed = time.perf_counter() - start
            if proc.poll() is not None:
                raise SystemExit(f"kubin exited with code {proc.returncode} before the page answered")
            if elapsed > timeout:
                raise SystemExit(f"the page did not answer within {timeout:.0f} s")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        answered = time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)
    finally:
        proc.kill()  # at once: its CPU time is then the start-up's
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = -9
    return answered, usage.ru_utime + usage.ru_stime


def row(name: str, times: list[float], cpu: list[float], goal: float) -> str:
    med = statistics.median(times)
    verdict = "yes" if med < goal else "no"
    return (
        f"| {name} | {len(times)} | {med:.2f} | {min(times):.2f} | {max(times):.2f} | "
        f"{statistics.median(cpu):.2f} | < {goal:.0f} s: {verdict} |"
    )


def run_help(python: str) -> tuple[float, float]:
    before = os.times()
    wall = time_help(python)
    after = os.times()
    return wall, (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--port", type=int, default=7981)
    parser.add_argument("--python", default=sys.executable, help="the interpreter of Kubin's venv")
    args = parser.parse_args(argv)

    time_help(args.python)  # one untimed run so the first timed one does not pay for a cold disk cache
    helps = [run_help(args.python) for _ in range(args.runs)]
    pages = []
    with tempfile.TemporaryDirectory(prefix="kubin-startup-") as tmp:
        for i in range(args.runs):
            pages.append(time_page(args.python, args.port, Path(tmp) / str(i)))
    print(machine_line())
    print(
        f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (other work on the machine)"
    )
    print()
    print("| command | runs | median s | fastest s | slowest s | median CPU s | goal met (median) |")
    print("|---|---|---|---|---|---|---|")
    for name, measured, goal in (
        ("`python -m kubin --help`", helps, HELP_GOAL_S),
        ("`python -m kubin` to page answering", pages, PAGE_GOAL_S),
    ):
        print(row(name, [w for w, _ in measured], [c for _, c in measured], goal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
