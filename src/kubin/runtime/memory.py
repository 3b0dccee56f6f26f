"""The memory and speed options a user sets (`MemoryOptions`), declared once: each with its default, its
command-line help and its Settings label. runtime/placement.py applies them when a model loads.

The speed options live here beside the memory ones because they are applied at the same moment (a
model load) and travel together through the config's `memory:` section, the CLI and the Settings tab.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from typing import Any

from kubin.errors import InvalidParams

log = logging.getLogger(__name__)

OFFLOAD_MODES = ("none", "model", "sequential")
PRESET_NAMES = ("none", "medvram", "lowvram")  # what each switches on per family: runtime/presets.py
# diffusers' step caches (Kandinsky 5's transformer): reuse the blocks' output while it changes little.
CACHE_MODES = ("none", "first_block", "taylorseer")
# Weights of the big parts in 8 or 4 bits: torchao and optimum-quanto (CUDA and CPU), bitsandbytes (CUDA).
QUANTIZE_MODES = ("none", "torchao-int8", "quanto-int8", "bnb-int8", "bnb-nf4")
QUANTIZE_PARTS = ("all", "denoiser", "text_encoder")
CHOICES = {
    "offload": OFFLOAD_MODES,
    "preset": PRESET_NAMES,
    "cache": CACHE_MODES,
    "quantize": QUANTIZE_MODES,
    "quantize_parts": QUANTIZE_PARTS,
}
WHAT = {
    "offload": "offload mode",
    "preset": "memory preset",
    "cache": "step cache",
    "quantize": "quantisation",
    "quantize_parts": "part to quantise",
}


def option(default: Any, help: str, label: str) -> Any:
    """A memory/speed option: its default, the help of its command-line flag (--name-with-dashes) and
    its label in the Settings tab. The flags, the config keys (memory.name) and the Settings widgets are
    all made from these declarations."""
    return field(default=default, metadata={"help": help, "label": label})


@dataclass(frozen=True)
class MemoryOptions:
    """How a model is held in memory. Every option is off by default (fastest, most VRAM)."""

    # model: each part moves to the GPU only while it runs (about a third of the VRAM, a little slower);
    # sequential: layer by layer (the least VRAM, much slower). Both need CUDA (or another accelerator).
    offload: str = option(
        "none",
        "CPU offload: model (parts on the GPU only while they run) or sequential (least VRAM, slow)",
        "CPU offload (model: parts; sequential: layers, least VRAM)",
    )
    vae_tiling: bool = option(
        False,
        "decode in tiles (large images, long videos)",
        "VAE tiling (Kandinsky 5: big images, long videos)",
    )
    vae_slicing: bool = option(
        False, "decode a batch one item at a time", "VAE slicing (Kandinsky 5: a batch decoded one at a time)"
    )
    attention_slicing: bool = option(
        False, "attention in slices (less VRAM, slower)", "Attention slicing (2.x, 3.0)"
    )
    free_text_encoder: bool = option(
        False,
        "move the text encoder off the GPU once the prompt is encoded",
        "Free the text encoder after encoding",
    )
    # medvram / lowvram: switch on the options that suit the loaded model's family (runtime/presets.py).
    preset: str = option(
        "none",
        "the same as --medvram / --lowvram; none turns off a preset set in the config",
        "Preset (--medvram / --lowvram)",
    )
    # UNet models (2.x, 3.x): convolutions in channels-last memory layout; faster on most GPUs and CPUs.
    channels_last: bool = option(
        False,
        "UNet models (2.x, 3.x): convolutions in channels-last layout (faster on most GPUs)",
        "Channels-last (2.x, 3.x UNets: faster on most GPUs)",
    )
    # Kandinsky 2.x: the prior (prompt -> image embedding, 1 B parameters) stays on the CPU in fp32, so
    # only the decoder takes VRAM; the prior's few steps are slower there.
    prior_on_cpu: bool = option(
        False,
        "Kandinsky 2.x: run the prior on the CPU in fp32, only the decoder on the GPU",
        "Run the prior on the CPU (2.x: less VRAM)",
    )
    # torch.compile the denoiser: the first job compiles it (its warm-up is reported), later jobs of the
    # same size run faster. Needs a C/C++ compiler on the CPU.
    compile: bool = option(
        False,
        "torch.compile the denoiser: the first job compiles it (slow), later ones run faster",
        "torch.compile the denoiser (each new size compiles first: tens of seconds)",
    )
    # Kandinsky 5: reuse the transformer's output between steps that change little (faster, slightly
    # different pixels). cache_threshold 0 means the mode's own default; for first_block it is the
    # relative change below which the other blocks are skipped (default 0.05, which skips little; 0.3
    # skipped a third on the tiny model), for taylorseer the steps between full passes (default 5).
    cache: str = option(
        "none",
        "Kandinsky 5: reuse the transformer's output between similar steps (faster, pixels differ a little)",
        "Step cache (Kandinsky 5: faster, pixels differ a little)",
    )
    cache_threshold: float = option(
        0.0,
        "how much change the step cache tolerates (0: the mode's default; higher: faster, less exact)",
        "Cache threshold (0: default; first_block 0.05-0.3; taylorseer: steps between full passes)",
    )
    # The big parts' weights in 8 or 4 bits (see QUANTIZE_MODES), the denoiser, the text encoder(s) or both.
    quantize: str = option(
        "none",
        "weights of the big parts in 8/4 bits: torchao/quanto (GPU and CPU), bitsandbytes (CUDA)",
        "Quantise weights (less memory, not faster on a CPU; bnb: CUDA only)",
    )
    quantize_parts: str = option(
        "all",
        "which parts --quantize applies to (default all: the denoiser and the text encoders)",
        "Quantise which parts",
    )

    def __post_init__(self) -> None:
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise InvalidParams(
                    f"Unknown {WHAT[name]} {getattr(self, name)!r}; use one of {', '.join(choices)}."
                )
        if not 0 <= self.cache_threshold < 10:
            raise InvalidParams(f"cache_threshold must be between 0 and 10, not {self.cache_threshold}.")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> MemoryOptions:
        names = {f.name for f in fields(cls)}
        values = dict(values or {})
        unknown = sorted(set(values) - names)
        if unknown:
            raise InvalidParams(
                f"Unknown memory option(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}."
            )
        kept = {k: v for k, v in values.items() if v is not None}
        for name in CHOICES:
            if name in kept:
                kept[name] = str(kept[name] or CHOICES[name][0]).lower().replace("_", "-")
                if name in ("cache", "quantize_parts"):  # their values are spelt with underscores
                    kept[name] = kept[name].replace("-", "_")
        if "cache_threshold" in kept:
            try:
                kept["cache_threshold"] = float(kept["cache_threshold"])
            except (TypeError, ValueError):
                raise InvalidParams(
                    f"cache_threshold must be a number, not {kept['cache_threshold']!r}."
                ) from None
        for name in names - set(CHOICES) - {"cache_threshold"}:
            if name in kept:
                kept[name] = (
                    kept[name]
                    if isinstance(kept[name], bool)
                    else str(kept[name]).lower() in ("1", "true", "yes", "on")
                )
        return cls(**kept)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_(self, **changes: Any) -> MemoryOptions:
        return replace(self, **changes)


# Every option's declaration (default, help, label) by name, in declaration order.
MEMORY_FIELDS = {f.name: f for f in fields(MemoryOptions)}
