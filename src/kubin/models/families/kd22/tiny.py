"""The tiny kd22 model(s): the real classes at toy size with seeded random weights, built in code."""

from __future__ import annotations

from kubin.models.tiny_parts import tiny_movq, tiny_prior_modules, tiny_prior_pipeline, tiny_unet


def build(model_id: str) -> dict:
    """The parts of tiny model `model_id` to save, by folder (or file) name."""
    return build_tiny_kd22()


def build_tiny_kd22(seed: int = 0):
    """Prior and decoder pipelines of Kandinsky 2.2 at toy size (random weights, eval mode)."""
    import torch
    from diffusers import (
        DDPMScheduler,
        KandinskyV22ControlnetPipeline,
        KandinskyV22InpaintPipeline,
        KandinskyV22Pipeline,
        KandinskyV22PriorPipeline,
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder, image_encoder, prior = tiny_prior_modules()
        unet = tiny_unet(in_channels=4)
        movq = tiny_movq()
        # The inpainting decoder sees latents, mask and masked image: 4 + 1 + 4 input channels.
        inpaint_unet = tiny_unet(in_channels=9)
        # The ControlNet decoder adds the hint (a depth map) through its "image_hint" embedding.
        controlnet_unet = tiny_unet(in_channels=8, addition_embed_type="image_hint")
    for module in (text_encoder, image_encoder, prior, unet, movq, inpaint_unet, controlnet_unet):
        module.eval()  # built in code they start in training mode; from_pretrained gives eval mode
    prior_pipe = tiny_prior_pipeline(KandinskyV22PriorPipeline, text_encoder, image_encoder, prior)
    # The same scheduler settings as the real kandinsky-2-2-decoder repo.
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        steps_offset=1,
        prediction_type="epsilon",
        thresholding=False,
        variance_type="fixed_small",
    )
    decoder_pipe = KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq)
    inpaint_pipe = KandinskyV22InpaintPipeline(unet=inpaint_unet, scheduler=scheduler, movq=movq)
    controlnet_pipe = KandinskyV22ControlnetPipeline(unet=controlnet_unet, scheduler=scheduler, movq=movq)
    return {
        "prior": prior_pipe,
        "decoder": decoder_pipe,
        "decoder_inpaint": inpaint_pipe,
        "decoder_controlnet": controlnet_pipe,
    }
