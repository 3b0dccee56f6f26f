"""Kandinsky 5.0 through diffusers: one pipeline per published model, for one task each:
`Kandinsky5T2VPipeline` (text to video), `Kandinsky5I2VPipeline` (image to video),
`Kandinsky5T2IPipeline` (text to image) and `Kandinsky5I2IPipeline` (image editing by instruction).

A Qwen2.5-VL and a CLIP text encoder read the prompt, a diffusion transformer denoises with flow
matching, and a HunyuanVideo (video) or FLUX-style (image) VAE decodes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kubin.models.base import LoadedModel
from kubin.models.common import cpu_generators, find_pipeline_folder, folder_attributes
from kubin.models.families.kd50 import FAMILY
from kubin.models.schedulers import pick_scheduler, scheduler_name
from kubin.models.spec import FOLDER_INFO, ModelSpec
from kubin.outputs import Video
from kubin.params import ImageTaskParams
from kubin.runtime.device import Placement
from kubin.runtime.placement import place_pipeline

log = logging.getLogger(__name__)


PIPELINES = {
    "t2v": "Kandinsky5T2VPipeline",
    "i2v": "Kandinsky5I2VPipeline",
    "t2i": "Kandinsky5T2IPipeline",
    "i2i": "Kandinsky5I2IPipeline",
}
# Pipeline attributes that diffusers does not save with the model (the prompt template's length depends
# on the tokenizer; the image models' size list): kept in kubin.json when a folder carries them.
ATTRIBUTES = ("prompt_template_encode_start_idx", "resolutions")


def steps_per_batch(task: str, params: ImageTaskParams) -> int:
    """Every task runs all its steps: image editing here has no strength that skips part of the schedule."""
    return params.steps


class Kandinsky5(LoadedModel):
    """A loaded Kandinsky 5.0 model: one pipeline for its one task."""

    def __init__(self, spec: ModelSpec, pipe, placement: Placement, attributes: dict[str, Any]):
        self.spec = spec
        self.task = spec.tasks[0]
        self.pipe = pipe
        self.placement = placement
        self.attributes = attributes
        self._scheduler_config = dict(pipe.scheduler.config)
        self.default_scheduler = scheduler_name(pipe.scheduler)

    def lora_modules(self) -> dict[str, Any]:
        return {"transformer": self.pipe.transformer}

    def schedulers(self, task: str | None = None) -> list[str]:
        # Flow matching: the pipelines step a velocity; diffusers has no drop-in alternative to offer.
        return [self.default_scheduler]

    def generate(self, task, params, prepared, seeds, on_step) -> tuple[list, str]:
        """One output per seed: a list of frames for video tasks, an image for image tasks."""
        import torch

        scheduler, name = pick_scheduler(
            params.scheduler,
            self.default_scheduler,
            self.schedulers(task),
            self._scheduler_config,
            self.spec.title,
        )
        self.pipe.scheduler = scheduler
        width, height = prepared.size

        def hook(pipe, step, timestep, tensors):
            on_step("denoise", step)
            return tensors

        args: dict[str, Any] = {
            # Empty means the pipeline's own negative prompt (the authors' "Static, 2D cartoon, ...").
            "negative_prompt": params.negative_prompt or None,
            "width": width,
            "height": height,
            "num_inference_steps": params.steps,
            "guidance_scale": params.guidance_scale,
            "callback_on_step_end": hook,
        }
        if task in ("i2v", "i2i"):
            args["image"] = prepared.image
        with torch.no_grad():
            if task in ("t2v", "i2v"):
                outputs = []
                for seed in seeds:  # one video per call (batch size 1)
                    result = self.pipe(
                        prompt=params.prompt,
                        num_frames=prepared.frames,
                        generator=cpu_generators([seed])[0],
                        **args,
                    )
                    outputs.append(Video(list(result.frames[0])))
                return outputs, name
            # Images: one prompt per seed (and per image), one generator each, so a seed means one picture.
            if task == "i2i":
                args["image"] = [prepared.image] * len(seeds)
            result = self.pipe(prompt=[params.prompt] * len(seeds), generator=cpu_generators(seeds), **args)
            return list(result.image), name

    def save(self, folder: str | Path) -> Path:
        """The pipeline as folder/pipeline/ plus kubin.json (defaults and unsaved attributes)."""
        folder = Path(folder)
        self.pipe.save_pretrained(folder / "pipeline")
        info = {"saved_from": self.spec.id, "defaults": self.spec.defaults, "attributes": self.attributes}
        (folder / FOLDER_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
        return folder

    def release(self) -> None:
        self.pipe = None


find_weights = find_pipeline_folder


def load(spec: ModelSpec, sources: dict[str, str], placement: Placement) -> Kandinsky5:
    import diffusers

    path = find_weights(spec, sources, placement)
    cls = getattr(diffusers, PIPELINES[spec.tasks[0]])
    pipe = cls.from_pretrained(path, dtype=placement.torch_dtype())
    attributes = folder_attributes(Path(path), ATTRIBUTES)
    for name, value in attributes.items():
        setattr(pipe, name, [tuple(v) for v in value] if name == "resolutions" else value)
    if placement.memory.free_text_encoder:
        log.info(
            "free_text_encoder is not applied to Kandinsky 5; use offload=model to keep its encoders off the GPU."
        )
    place_pipeline(pipe, placement.device, placement.memory, cache_modules=FAMILY.cache_modules)
    pipe.set_progress_bar_config(disable=True)  # Kubin reports progress itself
    log.info("Loaded %s on %s (%s)", spec.id, placement.device, placement.dtype)
    return Kandinsky5(spec, pipe, placement, attributes)
