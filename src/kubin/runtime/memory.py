"""Low-VRAM options and the one place that applies them to a loaded diffusers pipeline.

Family modules call `place_pipeline` instead of `pipe.to(device)`: it moves the pipeline to its
device, or hands it to accelerate's CPU offload, and switches on VAE slicing/tiling and attention
slicing where the pipeline has them. What could not be applied is returned as notices, never raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from typing import Any

from kubin.errors import InvalidParams

log = logging.getLogger(__name__)

OFFLOAD_MODES = ("none", "model", "sequential")
PRESET_NAMES = ("none", "medvram", "lowvram")  # what each switches on per family: runtime/presets.py


@dataclass(frozen=True)
class MemoryOptions:
    """How a model is held in memory. Every option is off by default (fastest, most VRAM)."""

    # model: each part moves to the GPU only while it runs (about a third of the VRAM, a little slower);
    # sequential: layer by layer (the least VRAM, much slower). Both need CUDA (or another accelerator).
    offload: str = "none"
    vae_tiling: bool = False  # decode in tiles: big images and long videos fit in less VRAM
    vae_slicing: bool = False  # decode a batch one item at a time
    attention_slicing: bool = False  # attention in slices (2.x UNets): less VRAM, a little slower
    free_text_encoder: bool = False  # encode the prompt, then move the text encoder(s) off the GPU
    # medvram / lowvram: switch on the options that suit the loaded model's family (runtime/presets.py).
    preset: str = "none"

    def __post_init__(self) -> None:
        if self.offload not in OFFLOAD_MODES:
            raise InvalidParams(
                f"Unknown offload mode {self.offload!r}; use one of {', '.join(OFFLOAD_MODES)}."
            )
        if self.preset not in PRESET_NAMES:
            raise InvalidParams(
                f"Unknown memory preset {self.preset!r}; use one of {', '.join(PRESET_NAMES)}."
            )

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
        for name in ("offload", "preset"):
            if name in kept:
                kept[name] = str(kept[name] or "none").lower()
        for name in names - {"offload", "preset"}:
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


def offload_supported(device: str) -> bool:
    """accelerate's offload hooks move parts to an accelerator; on the CPU there is nothing to offload to."""
    return not device.startswith("cpu")


def place_pipeline(pipe, device: str, options: MemoryOptions) -> list[str]:
    """Put `pipe` on `device` as `options` say; returns notices for what was skipped and why."""
    notices: list[str] = []
    offload = options.offload
    if offload != "none" and not offload_supported(device):
        notices.append(f"CPU offload ({offload}) needs a GPU; the model runs on the {device} as it is.")
        offload = "none"
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    if options.vae_tiling:
        _switch_on(
            pipe,
            "vae tiling",
            ("enable_vae_tiling",),
            ("vae", "enable_tiling"),
            ("movq", "enable_tiling"),
            notices=notices,
        )
    if options.vae_slicing:
        _switch_on(
            pipe,
            "vae slicing",
            ("enable_vae_slicing",),
            ("vae", "enable_slicing"),
            ("movq", "enable_slicing"),
            notices=notices,
        )
    if options.attention_slicing:
        _switch_on(pipe, "attention slicing", ("enable_attention_slicing",), notices=notices)
    for notice in notices:
        log.info(notice)
    return notices


def _switch_on(pipe, what: str, *paths: tuple[str, ...], notices: list[str]) -> None:
    """Call the first of `paths` (attribute chain ending in a method) that the pipeline has."""
    for path in paths:
        target = pipe
        for name in path:
            target = getattr(target, name, None)
            if target is None:
                break
        if callable(target):
            try:
                target()
                return
            except (NotImplementedError, AttributeError, ValueError) as exc:
                notices.append(f"{type(pipe).__name__} could not switch on {what}: {exc}")
                return
    notices.append(f"{type(pipe).__name__} has no {what}; the option is ignored for it.")


def release_text_encoders(pipe, names: tuple[str, ...] = ("text_encoder", "text_encoder_2")) -> None:
    """Move the text encoders to the CPU after the prompt is encoded (free_text_encoder)."""
    for name in names:
        module = getattr(pipe, name, None)
        if module is not None and hasattr(module, "to"):
            module.to("cpu")
