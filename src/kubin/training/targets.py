"""What the loop trains: a `TrainTarget` is one part of a model (a family's LoraPart) with the frozen parts
around it, and says how a picture is encoded (what is cached) and how a batch's loss is computed.

A family that can be trained has a `train` module with `targets(spec)` (part name -> TrainTarget class, for
that model) and `model_folders(sources, spec)` (the folders its targets load from)."""

from __future__ import annotations

import importlib
from typing import Any

from kubin.errors import InvalidParams


class TrainTarget:
    """One trainable part. Subclasses load their pipelines in __init__(folders, device, weight_dtype,
    sample_settings) and define `module`, `encode`, `loss` and `sample_one`."""

    part: str = ""  # the family's LoraPart name
    default_modules: list[str] = []  # what the adapter wraps by default
    divisibility: int = 64  # picture sides are multiples of this
    video: bool = False  # trained on short clips: `encode` takes a list of frames, `sample` returns videos
    frame_step: int = 4  # a video target's clips have 1 + a multiple of this many frames (the VAE's factor)

    @property
    def module(self) -> Any:  # the diffusers model that gets the adapter (a PeftAdapterMixin)
        raise NotImplementedError

    def encode(self, image, caption: str) -> dict[str, Any]:
        """One picture (already at its bucket's size; for a video target, a clip's frames at that size) and
        its caption -> tensors without a batch dimension."""
        raise NotImplementedError

    def loss(self, batch: dict[str, Any], generator) -> Any:
        """The batch's loss; every random draw comes from `generator` (a CPU torch.Generator)."""
        raise NotImplementedError

    def sample(self, prompts: list[str], seed: int) -> list:
        """One image per prompt with the adapter as trained so far (a video target: one list of frames),
        each from `seed`, without gradients and with the module in eval mode meanwhile."""
        import torch

        outputs = []
        self.module.eval()
        try:
            with torch.no_grad():
                for prompt in prompts:
                    outputs += self.sample_one(prompt, seed)
        finally:
            self.module.train()
        return outputs

    def sample_one(self, prompt: str, seed: int) -> list:
        """The pipeline's output for one prompt, with this family's sample settings: [image] ([frames])."""
        raise NotImplementedError

    @classmethod
    def check_model(cls, spec) -> None:
        """InvalidParams when this model of the family cannot be trained on this part (a video model)."""

    def collate(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """One batch from several pictures' encodings (same bucket, so same sizes)."""
        import torch

        return {key: torch.stack([p[key] for p in parts]) for key in parts[0]}


def pixels_tensor(image) -> Any:
    """A PIL image as a (3, H, W) float tensor in [-1, 1], what the VAEs encode."""
    import numpy as np
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def family_targets(family, spec=None) -> dict[str, type[TrainTarget]]:
    """The trainable parts of a family's model `spec`; {} for a family that cannot be trained."""
    try:
        module = importlib.import_module(family.module("train"))
    except ModuleNotFoundError:
        return {}
    return module.targets(spec)


def target_class(family, spec, part: str) -> type[TrainTarget]:
    """The target `part` of a model (its first when `part` is empty); InvalidParams names what there is."""
    found = family_targets(family, spec)
    if not found:
        raise InvalidParams(f"{spec.title} cannot be trained in Kubin yet (no trainable part).")
    if part and part not in found:
        raise InvalidParams(f"{spec.title} has no part {part!r} to train; it has: {', '.join(found)}.")
    chosen = found[part] if part else next(iter(found.values()))
    chosen.check_model(spec)
    return chosen


def model_folders(family, spec, sources: dict[str, str]) -> dict[str, str]:
    return importlib.import_module(family.module("train")).model_folders(sources, spec)
