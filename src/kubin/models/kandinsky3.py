"""The Kandinsky 3 architecture that 3.0 (through diffusers) and 3.1 (our conversion) share: one `Kandinsky3Pipeline` (a FLAN-UL2 T5 text encoder, a UNet and a
MoVQ) paints text into pixels without a prior; `Kandinsky3Img2ImgPipeline`, built on the same loaded
modules, repaints an init image. diffusers has no Kandinsky 3 inpainting pipeline.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from PIL import Image

from kubin.models.base import LoadedModel
from kubin.models.common import FP16, cpu_generators, has_variant, pipeline_weights
from kubin.models.schedulers import SCHEDULERS, compatible_schedulers, pick_scheduler, scheduler_name
from kubin.models.spec import FOLDER_INFO, ModelSpec
from kubin.params import ImageTaskParams
from kubin.runtime.device import Placement
from kubin.runtime.placement import place_pipeline, release_text_encoders
from kubin.tasks import Prepared

log = logging.getLogger(__name__)


def steps_per_batch(task: str, params: ImageTaskParams) -> int:
    """The steps one batch reports: no prior; image to image runs only the last `strength` share of the
    schedule (the pipeline's get_timesteps keeps int(steps * strength) of them, as `decoder_steps` does)."""
    return params.decoder_steps() if task == "i2i" else params.steps


class Kandinsky30(LoadedModel):
    """A loaded Kandinsky 3.0: the text-to-image pipeline, whose modules image to image shares."""

    def __init__(self, spec: ModelSpec, pipe, placement: Placement):
        self.spec = spec
        self.pipe = pipe
        self.placement = placement
        self._scheduler_config = dict(pipe.scheduler.config)
        self.default_scheduler = scheduler_name(pipe.scheduler)

    def lora_modules(self) -> dict[str, Any]:
        """The UNet, given diffusers' peft adapter methods (its class has no LoRA loader of its own)."""
        from kubin.models.lora import with_peft

        return {"unet": with_peft(self.pipe.unet)}

    def schedulers(self, task: str = "t2i") -> list[str]:
        # Both loops skip scale_model_input and pass generator= to step(). Karras sigmas are left out: on
        # the cosine schedule they pile the timesteps up at the end and the DPM solver runs past its sigmas.
        offered = compatible_schedulers(self.pipe.scheduler, scales_input=False, passes_generator=True)
        return [
            name for name in offered if not SCHEDULERS.get(name, ("", {}, False))[1].get("use_karras_sigmas")
        ]

    def generate(self, task, params, prepared, seeds, on_step) -> tuple[list[Image.Image], str]:
        """Images for one batch (one per seed), and the name of the scheduler used."""
        import torch

        scheduler, name = self._scheduler_for(task, params)
        pipe = self._pipeline_for(task, scheduler)

        def hook(pipe, step, timestep, tensors):
            on_step("denoise", step)
            return tensors

        args: dict[str, Any] = {
            "num_inference_steps": params.steps,
            "guidance_scale": params.guidance_scale,
            # One prompt, one image per seed, each noised by its own CPU generator: a seed means one picture.
            "num_images_per_prompt": len(seeds),
            "generator": cpu_generators(seeds),
            "callback_on_step_end": hook,
        }
        args.update(self._task_inputs(task, params, prepared))
        with torch.no_grad():
            images = pipe(**self._prompt_inputs(pipe, params), **args).images
        return images, name

    def _scheduler_for(self, task: str, params: ImageTaskParams):
        """The scheduler this job asked for (or the model's own), and its name."""
        offered = self.schedulers(task)
        return pick_scheduler(
            params.scheduler, self.default_scheduler, offered, self._scheduler_config, self.spec.title
        )

    def _task_inputs(self, task: str, params: ImageTaskParams, prepared: Prepared) -> dict[str, Any]:
        """The pipeline arguments of the task itself: the init image (at the output size) or the size."""
        if task == "i2i":
            return {"image": prepared.image, "strength": params.strength}
        width, height = prepared.size
        return {"width": width, "height": height}

    def _pipeline_for(self, task: str, scheduler):
        """The pipeline for a task around the loaded modules (no second load) with this job's scheduler."""
        from diffusers import Kandinsky3Img2ImgPipeline, Kandinsky3Pipeline

        cls = Kandinsky3Img2ImgPipeline if task == "i2i" else Kandinsky3Pipeline
        pipe = cls(**{**self.pipe.components, "scheduler": scheduler})
        pipe.set_progress_bar_config(disable=True)  # Kubin reports progress itself
        return pipe

    def _prompt_inputs(self, pipe, params: ImageTaskParams) -> dict[str, Any]:
        """The prompt as the pipeline takes it: as text, or (free_text_encoder) as embeddings encoded here,
        after which the text encoder leaves the GPU before the UNet runs."""
        # Empty: no negative prompt; the pipeline then guides against zero embeddings, as the model expects.
        negative = params.negative_prompt or None
        memory = self.placement.memory
        if not memory.free_text_encoder or memory.offload != "none":
            # With offload the pipeline's hooks already take the encoder off the GPU once it has run.
            return {"prompt": params.prompt, "negative_prompt": negative}
        device = self.placement.device
        pipe.text_encoder.to(device)  # back from the CPU where the last job left it
        # The same call the pipeline makes (it cuts the context to the prompt's length), for one image:
        # the pipeline repeats the embeddings num_images_per_prompt times as it would its own.
        embeds, negative_embeds, mask, negative_mask = pipe.encode_prompt(
            params.prompt,
            params.guidance_scale > 1,  # the pipelines' do_classifier_free_guidance
            num_images_per_prompt=1,
            device=device,
            negative_prompt=negative,
            _cut_context=True,
        )
        release_text_encoders(pipe)
        return {
            "prompt_embeds": embeds,
            "negative_prompt_embeds": negative_embeds,
            "attention_mask": mask,
            "negative_attention_mask": negative_mask,
        }

    def save(self, folder: str | Path) -> Path:
        """The pipeline as folder/pipeline/ plus kubin.json with the model's recommended defaults, so the
        folder loads back as a model (`--model FOLDER`)."""
        folder = Path(folder)
        self.pipe.save_pretrained(folder / "pipeline")
        info = {"saved_from": self.spec.id, "defaults": self.spec.defaults}
        (folder / FOLDER_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
        return folder

    def release(self) -> None:
        self.pipe = None


def find_weights(
    spec: ModelSpec, sources: dict[str, str], placement: Placement, task: str | None = None
) -> str:
    """The pipeline folder (its fp16 copy where that is what loads), found or fetched (see ModelSpec.module)."""
    return pipeline_weights(sources["pipeline"], spec.id, placement.dtype)


def load(spec: ModelSpec, sources: dict[str, str], placement: Placement) -> Kandinsky30:
    from diffusers import Kandinsky3Pipeline

    path = find_weights(spec, sources, placement)
    variant = FP16 if placement.dtype == "fp16" and has_variant(Path(path), FP16) else None
    pipe = Kandinsky3Pipeline.from_pretrained(path, dtype=placement.torch_dtype(), variant=variant)
    pipe.set_progress_bar_config(disable=True)  # Kubin reports progress itself
    place_pipeline(pipe, placement.device, placement.memory)
    log.info(
        "Loaded %s on %s (%s%s)",
        spec.id,
        placement.device,
        placement.dtype,
        f", {variant} files" if variant else "",
    )
    return Kandinsky30(spec, pipe, placement)
