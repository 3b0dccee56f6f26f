"""torch.compile of the denoiser and diffusers' step caches: placeholder, being written."""

from __future__ import annotations


def speed_up(components, options) -> list[str]:
    """Compile the denoiser among `components` (a pipeline's components) (options.compile) and/or switch on a step cache (options.cache)."""
    return ["torch.compile and step caches are not available yet; the model runs as it is."]
