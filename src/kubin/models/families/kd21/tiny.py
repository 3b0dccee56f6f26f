"""The tiny kd21 model(s): the real classes at toy size with seeded random weights, built in code."""

from __future__ import annotations

from kubin.models.tiny_parts import (
    EMBED_DIM,
    tiny_movq,
    tiny_prior_modules,
    tiny_prior_pipeline,
    tiny_unet,
    tiny_xlm_roberta_tokenizer,
)


def build(model_id: str) -> dict:
    """The parts of tiny model `model_id` to save, by folder (or file) name."""
    return build_tiny_kd21()


def build_tiny_kd21(seed: int = 0):
    """Prior, decoder and inpainting decoder pipelines of Kandinsky 2.1 at toy size (random weights, eval mode).

    Unlike 2.2, the 2.1 decoders read the prompt too, through a multilingual CLIP text encoder.
    """
    import torch
    from diffusers import DDIMScheduler, KandinskyInpaintPipeline, KandinskyPipeline, KandinskyPriorPipeline
    from diffusers.pipelines.kandinsky.text_encoder import MCLIPConfig, MultilingualCLIP

    tokenizer = tiny_xlm_roberta_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder, image_encoder, prior = tiny_prior_modules()
        decoder_text_encoder = MultilingualCLIP(
            MCLIPConfig(
                transformerDimSize=EMBED_DIM,  # XLM-R hidden size
                imageDimSize=EMBED_DIM,  # projected prompt embedding, as wide as the image embedding
                hidden_size=EMBED_DIM,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=len(tokenizer),
            )
        )
        text_image = {"addition_embed_type": "text_image", "encoder_hid_dim_type": "text_image_proj"}
        unet = tiny_unet(in_channels=4, **text_image)
        movq = tiny_movq()
        inpaint_unet = tiny_unet(in_channels=9, **text_image)
    for module in (text_encoder, image_encoder, prior, decoder_text_encoder, unet, movq, inpaint_unet):
        module.eval()  # built in code they start in training mode; from_pretrained gives eval mode
    prior_pipe = tiny_prior_pipeline(KandinskyPriorPipeline, text_encoder, image_encoder, prior)
    # The same scheduler settings as the real kandinsky-2-1 and kandinsky-2-1-inpaint repos.
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
        thresholding=False,
    )
    decoder = {
        "text_encoder": decoder_text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "movq": movq,
    }
    decoder_pipe = KandinskyPipeline(unet=unet, **decoder)
    inpaint_pipe = KandinskyInpaintPipeline(unet=inpaint_unet, **decoder)
    return {"prior": prior_pipe, "decoder": decoder_pipe, "decoder_inpaint": inpaint_pipe}
