"""tiny-kd6: `Kandinsky6TI2VAPipeline` at toy size with seeded random weights, built in code: a two-layer
Qwen2.5-VL and CLIP over byte-level tokenizers, the video VAE of tiny-kd50, a two-block video+audio
transformer, and an MMAudio VAE and vocoder that make 16 kHz sound (the real ones make 44.1 kHz)."""

from __future__ import annotations

from kubin.models.spec import FOLDER_INFO
from kubin.models.tiny_parts import tiny_clip_tokenizer, tiny_qwen_clip_encoders, tiny_qwen_processor

# Qwen's chat layout, for prompt expansion (the byte-level tiny tokenizer has no template of its own).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SAMPLE_RATE = 16_000
# Prompt expansion writes at most this many tokens with the tiny model (bytes: a short line).
EXPAND_MAX_TOKENS = 24


def build(model_id: str) -> dict:
    """The parts of tiny-kd6 (or tiny-kd6-sr) to save, by folder (or file) name."""
    return build_tiny_kd6_sr() if model_id.endswith("-sr") else build_tiny_kd6()


def build_tiny_kd6_sr(seed: int = 0) -> dict:
    """`Kandinsky6SRPipeline` at toy size: a 3-level K-VAE (4x spatial, 4x temporal), a one-block SR
    transformer trained (so to say) on 32x32 tiles, and a latent upscaler bank for 2x and 4x; PiFlow with
    two predictions per step, as the distilled checkpoint has ten."""
    import torch
    from diffusers import (
        Kandinsky6SRLatentUpscalerBank,
        Kandinsky6SRPipeline,
        Kandinsky6SRTransformer3DModel,
        Kandinsky6SRVAE,
        PiflowScheduler,
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = Kandinsky6SRVAE(latent_channels=4, encoder_block_out_channels=(8, 16, 16),
                              decoder_block_out_channels=(8, 16, 16), layers_per_block=1)  # fmt: skip
        transformer = Kandinsky6SRTransformer3DModel(
            in_visual_dim=4, out_visual_dim=8, time_dim=32, model_dim=32, ff_dim=64, num_visual_blocks=1,
            axes_dims=(4, 6, 6), tile_sizes=((32, 32),),
        )  # fmt: skip
        upscaler = Kandinsky6SRLatentUpscalerBank(
            in_channels=4, stage_channels=(16, 16, 8), num_pre_blocks=1, num_mid_blocks=1, num_post_blocks=1,
            num_x2_adapter_blocks=1, scales=(2, 4),
        )  # fmt: skip
    for module in (vae, transformer, upscaler):
        module.eval()
    pipe = Kandinsky6SRPipeline(transformer=transformer, vae=vae, scheduler=PiflowScheduler(n_grid=2),
                                latent_upscaler=upscaler)  # fmt: skip
    return {"pipeline": pipe}


def build_tiny_kd6(seed: int = 0) -> dict:
    import torch
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        Kandinsky6TI2VAPipeline,
        Kandinsky6Transformer3DModel,
        MMAudioVAE,
        MMAudioVocoder,
    )

    processor = tiny_qwen_processor()
    processor.chat_template = CHAT_TEMPLATE
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        qwen, clip = tiny_qwen_clip_encoders(32, 16, processor)
        vae = AutoencoderKLHunyuanVideo(
            in_channels=3,
            out_channels=3,
            latent_channels=16,
            block_out_channels=[16, 32, 32],  # three blocks: fewer do not return 4k+1 frames
            down_block_types=["HunyuanVideoDownBlock3D"] * 3,
            up_block_types=["HunyuanVideoUpBlock3D"] * 3,
            layers_per_block=1,
            norm_num_groups=8,
            mid_block_add_attention=False,
            scaling_factor=0.476986,
            spatial_compression_ratio=8,
            temporal_compression_ratio=4,
        )
        transformer = Kandinsky6Transformer3DModel(
            in_visual_dim=16,
            out_visual_dim=16,
            in_text_dim=32,
            in_text_dim2=16,
            time_dim=16,
            model_dim=16,
            ff_dim=32,
            num_text_blocks=1,
            num_visual_blocks=2,
            axes_dims=(2, 2, 4),
            visual_cond=True,
            visual_token_type_num_embeddings=2,  # image to video marks the init frame's tokens
            in_audio_dim=8,
            out_audio_dim=8,
        )
        # As for tiny-kd50: the modulations start at zero (adaLN-zero); left so, the prompt would change nothing.
        for name, param in transformer.named_parameters():
            if "modulation" in name:
                torch.nn.init.normal_(param, std=0.2)
        # One latent frame is hop_length * 2 samples; the vocoder upsamples the mel by hop_length (8 x 4 x 4).
        audio_vae = MMAudioVAE(
            mel_bins=16,
            latent_channels=8,
            hidden_channels=8,
            channel_multipliers=(1, 2),
            layers_per_block=1,
            sample_rate=SAMPLE_RATE,
            n_fft=256,
            hop_length=128,
        )
        vocoder = MMAudioVocoder(
            num_mels=16,
            upsample_initial_channel=16,
            upsample_rates=(8, 4, 4),
            upsample_kernel_sizes=(16, 8, 8),
            resblock_kernel_sizes=(3,),
            resblock_dilation_sizes=((1, 3),),
        )
    for module in (qwen, clip, vae, transformer, audio_vae, vocoder):
        module.eval()  # built in code they start in training mode; from_pretrained gives eval mode
    pipe = Kandinsky6TI2VAPipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=qwen,
        tokenizer=processor,
        text_encoder_2=clip,
        tokenizer_2=tiny_clip_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        audio_vae=audio_vae,
        vocoder=vocoder,
    )
    return {"pipeline": pipe, FOLDER_INFO: {"attributes": {"expand_max_tokens": EXPAND_MAX_TOKENS}}}
