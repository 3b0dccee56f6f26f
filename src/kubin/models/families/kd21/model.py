"""Kandinsky 2.1 through diffusers: `KandinskyPriorPipeline` turns text (or a weighted mix of texts and
images) into a CLIP image embedding, and `KandinskyPipeline` paints it; unlike 2.2, the 2.1 decoders read
the prompt as well, through their own multilingual text encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PIL import Image

from kubin.models.base import Phase, StepCallback
from kubin.models.common import cpu_generators
from kubin.models.prior_decoder import (
    PriorDecoderModel,
    find_prior_and_decoder,
    for_decoder,
    load_prior_and_decoder,
)
from kubin.models.prior_decoder import step_phases as prior_then_decoder
from kubin.models.spec import ModelSpec
from kubin.params import ImageTaskParams
from kubin.runtime.device import Placement
from kubin.tasks import Prepared

log = logging.getLogger(__name__)


def step_phases(task: str, params: ImageTaskParams) -> list[Phase]:
    """What one batch reports: the prior, then the decoder. Mix runs the prior more often: 2.1's
    `interpolate` runs it once per prompt and once more for the negative embedding, and it runs once per
    seed (see `_mix_embeds`)."""
    if task == "mix":
        runs = params.batch_size * (len(params.prompts) + 1)
        return [Phase("prior", runs * params.prior_steps), Phase("decoder", params.steps)]
    return prior_then_decoder(task, params)


class Kandinsky21(PriorDecoderModel):
    """A loaded Kandinsky 2.1: one prior shared by the text-to-image decoder (also used for image to image
    and mix) and the inpainting decoder, which is loaded on first use and shares the text encoder."""

    EXTRA_DECODERS = {"decoder_inpaint": ("KandinskyInpaintPipeline", "inpainting")}

    def generate(self, task, params, prepared, seeds, on_step) -> tuple[list[Image.Image], str]:
        """Images for one batch (one per seed), and the name of the scheduler used."""
        import torch

        scheduler, scheduler_name_ = self.pick_scheduler(task, params)
        decoder, extra = self._decoder_for(task, params, prepared, scheduler, len(seeds))
        prior = self._reporting_prior(on_step)

        def report_decoder_step(step, timestep, latents):
            on_step("decoder", step)

        with torch.no_grad():
            if task == "mix":
                embeds, negative_embeds = self._mix_embeds(prior, params, prepared, seeds)
                # The mix lives in the image embedding; as in diffusers' interpolate example, the decoder
                # gets no prompt of its own.
                prompt = ""
            else:
                out = prior(
                    prompt=params.prompt,
                    negative_prompt=params.prior_negative or None,
                    num_images_per_prompt=len(seeds),
                    num_inference_steps=params.prior_steps,
                    guidance_scale=params.prior_guidance_scale,
                    generator=_prior_generators(seeds),
                )
                embeds, negative_embeds = out.image_embeds, out.negative_image_embeds
                prompt = params.prompt
            width, height = prepared.size
            # One prompt row per embedding: with num_images_per_prompt > 1 the decoders would repeat the
            # embeddings again, which already hold one row per seed.
            images = decoder(
                prompt=[prompt] * len(seeds),
                negative_prompt=[params.negative_prompt] * len(seeds),
                image_embeds=for_decoder(embeds, decoder, self.placement),
                negative_image_embeds=for_decoder(negative_embeds, decoder, self.placement),
                width=width,
                height=height,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance_scale,
                generator=cpu_generators(seeds),
                # No callback_on_step_end in the 2.1 decoders: the older callback is called after every step.
                callback=report_decoder_step,
                callback_steps=1,
                **extra,
            ).images
        return images, scheduler_name_

    def _mix_embeds(self, prior, params, prepared: Prepared, seeds: Sequence[int]):
        """Image embeddings of the weighted mix, one row per seed.

        2.1's `interpolate` sums all rows of a batch into one embedding (2.2's keeps one per image), so it
        runs once per seed; that also keeps each image independent of the others in its batch.
        """
        import torch

        embeds, negative_embeds = [], []
        for seed in seeds:
            out = prior.interpolate(
                prepared.mix_items,
                params.normalised_weights(),
                num_images_per_prompt=1,
                num_inference_steps=params.prior_steps,
                generator=_prior_generators([seed]),
                negative_prior_prompt=params.prior_negative or None,
                negative_prompt=params.negative_prompt,
                guidance_scale=params.prior_guidance_scale,
            )
            embeds.append(out.image_embeds)
            negative_embeds.append(out.negative_image_embeds)
        return torch.cat(embeds), torch.cat(negative_embeds)

    def _reporting_prior(self, on_step: StepCallback):
        """The prior pipeline (sharing the loaded modules) for one call, reporting each of its steps.

        The 2.1 prior takes no step callback at all, but its loop walks `self.progress_bar(timesteps)`:
        this pipeline's progress bar reports a step each time the loop comes back for the next timestep.
        """
        from diffusers import KandinskyPriorPipeline

        prior = KandinskyPriorPipeline(**self.prior.components)

        def progress_bar(iterable=None, total=None):
            for step, item in enumerate(iterable):
                yield item
                on_step("prior", step)

        prior.progress_bar = progress_bar
        return prior

    def _decoder_for(self, task: str, params, prepared: Prepared, scheduler, batch: int):
        """The decoder pipeline for a task (sharing the loaded modules) and its task-specific arguments."""
        from diffusers import KandinskyImg2ImgPipeline, KandinskyInpaintPipeline, KandinskyPipeline

        modules = {
            "text_encoder": self.decoder.text_encoder,
            "tokenizer": self.decoder.tokenizer,
            "unet": self.decoder.unet,
            "movq": self.decoder.movq,
            "scheduler": scheduler,
        }
        # Image and mask go once per seed: the pipelines encode one latent per image given, and noise each
        # with its own generator only when there are as many as seeds.
        if task in ("inpaint", "outpaint"):
            inpaint = self.extra_decoder("decoder_inpaint")
            self.switch_extra_decoder_loras(inpaint.unet)
            pipe = KandinskyInpaintPipeline(**{**modules, "unet": inpaint.unet, "movq": inpaint.movq})
            extra = {"image": [prepared.image] * batch, "mask_image": [prepared.mask] * batch}
        elif task == "i2i":
            pipe = KandinskyImg2ImgPipeline(**modules)
            # The pipeline calls preprocess(image, width, height), which takes (height, width): a resize there
            # would swap the sides of a non-square image. The prepared image already has the size.
            pipe.image_processor.register_to_config(do_resize=False)
            extra = {"image": [prepared.image] * batch, "strength": params.strength}
        else:
            pipe = KandinskyPipeline(**modules)
            extra = {}
        pipe.set_progress_bar_config(disable=True)
        return pipe, extra

    def load_extra_decoder(self, cls, path: str):
        # The inpainting repo ships the same multilingual text encoder as the decoder (the original
        # Kandinsky 2.1 had one for both): share the loaded one rather than hold a second copy in memory.
        # (Passing it to from_pretrained would log its whole repr as a "non-standard module".)
        pipe = cls.from_pretrained(
            path, text_encoder=None, tokenizer=None, dtype=self.placement.torch_dtype()
        )
        pipe.register_modules(text_encoder=self.decoder.text_encoder, tokenizer=self.decoder.tokenizer)
        return pipe


def _prior_generators(seeds: Sequence[int]) -> list:
    """Generators for the prior's batch: with a negative prompt it runs the prompt rows, then as many
    negative rows, so each seed gets one generator per half (without, the second half goes unused)."""
    return cpu_generators(seeds) + cpu_generators(seeds)


def find_weights(
    spec: ModelSpec, sources: dict[str, str], placement: Placement, task: str | None = None
) -> None:
    """The prior and the decoder, found or fetched (see ModelSpec.module)."""
    find_prior_and_decoder(spec, sources)


def load(spec: ModelSpec, sources: dict[str, str], placement: Placement) -> Kandinsky21:
    from diffusers import KandinskyPipeline, KandinskyPriorPipeline

    prior, decoder = load_prior_and_decoder(
        spec, sources, placement, KandinskyPriorPipeline, KandinskyPipeline
    )
    return Kandinsky21(spec, prior, decoder, placement, sources)
