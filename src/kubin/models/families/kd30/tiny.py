"""The tiny kd30 model(s): the real classes at toy size with seeded random weights, built in code."""

from __future__ import annotations

from kubin.models.tiny_parts import EMBED_DIM, tiny_movq, tiny_t5_encoder, tiny_t5_tokenizer


def build(model_id: str) -> dict:
    """The parts of tiny model `model_id` to save, by folder (or file) name."""
    return build_tiny_kd30()


def build_tiny_kd30(seed: int = 0):
    """Kandinsky 3's one pipeline at toy size: T5 encoder, UNet and the 4-block (8x) tiny MoVQ."""
    import torch
    from diffusers import DDPMScheduler, Kandinsky3Pipeline, Kandinsky3UNet

    tokenizer = tiny_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = tiny_t5_encoder(tokenizer)
        unet = Kandinsky3UNet(
            in_channels=4,
            time_embedding_dim=4,
            groups=2,
            attention_head_dim=4,
            layers_per_block=3,
            block_out_channels=(32, 64),
            cross_attention_dim=4,
            encoder_hid_dim=EMBED_DIM,
        )
        movq = tiny_movq()
    for module in (text_encoder, unet, movq):
        module.eval()  # built in code they start in training mode (T5 dropout); from_pretrained gives eval
    # The cosine schedule of diffusers' own Kandinsky 3 tests (Kandinsky 3 was trained on a cosine schedule).
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        thresholding=False,
    )
    pipe = Kandinsky3Pipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler, movq=movq
    )
    return {"pipeline": pipe}
