"""The tiny model family: the real pipeline classes built from small configs with seeded random weights.

No download is needed: tokenizers are made in code. Each family that has tiny models builds them in its
`tiny` module; a tiny model is built once, saved in diffusers layout under the Kubin cache, and then
loaded through the same `from_pretrained` path as real weights, so tests exercise the real loading code too.
"""

from __future__ import annotations

import importlib
import json
import shutil
import tempfile
from pathlib import Path

from kubin.models.registry import family_of, resolve_model
from kubin.models.weights import cache_root

TINY_VERSION = "v4"  # bump when a tiny config changes, so stale cached copies are rebuilt


def build_tiny(model_id: str) -> dict:
    """The parts of a tiny model, built in memory by its family's `tiny` module."""
    family = family_of(resolve_model(model_id))
    return importlib.import_module(family.module("tiny")).build(model_id)


def tiny_model_folder(model_id: str) -> Path:
    """The folder holding a tiny model in diffusers layout, building it on first use (atomically)."""
    folder = cache_root() / "tiny" / f"{model_id}-{TINY_VERSION}"
    if (folder / "complete").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=folder.parent))
    try:
        for name, part in build_tiny(model_id).items():
            if isinstance(part, dict):  # kubin.json: what the pipelines do not save themselves
                (staging / name).write_text(json.dumps(part, indent=2), encoding="utf-8")
            else:
                part.save_pretrained(staging / name)
        (staging / "complete").write_text(TINY_VERSION)
        try:
            staging.rename(folder)
        except OSError:  # another process finished first; theirs is as good as ours
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
