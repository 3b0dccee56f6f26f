"""The one owner of device memory: every move of a model's weights to or from a device goes through here.

Diffusers pipelines are placed with `place_pipeline`: it quantises the big parts (runtime/quantize.py),
moves the pipeline to its device or hands it to accelerate's CPU offload, switches on VAE slicing/tiling,
attention slicing and channels-last where the pipeline has them, then compiles the denoiser or switches
on a step cache (runtime/speed.py). Our own native models hold plain modules: `place_modules` gives them
the same offload modes and `on_device` brings a part to the device only while it runs. `free_memory` gives
freed memory back to the system and the GPU. What could not be applied is returned as notices (and kept for
the next job's notices, see `collect_load_notices`), never raised.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubin.runtime.memory import MemoryOptions

log = logging.getLogger(__name__)


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


def home_device(placement) -> str:
    """Where a native model's parts rest: on the device, or on the CPU when they only visit it (offload)."""
    return (
        "cpu"
        if placement.memory.offload != "none" and offload_supported(placement.device)
        else placement.device
    )


def place_modules(
    parts: dict[str, Any], placement, visiting: tuple[str, ...] = (), cache_modules: tuple[str, ...] = ()
) -> list[str]:
    """Place a native model's parts (torch modules, already quantised) as its memory options say: on the
    device; with model offload resting on the CPU (`on_device` brings each in while it runs); with
    sequential offload layer by layer through accelerate's hooks. `visiting` parts (a text encoder freed
    after encoding) rest on the CPU without offload too. Then channels-last, compile or a step cache on the
    denoiser (the part named "transformer" or "unet").
    Returns the notices, which also reach the job that caused the load."""
    import torch

    memory = placement.memory
    notices: list[str] = []
    offload = memory.offload
    if offload != "none" and not offload_supported(placement.device):
        notices.append(
            f"CPU offload ({offload}) needs a GPU; the model runs on the {placement.device} as it is."
        )
        offload = "none"
    if offload == "sequential":
        from accelerate import cpu_offload

        for part in parts.values():
            cpu_offload(part, execution_device=torch.device(placement.device))
    else:
        home = home_device(placement) if offload == "model" else placement.device
        for name, part in parts.items():
            part.to("cpu" if name in visiting and placement.device != "cpu" else home)
    from kubin.runtime.speed import DENOISER_NAMES

    denoiser = {name: part for name, part in parts.items() if name in DENOISER_NAMES}
    notices += tune_modules(denoiser, memory, cache_modules)
    for notice in notices:
        load_notice(notice)
    return notices


@contextmanager
def on_device(part, placement, visiting: bool = False) -> Iterator[Any]:
    """`part` on the device while the block runs: with model offload (or a `visiting` part, such as a text
    encoder freed after encoding) it comes in from the CPU and goes back after, its memory given back."""
    offload = placement.memory.offload if offload_supported(placement.device) else "none"
    moves = offload == "model" or (offload == "none" and visiting and placement.device != "cpu")
    if moves:
        part.to(placement.device)
    try:
        yield part
    finally:
        if moves:
            part.to("cpu")
            empty_device_cache(placement.device)


def empty_device_cache(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def place_tool_model(model, device: str) -> None:
    """Put a tool model (a depth estimator, a captioner, a prompt expander: small, whole) on `device`."""
    model.to(device)


def free_memory() -> None:
    """Give the memory of dropped models back to the system and the GPU."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()
