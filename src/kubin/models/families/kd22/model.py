"""Kandinsky 2.2 through diffusers: `KandinskyV22PriorPipeline` turns text into an image embedding,
`KandinskyV22Pipeline` decodes it into pixels.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from PIL import Image

from kubin.models.common import cpu_generators
from kubin.models.prior_decoder import (
    PriorDecoderModel,
    find_prior_and_decoder,
    for_decoder,
    load_prior_and_decoder,
    step_phases,
)
from kubin.models.spec import ModelSpec
from kubin.runtime.device import Placement
from kubin.tasks import Prepared

log = logging.getLogger(__name__)
__all__ = ["Kandinsky22", "find_weights", "load", "step_phases"]


class PriorEmbeds(NamedTuple):
    image_embeds: Any
    negative_image_embeds: Any


class Kandinsky22(PriorDecoderModel):
    """A loaded Kandinsky 2.2: one prior shared by the text-to-image decoder (also used for image to image
    and mix), the inpainting decoder and the depth-ControlNet decoder, loaded on first use."""

    EXTRA_DECODERS = {
        "decoder_inpaint": ("KandinskyV22InpaintPipeline", "inpainting"),
        "decoder_controlnet": ("KandinskyV22ControlnetPipeline", "ControlNet"),
    }

    def generate(self, task, params, prepared, seeds, on_step) -> tuple[list[Image.Image], str]:
        """Images for one batch (one per seed), and the name of the scheduler used."""
        import torch

        scheduler, scheduler_name_ = self.pick_scheduler(task, params)
        decoder, extra = self._decoder_for(task, params, prepared, scheduler, len(seeds))

        def generators():
            return cpu_generators(seeds)

        def prior_generators():
            # With a negative prompt the prior runs prompt and negative prompt as one doubled batch,
            # so it takes one generator per image for each half.
            return generators() + generators() if params.prior_negative else generators()

        def step_hook(phase):
            def hook(pipe, step, timestep, tensors):
                on_step(phase, step)
                return tensors

            return hook

        with torch.no_grad():
            if task == "mix":
                embeds = self.prior.interpolate(
                    prepared.mix_items,
                    params.normalised_weights(),
                    num_images_per_prompt=len(seeds),
                    num_inference_steps=params.prior_steps,
                    generator=prior_generators(),
                    negative_prior_prompt=params.prior_negative or None,
                    negative_prompt=params.negative_prompt,
                    guidance_scale=params.prior_guidance_scale,
                )
            else:
                embeds = self.prior(
                    prompt=params.prompt,
                    negative_prompt=params.prior_negative or None,
                    num_images_per_prompt=len(seeds),
                    num_inference_steps=params.prior_steps,
                    guidance_scale=params.prior_guidance_scale,
                    generator=prior_generators(),
                    callback_on_step_end=step_hook("prior"),
                )
                if params.negative_prior_prompt and params.negative_prompt not in (
                    "",
                    params.negative_prior_prompt,
                ):
                    # Separate negatives: the prior's steers the prior; the negative prompt's own embedding
                    # is what the decoder steers away from (diffusers' interpolate does the same).
                    embeds = PriorEmbeds(
                        embeds.image_embeds,
                        self.prior(
                            prompt=params.negative_prompt,
                            negative_prompt=params.negative_prior_prompt,
                            num_images_per_prompt=len(seeds),
                            num_inference_steps=params.prior_steps,
                            guidance_scale=params.prior_guidance_scale,
                            generator=prior_generators(),
                        ).image_embeds,
                    )
            width, height = prepared.size
            images = decoder(
                image_embeds=for_decoder(embeds.image_embeds, decoder, self.placement),
                negative_image_embeds=for_decoder(embeds.negative_image_embeds, decoder, self.placement),
                width=width,
                height=height,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                generator=generators(),
                **_step_callback(decoder, step_hook("decoder")),
                **extra,
            ).images
        return images, scheduler_name_

    def _decoder_for(self, task: str, params, prepared: Prepared, scheduler, batch: int):
        """The decoder pipeline for a task (sharing the loaded modules) and its task-specific arguments."""
        import diffusers

        if task in ("inpaint", "outpaint"):
            inpaint = self.extra_decoder("decoder_inpaint")
            self.switch_extra_decoder_loras(inpaint.unet)
            pipe = diffusers.KandinskyV22InpaintPipeline(
                unet=inpaint.unet, scheduler=scheduler, movq=inpaint.movq
            )
            # The inpainting pipeline repeats image and mask per prompt, not per embedding: give one each.
            return _quiet(pipe), {"image": [prepared.image] * batch, "mask_image": [prepared.mask] * batch}
        unet, movq, extra = self.decoder.unet, self.decoder.movq, {}
        if prepared.hint is not None:
            controlnet = self.extra_decoder("decoder_controlnet")
            unet, movq = controlnet.unet, controlnet.movq
            self.switch_extra_decoder_loras(unet)
            extra["hint"] = _hint_tensor(prepared.hint, batch, unet)
        if task == "i2i":
            cls = (
                "KandinskyV22ControlnetImg2ImgPipeline" if "hint" in extra else "KandinskyV22Img2ImgPipeline"
            )
            pipe = getattr(diffusers, cls)(unet=unet, scheduler=scheduler, movq=movq)
            # The pipeline calls preprocess(image, width, height), which takes (height, width), so a
            # 128x64 request came out 64x128. The prepared image already has the size: don't resize it.
            pipe.image_processor.register_to_config(do_resize=False)
            extra.update(image=prepared.image, strength=params.strength)
        else:
            cls = "KandinskyV22ControlnetPipeline" if "hint" in extra else "KandinskyV22Pipeline"
            pipe = getattr(diffusers, cls)(unet=unet, scheduler=scheduler, movq=movq)
        return _quiet(pipe), extra


def find_weights(
    spec: ModelSpec, sources: dict[str, str], placement: Placement, task: str | None = None
) -> None:
    """The prior and the decoder, found or fetched (see ModelSpec.module)."""
    find_prior_and_decoder(spec, sources)


def load(spec: ModelSpec, sources: dict[str, str], placement: Placement) -> Kandinsky22:
    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline

    prior, decoder = load_prior_and_decoder(
        spec, sources, placement, KandinskyV22PriorPipeline, KandinskyV22Pipeline
    )
    return Kandinsky22(spec, prior, decoder, placement, sources)


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)  # Kubin reports progress itself
    return pipe


def _hint_tensor(hint: Image.Image, batch: int, unet):
    """The hint as the ControlNet decoder wants it: (batch, 3, H, W) floats in 0..1."""
    import numpy as np
    import torch

    array = torch.from_numpy(np.asarray(hint, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return array.unsqueeze(0).repeat(batch, 1, 1, 1).to(device=unet.device, dtype=unet.dtype)


def _step_callback(pipe, hook) -> dict[str, Any]:
    """The per-step hook in whichever form the pipeline takes: the ControlNet pipelines still only have
    the older `callback(step, timestep, latents)`."""
    import inspect

    if "callback_on_step_end" in inspect.signature(pipe.__call__).parameters:
        return {"callback_on_step_end": hook}
    return {"callback": lambda step, timestep, latents: hook(pipe, step, timestep, {}), "callback_steps": 1}
