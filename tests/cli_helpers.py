"""`python -m kubin` run as a user runs it: `generate` for the command-line tests of every model family,
and the web UI server for the tests that talk to it over real HTTP."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `python -m kubin` child: this checkout's src/ first on its path, so that it
    runs the code under test (a relative PYTHONPATH=src would resolve from the child's working folder and
    fall back to whatever kubin the interpreter has installed), the Hub offline, plus `extra`."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", **(extra or {})}


def kubin_generate(
    workdir: Path, *args: str, timeout: float = 300, wait: bool = True, in_process: bool = True
):
    """Run `generate ARGS` in `workdir`, with an empty user config there (a developer's
    configs/kubin.user.yaml stays out of the test) and the Hub offline (conftest set KUBIN_CACHE_DIR and
    an empty HF_HOME). Returns the finished run (returncode, stdout, stderr), or with wait=False the
    running process.

    By default the command runs in this process, through the same `kubin.cli.main` that `python -m kubin`
    calls, which saves a new interpreter's 5-10 s of importing torch and diffusers per call; the tests in
    test_cli.py (and in_process=False) start the real `python -m kubin` process."""
    config = Path(workdir) / "user.yaml"
    if not config.exists():
        config.write_text("")
    if wait and in_process:
        return run_in_process(workdir, ["generate", "--config", str(config), *args])
    command = [sys.executable, "-m", "kubin", "generate", "--config", str(config), *args]
    options: dict[str, Any] = {"cwd": workdir, "env": child_env(), "text": True}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)
    return subprocess.run(command, capture_output=True, timeout=timeout, **options)


def run_in_process(workdir: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """`kubin.cli.main(argv)` as `python -m kubin` would run it in `workdir`: what it prints and logs
    (at INFO, as the command's own logging set-up does) is captured, and its exit code returned."""
    from kubin.cli import main

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.chdir(workdir), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return subprocess.CompletedProcess(["kubin", *argv], code, out.getvalue(), err.getvalue())


def printed(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects `generate` printed on stdout, one per saved output."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@dataclass
class RunningServer:
    url: str
    user_config: Path
    log_path: Path
    process: subprocess.Popen

    def log(self, chars: int = 0) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-chars:] if chars else text


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    workdir: Path,
    *args: str,
    config: str | None = "",
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> RunningServer:
    """`python -m kubin ARGS` on a free port in `workdir`, with `config` as its user config file (None: the
    file does not exist yet, as on a first start), the Hub
    offline, Gradio's temp files and the log (server.log) in `workdir`, until it says it is running
    (it says so once it listens and its API is mounted). A server that exits or stays silent fails the
    test with its log."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    user_config = workdir / "user.yaml"
    if config is None:
        user_config.unlink(missing_ok=True)
    else:
        user_config.write_text(config, encoding="utf-8")
    port = free_port()
    environ = child_env(
        {
            "GRADIO_ANALYTICS_ENABLED": "False",
            "GRADIO_TEMP_DIR": str(workdir / "gradio-tmp"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
    )
    command = [sys.executable, "-m", "kubin", *args, "--port", str(port), "--config", str(user_config)]
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", user_config, log_path, process)
    deadline = time.monotonic() + timeout
    while "Kubin is running at" not in server.log():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            pytest.fail(f"Kubin did not start with {list(args)}:\n{server.log(3000)}")
        time.sleep(0.2)
    return server


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=15)


@contextmanager
def kubin_server(workdir: Path, *args: str, **options: Any) -> Iterator[RunningServer]:
    """`start_server` for the length of a `with` block."""
    server = start_server(workdir, *args, **options)
    try:
        yield server
    finally:
        stop_server(server)
