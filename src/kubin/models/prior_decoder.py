"""What the Kandinsky 2.x families (a prior pipeline feeding a decoder pipeline) do the same way:
seeded noise, loading the two pipelines, and saving them as a folder Kubin can load as a model id."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from kubin.models.registry import FOLDER_INFO, ModelSpec
from kubin.models.weights import ensure_weights
from kubin.runtime.device import Placement
from kubin.runtime.memory import place_pipeline

log = logging.getLogger(__name__)


def cpu_generators(seeds: Sequence[int]) -> list:
    """One CPU generator per seed: CPU noise is the same on every device, so a seed means the same image."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def load_prior_and_decoder(
    spec: ModelSpec, sources: dict[str, str], placement: Placement, prior_cls, decoder_cls
):
    """Both pipelines from their sources (downloaded if needed), on the device, with their own bars off."""
    prior_path = ensure_weights(sources["prior"], spec.id)
    decoder_path = ensure_weights(sources["decoder"], spec.id)
    dtype = placement.torch_dtype()
    pipes = (
        prior_cls.from_pretrained(prior_path, dtype=dtype),
        decoder_cls.from_pretrained(decoder_path, dtype=dtype),
    )
    for pipe in pipes:
        place_pipeline(pipe, placement.device, placement.memory)
        pipe.set_progress_bar_config(disable=True)  # Kubin reports progress itself
    log.info("Loaded %s on %s (%s)", spec.id, placement.device, placement.dtype)
    return pipes


def save_prior_and_decoder(
    folder: str | Path, spec: ModelSpec, prior, decoder, extra: dict | None = None
) -> Path:
    """prior/, decoder/ and any extra decoders in diffusers layout, plus kubin.json with the model's
    recommended defaults, so the folder behaves like the model it came from."""
    folder = Path(folder)
    prior.save_pretrained(folder / "prior")
    decoder.save_pretrained(folder / "decoder")
    for name, pipe in (extra or {}).items():
        pipe.save_pretrained(folder / name)
    saved = {"saved_from": spec.id, "defaults": spec.defaults}
    (folder / FOLDER_INFO).write_text(json.dumps(saved, indent=2), encoding="utf-8")
    return folder
