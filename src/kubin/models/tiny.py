"""The tiny model family: the real pipeline classes built from small configs with seeded random weights.

No download is needed: tokenizers are made in code. Each family that has tiny models builds them in its
`tiny` module; a tiny model is built once, saved in diffusers layout under the Kubin cache, and then
loaded through the same `from_pretrained` path as real weights, so tests exercise the real loading code too.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from kubin.models.registry import family_of, resolve_model
from kubin.models.weights import cache_root, cached_folder

TINY_VERSION = "v5"  # bump when a tiny config changes, so stale cached copies are rebuilt


def build_tiny(model_id: str) -> dict:
    """The parts of a tiny model, built in memory by its family's `tiny` module."""
    family = family_of(resolve_model(model_id))
    return importlib.import_module(family.module("tiny")).build(model_id)


def tiny_model_folder(model_id: str) -> Path:
    """The folder holding a tiny model in diffusers layout, building it on first use (atomically)."""

    def write(staging: Path) -> None:
        for name, part in build_tiny(model_id).items():
            if isinstance(part, dict):  # kubin.json: what the pipelines do not save themselves
                (staging / name).write_text(json.dumps(part, indent=2), encoding="utf-8")
            else:
                part.save_pretrained(staging / name)

    return cached_folder(cache_root() / "tiny" / f"{model_id}-{TINY_VERSION}", write, TINY_VERSION)
