"""Warnings the libraries print at import that say nothing to a Kubin user, filtered by their text.

With torchao installed (memory.quantize), importing diffusers prints them on every model load:
diffusers 0.42.1 cannot find torchao's older tensor classes for loading torchao-serialized
checkpoints (Kubin quantises loaded weights and never loads such checkpoints), and torch 2.14
deprecates how torchao 0.18 registers its enums; with bitsandbytes (CUDA machines), its CPU backend
misses an optional kernel package. Anything else those loggers say still shows.
"""

from __future__ import annotations

import logging

QUIET = {
    "diffusers.quantizers.torchao.torchao_quantizer": ("Unable to import `torchao` Tensor objects",),
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported by torch.compile",),
    # bitsandbytes' CPU backend (Kubin runs bitsandbytes on CUDA only) looks for an optional kernel.
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
}


class _DropKnown(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def quiet_known_library_warnings() -> None:
    for name, fragments in QUIET.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(fragments))
