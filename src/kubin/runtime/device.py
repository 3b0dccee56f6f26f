"""Device and dtype selection: CUDA if present, else Apple MPS, else CPU; fp16 on CUDA, fp32 elsewhere.

The rules are plain functions of what the machine reports, so they are tested without the hardware.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubin.errors import InvalidParams
from kubin.runtime.memory import MemoryOptions

DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda", "cuda:1", "mps" or "cpu"
    dtype: str  # "fp32", "fp16" or "bf16"
    memory: MemoryOptions = field(default_factory=MemoryOptions)  # offload, VAE tiling, ...

    def torch_dtype(self):
        import torch

        return getattr(torch, DTYPE_NAMES[self.dtype])


def choose_device(requested: str, cuda_available: bool, cuda_count: int, mps_available: bool) -> str:
    """Resolve "auto" or a device name against what the machine has; a missing device is an error."""
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        return "cuda" if cuda_available else "mps" if mps_available else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "mps":
        if not mps_available:
            raise InvalidParams("Device mps was requested but Apple MPS is not available on this machine.")
        return "mps"
    if requested == "cuda" or requested.startswith("cuda:"):
        if not cuda_available:
            raise InvalidParams(f"Device {requested} was requested but no CUDA GPU is available.")
        index = requested.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= cuda_count):
            raise InvalidParams(
                f"Device {requested} does not exist; this machine has {cuda_count} CUDA device(s)."
            )
        return requested
    raise InvalidParams(f"Unknown device {requested!r}; use auto, cpu, mps, cuda or cuda:N.")


def choose_dtype(requested: str, device: str, bf16_supported: bool = True, preferred: str = "") -> str:
    """fp16 on CUDA and fp32 elsewhere unless asked; half precision on CPU is refused (slow, often unsupported).

    `preferred` is the model's own GPU precision when it is not fp16 (bf16 for models published in it),
    used by "auto" on a CUDA device that supports it."""
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        if not device.startswith("cuda"):
            return "fp32"
        return "bf16" if preferred == "bf16" and bf16_supported else "fp16"
    if requested not in DTYPE_NAMES:
        raise InvalidParams(f"Unknown dtype {requested!r}; use auto, fp32, fp16 or bf16.")
    if requested == "bf16" and device.startswith("cuda") and not bf16_supported:
        raise InvalidParams("This GPU does not support bf16; use fp16 or fp32.")
    if requested == "fp16" and device == "cpu":
        raise InvalidParams("fp16 is not supported on the CPU; use fp32 or bf16.")
    return requested


def resolve_placement(
    device: str = "auto", dtype: str = "auto", memory: MemoryOptions | None = None, preferred: str = ""
) -> Placement:
    """Ask torch what this machine has and apply the rules above."""
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    dev = choose_device(device, cuda, torch.cuda.device_count() if cuda else 0, mps)
    bf16 = torch.cuda.is_bf16_supported() if dev.startswith("cuda") else True
    return Placement(dev, choose_dtype(dtype, dev, bf16, preferred), memory or MemoryOptions())
