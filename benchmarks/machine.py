"""The machine a benchmark's figures came from, printed with every result: CPU model and cores, GPU if
used, and the versions that matter (imported by the benchmark scripts beside it)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line(device: str | None = None, threads: int | None = None) -> str:
    """One line: the CPU and its cores, then (with a device) the GPU, torch threads and library versions."""
    line = f"Machine: {cpu_name()}, {os.cpu_count()} cores"
    if device is None:
        return f"{line}; Python {platform.python_version()}"
    import diffusers
    import torch

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if device.startswith("cuda") else ""
    return (
        f"{line}{gpu}; device {device}, {threads} torch thread(s); "
        f"Python {platform.python_version()}, torch {torch.__version__}, diffusers {diffusers.__version__}"
    )
