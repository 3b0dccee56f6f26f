"""The diffusers schedulers a pipeline can swap in, under the names users know from other UIs.

Only schedulers that need no input scaling are offered for pipelines whose loop does not call
`scale_model_input` (the Kandinsky 2.x decoders), since the others would silently give bad images;
and for pipelines that pass `generator=` to `step()`, only schedulers whose `step()` accepts it.
"""

from __future__ import annotations

import inspect
from typing import Any

# name -> (diffusers class name, extra config, needs scale_model_input)
SCHEDULERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "DDPM": ("DDPMScheduler", {}, False),
    "DDIM": ("DDIMScheduler", {}, False),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}, False),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, False),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}, False),
    "UniPC": ("UniPCMultistepScheduler", {}, False),
    "DEIS": ("DEISMultistepScheduler", {}, False),
    "PNDM": ("PNDMScheduler", {}, False),
    "Euler": ("EulerDiscreteScheduler", {}, True),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}, True),
    "Heun": ("HeunDiscreteScheduler", {}, True),
    "Flow Match Euler": ("FlowMatchEulerDiscreteScheduler", {}, False),
}


def scheduler_name(scheduler) -> str:
    """The user-facing name of a scheduler instance (its class name when we have no better one)."""
    cls = type(scheduler).__name__
    karras = bool(getattr(scheduler.config, "use_karras_sigmas", False))
    for name, (class_name, extra, _) in SCHEDULERS.items():
        if class_name == cls and bool(extra.get("use_karras_sigmas", False)) == karras:
            return name
    return cls


def compatible_schedulers(scheduler, scales_input: bool, passes_generator: bool = False) -> list[str]:
    """Names usable in place of `scheduler`: diffusers-compatible and safe for the pipeline's loop."""
    compatible = {c.__name__ for c in scheduler.compatibles} | {type(scheduler).__name__}
    names = [
        name
        for name, (class_name, _, needs_scaling) in SCHEDULERS.items()
        if class_name in compatible
        and (scales_input or not needs_scaling)
        and (not passes_generator or _step_takes_generator(class_name))
    ]
    own = scheduler_name(scheduler)
    return [own] + [n for n in names if n != own]


def _step_takes_generator(class_name: str) -> bool:
    import diffusers

    params = inspect.signature(getattr(diffusers, class_name).step).parameters
    return "generator" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def make_scheduler(name: str, base_config):
    """A new scheduler `name` built from the model's own scheduler config."""
    import diffusers

    class_name, extra, _ = SCHEDULERS[name]
    config = dict(base_config)
    # Keep the model's variance handling out of schedulers that do not know it.
    if class_name != "DDPMScheduler":
        config.pop("variance_type", None)
    return getattr(diffusers, class_name).from_config(config, **extra)


def pick_scheduler(requested: str, default: str, offered: list[str], base_config, title: str):
    """The scheduler a job asked for (or the model's own), built from the model's config, and its name.

    A name the model does not offer is an InvalidParams listing the ones it does.
    """
    from kubin.errors import InvalidParams

    name = requested or default
    if name not in offered:
        raise InvalidParams(
            f"Scheduler {name!r} is not available for {title}; choose one of {', '.join(offered)}."
        )
    return make_scheduler(name, base_config), name
