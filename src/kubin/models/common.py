"""Helpers several model families share (a family never imports a sibling family): seeded CPU noise,
fp16 weight variants of hub repos, a single-pipeline-folder family's weights and saved attributes, and the
spec values the Kandinsky 3.x families have in common."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubin.models.spec import FOLDER_INFO, LoraPart
from kubin.models.weights import ensure_weights, hub_offline
from kubin.runtime.presets import Preset

if TYPE_CHECKING:
    from kubin.models.spec import ModelSpec
    from kubin.runtime.device import Placement

log = logging.getLogger(__name__)

FP16 = "fp16"  # hub repos ship half-precision copies of their weights under this variant name

# Task parameters of the 2.x prior and of ControlNet, which models without them leave unused.
NO_PRIOR_PARAMS = ("negative_prior_prompt", "prior_steps", "prior_guidance_scale", "hint_image")

# Kandinsky 3.0 and 3.1 share one architecture (the same T5 encoder, UNet and MoVQ): the same presets.
KANDINSKY3_PRESETS = {
    "medvram": Preset(
        {"offload": "model", "attention_slicing": True},
        "24 GB: one part on the GPU at a time, the largest the 8.6 B T5 encoder (17 GB in fp16)",
    ),
    "lowvram": Preset(
        {"offload": "sequential", "attention_slicing": True},
        "8 GB: layer by layer (the largest layer is T5's 0.5 GB embedding), attention in slices; much slower",
    ),
}

# The UNet both take adapters in (through peft: diffusers has no LoRA loader for it). Its layer names differ
# from the 2.x UNets' (attentions.N.attention.to_q, resnets_in, ...); 3.0 and 3.1 share every shape.
KANDINSKY3_LORA_PARTS = (
    LoraPart(
        "unet",
        "UNet",
        r"(add_time_condition|conv_in|conv_out|time_embedding|encoder_hid_proj\.projection_linear"
        r"|(down|up)_blocks\.\d+\.(attentions\.\d+\.(attention|feed_forward|in_norm|out_norm)"
        r"|resnets_in|resnets_out))(\..*)?",
        prefix="unet",
    ),
)  # fmt: skip


def cpu_generators(seeds: Sequence[int]) -> list:
    """One CPU generator per seed: CPU noise is the same on every device, so a seed means the same image."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def pipeline_weights(source: str, model_id: str, dtype: str) -> str:
    """The folder to load: in fp16, a hub repo's fp16 copy (half the download and the disk) where it can be
    had; otherwise what `ensure_weights` finds or fetches (a local folder, the cache, a full download)."""
    if dtype == "fp16" and not is_local(source):
        from diffusers import DiffusionPipeline

        try:  # the cache first, without touching the network
            return DiffusionPipeline.download(source, variant=FP16, local_files_only=True)
        except OSError:
            pass
        if not hub_offline():
            log.warning(
                "Downloading the fp16 weights of %s for %s (first use; progress below)...", source, model_id
            )
            try:
                return DiffusionPipeline.download(source, variant=FP16)
            except Exception as exc:  # ensure_weights below tries once more and says what went wrong
                log.info("No fp16 download of %s (%s)", source, exc)
    return ensure_weights(source, model_id)


def is_local(source: str) -> bool:
    """A folder rather than a hub repo id (the same test `ensure_weights` makes)."""
    path = Path(source).expanduser()
    return path.is_absolute() or source.startswith((".", "~")) or path.exists()


def has_variant(folder: Path, variant: str) -> bool:
    """Whether a pipeline folder holds weight files of a variant (`model.fp16.safetensors`, sharded
    `model-00001-of-00002.fp16.safetensors` or the older `model.fp16-00001-of-00002.safetensors`)."""
    return any(
        f".{variant}." in f.name or f".{variant}-" in f.name
        for f in folder.glob("*/*")
        if f.suffix in (".safetensors", ".bin")
    )


def find_pipeline_folder(
    spec: ModelSpec, sources: dict[str, str], placement: Placement, task: str | None = None
) -> str:
    """`find_weights` of a family whose model is one diffusers pipeline folder: that folder, found or fetched
    (see ModelSpec.module)."""
    return ensure_weights(sources["pipeline"], spec.id)


def folder_attributes(pipeline_folder: Path, names: Collection[str]) -> dict[str, Any]:
    """The pipeline attributes among `names` kept in the kubin.json beside a local pipeline folder (what
    diffusers does not save); none for hub downloads or an unreadable file."""
    try:
        attributes = json.loads((pipeline_folder.parent / FOLDER_INFO).read_text(encoding="utf-8"))[
            "attributes"
        ]
        return {k: v for k, v in attributes.items() if k in names}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
