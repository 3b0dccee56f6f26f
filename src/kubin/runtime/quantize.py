"""Quantisation of a model's big parts (the denoiser, the text encoders): placeholder, being written."""

from __future__ import annotations

from typing import Any


def quantize_components(components: dict[str, Any], options, device: str) -> list[str]:
    """Quantise, in place, the denoiser and/or text encoder modules among `components` as
    `options.quantize` / `options.quantize_parts` say; returns notices."""
    return [f"Quantisation ({options.quantize}) is not available yet; the model loads unquantised."]
