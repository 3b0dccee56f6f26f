"""Memory and speed options, and the one place that applies them to a loaded diffusers pipeline.

Family modules call `place_pipeline` instead of `pipe.to(device)`: it quantises the big parts
(runtime/quantize.py), moves the pipeline to its device or hands it to accelerate's CPU offload,
switches on VAE slicing/tiling, attention slicing and channels-last where the pipeline has them, then
compiles the denoiser or switches on a step cache (runtime/speed.py). What could not be applied is
returned as notices (and kept for the next job's notices, see `collect_load_notices`), never raised.

The speed options live here beside the memory ones because they are applied at the same moment (a
model load) and travel together through the config's `memory:` section, the CLI and the Settings tab.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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


def offload_supported(device: str) -> bool:
    """accelerate's offload hooks move parts to an accelerator; on the CPU there is nothing to offload to."""
    return not device.startswith("cpu")


_load = threading.local()


@contextmanager
def collect_load_notices() -> Iterator[list[str]]:
    """Gathers the notices of every `place_pipeline` (and `load_notice`) call inside the block, i.e. of
    one model load, so the model manager can hand them to the next job."""
    collected: list[str] = []
    previous = getattr(_load, "notices", None)
    _load.notices = collected
    try:
        yield collected
    finally:
        _load.notices = previous


def load_notice(text: str) -> None:
    """Say something about the model being loaded (logged, and shown with the next job)."""
    log.info(text)
    collected = getattr(_load, "notices", None)
    if collected is not None and text not in collected:
        collected.append(text)


def place_pipeline(
    pipe, device: str, options: MemoryOptions, cache_modules: tuple[str, ...] = ()
) -> list[str]:
    """Put `pipe` on `device` as `options` say; returns notices for what was skipped and why.
    `cache_modules`: the denoiser's module patterns a TaylorSeer step cache predicts (from its family)."""
    notices: list[str] = []
    if options.quantize != "none":
        from kubin.runtime.quantize import quantize_components

        # Before the move: the weights are quantised on the CPU, and move to the GPU already small.
        notices += quantize_components(pipe.components, options, device)
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
    notices += tune_modules(pipe.components, options, cache_modules)
    for notice in notices:
        load_notice(notice)
    return notices


def tune_modules(
    components: dict[str, Any], options: MemoryOptions, cache_modules: tuple[str, ...] = ()
) -> list[str]:
    """Channels-last, then torch.compile or a step cache, on a model's parts once they are placed:
    `place_pipeline` calls it for a pipeline, the native models for the modules they hold themselves."""
    notices: list[str] = []
    if options.channels_last:
        notices += use_channels_last(components)
    if options.compile or options.cache != "none":
        from kubin.runtime.speed import speed_up

        notices += speed_up(components, options, cache_modules)
    return notices


def use_channels_last(components: dict[str, Any]) -> list[str]:
    """The UNet's (and the image decoder's) convolution weights in channels-last layout; the same
    arithmetic in another memory order. Transformers (Kandinsky 5, the 2.x prior) have no 4-D weights."""
    import torch

    if "prior" in components:  # a 2.x prior pipeline: the decoder beside it holds the UNet
        return []
    converted = []
    for name in ("unet", "movq", "vae"):
        module = components.get(name)
        if isinstance(module, torch.nn.Module) and any(p.dim() == 4 for p in module.parameters()):
            module.to(memory_format=torch.channels_last)
            converted.append(name)
    if not converted:
        return ["Channels-last applies to convolutional models (the 2.x and 3.x UNets); this model has none."]
    return []


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
