"""The tiny kd31 model(s): the real classes at toy size with seeded random weights, built in code."""

from __future__ import annotations

from kubin.models.tiny_parts import EMBED_DIM, tiny_t5_encoder, tiny_t5_tokenizer


def build(model_id: str) -> dict:
    """The parts of tiny model `model_id` to save, by folder (or file) name."""
    return build_tiny_kd31()


def build_tiny_kd31(seed: int = 0):
    """Kandinsky 3.1 at toy size, written as the official repo lays out its files (repo/weights/...), so
    loading it runs the same conversion as real weights: base, Flash and inpainting UNets, MoVQ, T5."""
    import torch
    from diffusers import Kandinsky3UNet, VQModel

    from kubin.models.families.kd31.convert import OfficialLayout, UNetArch
    from kubin.models.families.kd31.inpaint import Kandinsky3InpaintUNet

    arch = UNetArch(groups=4, head_dim=8)
    tokenizer = tiny_t5_tokenizer()
    unet_config = {
        "time_embedding_dim": 16,
        "groups": arch.groups,
        "attention_head_dim": arch.head_dim,
        "layers_per_block": 2,  # the fewest Kandinsky 3's up blocks take
        "block_out_channels": (32, 64),
        "cross_attention_dim": 16,
        "encoder_hid_dim": EMBED_DIM,  # the T5 width
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = tiny_t5_encoder(tokenizer)
        unets = {}
        for variant in ("base", "flash", "inpainting"):
            unet = (
                Kandinsky3InpaintUNet(in_channels=9, out_channels=4, **unet_config)
                if variant == "inpainting"
                else Kandinsky3UNet(in_channels=4, **unet_config)
            )
            unets[variant] = (unet, torch.randn(unet_config["cross_attention_dim"]))
        # The authors' MoVQ: GroupNorms of 32 groups, attention at the lowest of 4 levels (8x).
        movq = VQModel(
            block_out_channels=[32, 32, 32, 32],
            down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
            up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
            layers_per_block=1,
            latent_channels=4,
            vq_embed_dim=4,
            num_vq_embeddings=1,
            norm_num_groups=32,
            norm_type="spatial",
        )
    return {"repo": OfficialLayout(unets, movq, text_encoder.eval(), tokenizer, arch)}


# --- Kandinsky 5 ---------------------------------------------------------------------------------
