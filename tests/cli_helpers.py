"""`python -m kubin generate` run as a user runs it, for the command-line tests of every model family."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def kubin_generate(workdir: Path, *args: str, timeout: float = 300, wait: bool = True):
    """Run `generate ARGS` in `workdir`, with an empty user config there (a developer's
    configs/kubin.user.yaml stays out of the test) and the Hub offline (conftest set KUBIN_CACHE_DIR and
    an empty HF_HOME). Returns the finished process, or with wait=False the running one."""
    config = Path(workdir) / "user.yaml"
    if not config.exists():
        config.write_text("")
    command = [sys.executable, "-m", "kubin", "generate", "--config", str(config), *args]
    options: dict[str, Any] = {"cwd": workdir, "env": {**os.environ, "HF_HUB_OFFLINE": "1"}, "text": True}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)
    return subprocess.run(command, capture_output=True, timeout=timeout, **options)


def printed(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects `generate` printed on stdout, one per saved output."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]
