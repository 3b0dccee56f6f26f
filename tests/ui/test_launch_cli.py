"""Launching from the command line: start.sh passes its arguments on, --share fails fast offline,
a busy port is a clear message."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import free_port

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "KUBIN_CACHE_DIR": str(tmp_path / "cache"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }


def run_kubin(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m kubin --model tiny-kd22 ARGS --output-dir ...` as a user starts it, to its end."""
    command = [
        sys.executable,
        "-m",
        "kubin",
        "--model",
        "tiny-kd22",
        *args,
        "--output-dir",
        str(tmp_path / "out"),
    ]
    return subprocess.run(command, capture_output=True, text=True, env=_env(tmp_path), timeout=60)


def test_start_script_passes_arguments_and_skips_the_install_when_nothing_changed(tmp_path):
    done = subprocess.run(
        [str(REPO / "start.sh"), "models"], capture_output=True, text=True, env=_env(tmp_path), timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "tiny-kd22" in done.stdout
    assert "Installing Kubin's requirements" not in done.stdout


def test_share_offline_fails_within_seconds_with_a_clear_message(tmp_path):
    started = time.monotonic()
    done = run_kubin(tmp_path, "--share", "--port", str(free_port()))
    assert done.returncode == 2
    assert "--share needs internet access" in done.stdout + done.stderr
    assert time.monotonic() - started < 30


def test_a_busy_port_is_reported_not_a_traceback(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_kubin(tmp_path, "--port", str(port))
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert f"could not listen on 127.0.0.1:{port}" in out
    assert "Traceback" not in out
