"""The tiny shap_e model(s): the real classes at toy size with seeded random weights, built in code."""

from __future__ import annotations

from kubin.models.tiny_parts import EMBED_DIM, tiny_clip_tokenizer


def build(model_id: str) -> dict:
    """The parts of tiny model `model_id` to save, by folder (or file) name."""
    return build_tiny_shap_e()


def build_tiny_shap_e(seed: int = 0):
    """Shap-E's text-to-3D and image-to-3D pipelines at toy size (the configs of diffusers' own Shap-E tests),
    with the standard marching-cubes tables in the renderer, so the tiny model's mesh is not empty."""
    import torch
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEImg2ImgPipeline, ShapEPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModel,
    )

    from kubin.models.families.shap_e.model import marching_cubes_tables

    def prior():
        return PriorTransformer(
            num_attention_heads=2, attention_head_dim=16, embedding_dim=EMBED_DIM, num_embeddings=32,
            embedding_proj_dim=EMBED_DIM, time_embed_dim=128, num_layers=1, clip_embed_dim=2 * EMBED_DIM,
            additional_embeddings=0, time_embed_act_fn="gelu", norm_in_type="layer",
            encoder_hid_proj_type=None, added_emb_type=None,
        )  # fmt: skip

    def renderer():
        # param_shapes: the rows of the MLP's first four weights that the latent (32 x EMBED_DIM) sets.
        made = ShapERenderer(param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)), d_latent=EMBED_DIM, d_hidden=8,
                             n_output=12, background=(0.1, 0.1, 0.1))  # fmt: skip
        cases, masks = marching_cubes_tables()
        made.mesh_decoder.cases.copy_(torch.from_numpy(cases))
        made.mesh_decoder.masks.copy_(torch.from_numpy(masks))
        return made

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModelWithProjection(
            CLIPTextConfig(
                bos_token_id=512,
                eos_token_id=513,
                pad_token_id=513,
                vocab_size=514,
                hidden_size=EMBED_DIM,
                projection_dim=EMBED_DIM,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
            )
        )
        image_encoder = CLIPVisionModel(
            CLIPVisionConfig(
                hidden_size=EMBED_DIM,
                image_size=32,
                patch_size=8,
                num_channels=3,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                projection_dim=EMBED_DIM,
            )
        )
        text_prior, image_prior = prior(), prior()
        text_renderer, image_renderer = renderer(), renderer()
    for module in (text_encoder, image_encoder, text_prior, image_prior, text_renderer, image_renderer):
        module.eval()  # built in code they start in training mode; from_pretrained gives eval mode

    def scheduler():  # the openai/shap-e repos' scheduler
        return HeunDiscreteScheduler(
            beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample", use_karras_sigmas=True,
            clip_sample=True, clip_sample_range=1.0,
        )  # fmt: skip

    text_pipe = ShapEPipeline(prior=text_prior, text_encoder=text_encoder, tokenizer=tiny_clip_tokenizer(),
                              scheduler=scheduler(), shap_e_renderer=text_renderer)  # fmt: skip
    image_processor = CLIPImageProcessor(
        crop_size=32, size=32, do_center_crop=True, do_normalize=True, do_resize=True, resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    )  # fmt: skip
    image_pipe = ShapEImg2ImgPipeline(prior=image_prior, image_encoder=image_encoder,
                                      image_processor=image_processor, scheduler=scheduler(),
                                      shap_e_renderer=image_renderer)  # fmt: skip
    return {"t2mesh": text_pipe, "i2mesh": image_pipe}
