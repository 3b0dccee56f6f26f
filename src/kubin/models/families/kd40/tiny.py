"""The tiny kd40 model(s): the real classes at toy size with seeded random weights, built in code."""

from __future__ import annotations

from kubin.models.tiny_parts import EMBED_DIM, tiny_t5_encoder, tiny_t5_tokenizer


def build(model_id: str) -> dict:
    """The parts of tiny model `model_id` to save, by folder (or file) name."""
    return build_tiny_kd40()


def build_tiny_kd40(seed: int = 0):
    """Kandinsky 4.0 T2V Flash at toy size, laid out like the official repos so the real loader reads it:
    dit/ holds kandinsky4_distil_512.pt (our DiT at the test vectors' config), cogvideox/ holds vae/,
    text_encoder/, tokenizer/ and scheduler/ as THUDM/CogVideoX-5b does."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler

    from kubin.models.families.kd40.dit import Kandinsky4DiT
    from kubin.models.families.kd40.model import CogVideoXParts, DitCheckpoint

    tokenizer = tiny_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = tiny_t5_encoder(tokenizer)
        # Four blocks: the real VAE's 8x spatial and 4x temporal factors, so sizes and frames behave alike.
        vae = AutoencoderKLCogVideoX(
            block_out_channels=(8, 8, 16, 16),
            latent_channels=16,
            layers_per_block=1,
            norm_num_groups=4,
            temporal_compression_ratio=4,
            scaling_factor=0.7,
        )
        dit = Kandinsky4DiT(
            in_visual_dim=16, in_text_dim=EMBED_DIM, time_dim=16, out_visual_dim=16, patch_size=(1, 2, 2),
            model_dim=32, ff_dim=64, num_blocks=2, axes_dims=(4, 6, 6),
        )  # fmt: skip
    for module in (text_encoder, vae, dit):
        module.eval()  # built in code they start in training mode (T5 dropout)
    # The noise table of CogVideoX-5b's scheduler_config.json.
    scheduler = CogVideoXDDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        set_alpha_to_one=True,
        snr_shift_scale=1.0,
        steps_offset=0,
        timestep_spacing="trailing",
    )
    return {"dit": DitCheckpoint(dit), "cogvideox": CogVideoXParts(vae, text_encoder, tokenizer, scheduler)}


# --- Shap-E --------------------------------------------------------------------------------------
