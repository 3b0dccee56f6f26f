"""Kandinsky 2.2 through diffusers: `KandinskyV22PriorPipeline` turns text into an image embedding,
`KandinskyV22Pipeline` decodes it into pixels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from kubin.errors import InvalidParams, UnsupportedTask
from kubin.models.registry import FOLDER_INFO, ModelSpec
from kubin.models.schedulers import compatible_schedulers, make_scheduler, scheduler_name
from kubin.models.weights import ensure_weights
from kubin.params import TaskParams, Text2ImageParams
from kubin.runtime.device import Placement

log = logging.getLogger(__name__)

StepCallback = Callable[[str, int], None]  # (phase, step index just finished)


class Kandinsky22:
    """A loaded Kandinsky 2.2 prior + decoder on one device."""

    def __init__(self, spec: ModelSpec, prior, decoder, placement: Placement):
        self.spec = spec
        self.prior = prior
        self.decoder = decoder
        self.placement = placement
        self._decoder_scheduler_config = dict(decoder.scheduler.config)
        self.default_scheduler = scheduler_name(decoder.scheduler)

    def schedulers(self, task: str = "t2i") -> list[str]:
        # The 2.2 decoder loop never calls scale_model_input, and it passes generator= to step().
        return compatible_schedulers(self.decoder.scheduler, scales_input=False, passes_generator=True)

    def generate(
        self, task: str, params: TaskParams, seeds: Sequence[int], on_step: StepCallback
    ) -> tuple[list[Image.Image], str]:
        """Images for one batch (one per seed), and the name of the scheduler used."""
        if task != "t2i" or not isinstance(params, Text2ImageParams):
            raise UnsupportedTask(f"{self.spec.title} cannot run task {task!r} yet.")
        import torch

        scheduler = params.scheduler or self.default_scheduler
        if scheduler not in self.schedulers(task):
            raise InvalidParams(
                f"Scheduler {scheduler!r} is not available for {self.spec.title}; "
                f"choose one of {', '.join(self.schedulers(task))}."
            )
        self.decoder.scheduler = make_scheduler(scheduler, self._decoder_scheduler_config)

        # CPU generators give the same noise on every device, so a seed means the same image everywhere.
        def generators():
            return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]

        def step_hook(phase):
            def hook(pipe, step, timestep, tensors):
                on_step(phase, step)
                return tensors

            return hook

        with torch.no_grad():
            embeds = self.prior(
                prompt=params.prompt,
                negative_prompt=params.negative_prompt or None,
                num_images_per_prompt=len(seeds),
                num_inference_steps=params.prior_steps,
                guidance_scale=params.prior_guidance_scale,
                generator=generators(),
                callback_on_step_end=step_hook("prior"),
            )
            images = self.decoder(
                image_embeds=embeds.image_embeds,
                negative_image_embeds=embeds.negative_image_embeds,
                width=params.width,
                height=params.height,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                generator=generators(),
                callback_on_step_end=step_hook("decoder"),
            ).images
        return images, scheduler

    def save(self, folder: str | Path) -> Path:
        """Write the model in diffusers layout (prior/ and decoder/), loadable as a model id.

        kubin.json keeps the model's recommended defaults, so the folder behaves like the model it came from.
        """
        folder = Path(folder)
        self.prior.save_pretrained(folder / "prior")
        self.decoder.save_pretrained(folder / "decoder")
        saved = {"saved_from": self.spec.id, "defaults": self.spec.defaults}
        (folder / FOLDER_INFO).write_text(json.dumps(saved, indent=2), encoding="utf-8")
        return folder

    def release(self) -> None:
        self.prior = self.decoder = None


def load(spec: ModelSpec, sources: dict[str, str], placement: Placement) -> Kandinsky22:
    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline

    prior_path = ensure_weights(sources["prior"], spec.id)
    decoder_path = ensure_weights(sources["decoder"], spec.id)
    dtype = placement.torch_dtype()
    prior = KandinskyV22PriorPipeline.from_pretrained(prior_path, dtype=dtype)
    decoder = KandinskyV22Pipeline.from_pretrained(decoder_path, dtype=dtype)
    for pipe in (prior, decoder):
        pipe.to(placement.device)
        pipe.set_progress_bar_config(disable=True)  # Kubin reports progress itself
    log.info("Loaded %s on %s (%s)", spec.id, placement.device, placement.dtype)
    return Kandinsky22(spec, prior, decoder, placement)
