"""The tiny kd20 model(s): the real classes at toy size with seeded random weights, built in code."""

from __future__ import annotations

from kubin.models.tiny_parts import tiny_t5_tokenizer, tiny_xlm_roberta_tokenizer


def build(model_id: str) -> dict:
    """The parts of tiny model `model_id` to save, by folder (or file) name."""
    return build_tiny_kd20()


def build_tiny_kd20(seed: int = 0):
    """Kandinsky 2.0 at toy size, written as the official repo's files so the real loader reads it: the UNets
    at the test vectors' config, a 4-level (8x) autoencoder, a 24-wide XLM-R with its linear to 20, and an
    mT5 encoder of one layer (512 wide: the UNet fixes mT5's width)."""
    from dataclasses import replace

    import torch
    from diffusers import AutoencoderKL
    from transformers import MT5Config, MT5EncoderModel, XLMRobertaConfig

    from kubin.models.families.kd20.model import OfficialLayout, vae_config
    from kubin.models.families.kd20.unet import Kandinsky20UNet, MultilingualCLIPText, UNetConfig

    tokenizer1, tokenizer2 = tiny_xlm_roberta_tokenizer(), tiny_t5_tokenizer()
    unet_config = UNetConfig(
        image_size=8, num_channels=32, num_res_blocks=1, channel_mult="1,2", num_head_channels=16,
        attention_resolutions="4", model_dim=32, text_encoder_in_dim1=24, text_encoder_in_dim2=20,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder1 = MultilingualCLIPText(
            XLMRobertaConfig(
                vocab_size=len(tokenizer1),
                hidden_size=24,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=37,
                max_position_embeddings=80,  # 77 tokens after XLM-R's 2 reserved positions
                pad_token_id=1,
                bos_token_id=0,
                eos_token_id=2,
            ),
            out_features=20,
        )
        text_encoder2 = MT5EncoderModel(
            MT5Config(
                vocab_size=len(tokenizer2), d_model=512, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
            )
        )  # fmt: skip
        unet = Kandinsky20UNet(unet_config)
        inpaint_unet = Kandinsky20UNet(replace(unet_config, inpainting=True))
        ddconfig = {"z_channels": 4, "resolution": 64, "ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1}
        vae = AutoencoderKL(**vae_config(ddconfig))
    modules = {
        "unet": unet.eval(),
        "inpaint_unet": inpaint_unet.eval(),
        "vae": vae.eval(),
        "text_encoder1": text_encoder1.eval(),
        "tokenizer1": tokenizer1,
        "text_encoder2": text_encoder2.eval(),
        "tokenizer2": tokenizer2,
    }
    return {"repo": OfficialLayout(**modules)}


# --- Kandinsky 3 ---------------------------------------------------------------------------------
