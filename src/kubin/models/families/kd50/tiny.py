"""The tiny kd50 model(s): the real classes at toy size with seeded random weights, built in code."""

from __future__ import annotations

from kubin.models.spec import FOLDER_INFO
from kubin.models.tiny_parts import tiny_clip_tokenizer, tiny_qwen_clip_encoders, tiny_qwen_processor


def build(model_id: str) -> dict:
    """The parts of tiny model `model_id` to save, by folder (or file) name."""
    return build_tiny_kd50(model_id.rsplit("-", 1)[-1])


def _template_start(pipe) -> int:
    """How many tokens the prompt template puts before the prompt, for this tokenizer; the pipelines
    hard-code the count of the real Qwen tokenizer."""
    prefix = pipe.prompt_template.split("{}")[0]
    return len(pipe.tokenizer.tokenizer(prefix).input_ids)


def build_tiny_kd50(task: str, seed: int = 0):
    """A Kandinsky 5 pipeline for one task ("t2v", "i2v", "t2i" or "i2i") at toy size, and the pipeline
    attributes that are not saved with it (Kubin keeps them in the model folder's kubin.json)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        Kandinsky5I2IPipeline,
        Kandinsky5I2VPipeline,
        Kandinsky5T2IPipeline,
        Kandinsky5T2VPipeline,
        Kandinsky5Transformer3DModel,
    )

    video = task in ("t2v", "i2v")
    processor = tiny_qwen_processor()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        qwen, clip = tiny_qwen_clip_encoders(32, 16, processor)
        if video:
            vae = AutoencoderKLHunyuanVideo(
                in_channels=3,
                out_channels=3,
                latent_channels=16,
                block_out_channels=[16, 32, 32],
                down_block_types=["HunyuanVideoDownBlock3D"] * 3,
                up_block_types=["HunyuanVideoUpBlock3D"] * 3,
                layers_per_block=1,
                norm_num_groups=8,
                mid_block_add_attention=False,
                scaling_factor=0.476986,
                spatial_compression_ratio=8,
                temporal_compression_ratio=4,
            )
        else:  # four blocks: the pipelines assume the real VAE's 8x spatial factor
            vae = AutoencoderKL(
                in_channels=3,
                out_channels=3,
                latent_channels=16,
                block_out_channels=[32, 32, 32, 32],
                down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4,
                layers_per_block=1,
                norm_num_groups=32,
                scaling_factor=0.3611,
                shift_factor=0.1159,
                use_quant_conv=False,
                use_post_quant_conv=False,
                mid_block_add_attention=False,
            )
        transformer = Kandinsky5Transformer3DModel(
            in_visual_dim=16,
            in_text_dim=32,
            in_text_dim2=16,
            time_dim=16,
            out_visual_dim=16,
            patch_size=(1, 2, 2),
            model_dim=16,
            ff_dim=32,
            num_text_blocks=1,
            num_visual_blocks=2,
            axes_dims=(1, 1, 2),
            visual_cond=task in ("i2v", "i2i"),
            attention_type="regular",
        )
        # diffusers starts every modulation at zero (adaLN-zero, for training); left so, the blocks pass
        # nothing on and the prompt and guidance would not change a pixel of the tiny model.
        for name, param in transformer.named_parameters():
            if "modulation" in name:
                torch.nn.init.normal_(param, std=0.2)
    for module in (qwen, clip, vae, transformer):
        module.eval()  # built in code they start in training mode; from_pretrained gives eval mode
    cls = {
        "t2v": Kandinsky5T2VPipeline,
        "i2v": Kandinsky5I2VPipeline,
        "t2i": Kandinsky5T2IPipeline,
        "i2i": Kandinsky5I2IPipeline,
    }[task]
    pipe = cls(
        transformer=transformer,
        vae=vae,
        text_encoder=qwen,
        tokenizer=processor,
        text_encoder_2=clip,
        tokenizer_2=tiny_clip_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0 if video else 3.0),
    )
    attributes = {"prompt_template_encode_start_idx": _template_start(pipe)}
    if not video:
        attributes["resolutions"] = [[64, 64], [64, 128], [128, 64]]
    return {"pipeline": pipe, FOLDER_INFO: {"attributes": attributes}}


# --- Kandinsky 4.0 ---------------------------------------------------------------------------------
