"""The tiny model family: the real pipeline classes built from small configs with seeded random weights.

No download is needed: tokenizers are made in code. Each tiny model is built once, saved in diffusers
layout under the Kubin cache, and then loaded through the same `from_pretrained` path as real weights,
so tests exercise the real loading code too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

TINY_VERSION = "v4"  # bump when a tiny config changes, so stale cached copies are rebuilt
EMBED_DIM = 32


def cache_root() -> Path:
    return Path(os.environ.get("KUBIN_CACHE_DIR") or Path.home() / ".cache" / "kubin")


def tiny_clip_tokenizer():
    """A byte-level CLIP tokenizer (no merges) with the special tokens a real one has."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols)}
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    # model_max_length is required: without it the prior truncates at 1e30 and overflows.
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


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
        text_encoder, image_encoder, prior = _tiny_prior_modules()
        unet = _tiny_unet(in_channels=4)
        movq = _tiny_movq()
        # The inpainting decoder sees latents, mask and masked image: 4 + 1 + 4 input channels.
        inpaint_unet = _tiny_unet(in_channels=9)
        # The ControlNet decoder adds the hint (a depth map) through its "image_hint" embedding.
        controlnet_unet = _tiny_unet(in_channels=8, addition_embed_type="image_hint")
    for module in (text_encoder, image_encoder, prior, unet, movq, inpaint_unet, controlnet_unet):
        module.eval()  # built in code they start in training mode; from_pretrained gives eval mode
    prior_pipe = _tiny_prior_pipeline(KandinskyV22PriorPipeline, text_encoder, image_encoder, prior)
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
        text_encoder, image_encoder, prior = _tiny_prior_modules()
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
        unet = _tiny_unet(in_channels=4, **text_image)
        movq = _tiny_movq()
        inpaint_unet = _tiny_unet(in_channels=9, **text_image)
    for module in (text_encoder, image_encoder, prior, decoder_text_encoder, unet, movq, inpaint_unet):
        module.eval()  # built in code they start in training mode; from_pretrained gives eval mode
    prior_pipe = _tiny_prior_pipeline(KandinskyPriorPipeline, text_encoder, image_encoder, prior)
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


def tiny_xlm_roberta_tokenizer():
    """A character-level XLM-R tokenizer (Latin and Cyrillic letters, digits, punctuation) with XLM-R's specials.

    The ids of <s>, <pad>, </s> and <unk> are 0-3 as in the real vocabulary; model_max_length is 77 as in
    kandinsky-2-1, whose decoder pads prompts to 77 tokens.
    """
    from transformers import XLMRobertaTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz" + "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
    chars = letters + letters.upper() + "0123456789" + ".,:;!?'\"-()&/+#%*@"
    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    for c in chars:  # a word start costs less as one piece than as "▁" + letter
        pieces += [("\u2581" + c, -3.5), (c, -3.0)]
    pieces.append(("<mask>", 0.0))
    return XLMRobertaTokenizer(vocab=pieces, model_max_length=77)


def _tiny_prior_modules():
    """CLIP text and image encoders with projection and a one-layer prior, all EMBED_DIM wide."""
    import torch
    from diffusers import PriorTransformer
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
            vocab_size=1000,
            hidden_size=EMBED_DIM,
            projection_dim=EMBED_DIM,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
        )
    )
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=EMBED_DIM,
            projection_dim=EMBED_DIM,
            image_size=224,
            patch_size=14,
            num_channels=3,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
        )
    )
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=12, embedding_dim=EMBED_DIM, num_layers=1
    )
    # Random clip_std of zeros would make every embedding zero; the real checkpoint holds real stats.
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))
    return text_encoder, image_encoder, prior


def _tiny_prior_pipeline(cls, text_encoder, image_encoder, prior):
    """A 2.x prior pipeline (2.1 and 2.2 share the layout) around the tiny prior modules."""
    return cls(
        prior=prior,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        tokenizer=tiny_clip_tokenizer(),
        scheduler=_tiny_prior_scheduler(),
        image_processor=_tiny_image_processor(),
    )


def _tiny_prior_scheduler():
    from diffusers import UnCLIPScheduler

    return UnCLIPScheduler(
        variance_type="fixed_small_log",
        prediction_type="sample",
        num_train_timesteps=1000,
        clip_sample=True,
        clip_sample_range=10.0,
    )


def _tiny_image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        crop_size=224,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        resample=3,
        size=224,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )


def _tiny_movq():
    """Four blocks give the real MoVQ's 8x spatial factor, so sizes behave as with real weights."""
    from diffusers import VQModel

    return VQModel(
        block_out_channels=[32, 32, 64, 64],
        down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        vq_embed_dim=4,
    )


def _tiny_unet(
    in_channels: int, addition_embed_type: str = "image", encoder_hid_dim_type: str = "image_proj"
):
    """The decoder UNet: 2.2 conditions on the image embedding, 2.1 on text and image ("text_image")."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        in_channels=in_channels,
        out_channels=8,
        addition_embed_type=addition_embed_type,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        encoder_hid_dim=EMBED_DIM,
        encoder_hid_dim_type=encoder_hid_dim_type,
        cross_attention_dim=32,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    )


# --- Kandinsky 2.0 (native) ----------------------------------------------------------------------
def build_tiny_kd20(seed: int = 0):
    """Kandinsky 2.0 at toy size, written as the official repo's files so the real loader reads it: the UNets
    at the test vectors' config, a 4-level (8x) autoencoder, a 24-wide XLM-R with its linear to 20, and an
    mT5 encoder of one layer (512 wide: the UNet fixes mT5's width)."""
    from dataclasses import replace

    import torch
    from diffusers import AutoencoderKL
    from transformers import MT5Config, MT5EncoderModel, XLMRobertaConfig

    from kubin.models.kd20_native import OfficialLayout, vae_config
    from kubin.models.native.kd20_unet import Kandinsky20UNet, MultilingualCLIPText, UNetConfig

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
def tiny_t5_tokenizer():
    """A character-level T5 (Unigram) tokenizer with T5's specials: pad 0, </s> 1, <unk> 2."""
    import string

    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    for c in string.ascii_letters + string.digits + string.punctuation:
        pieces += [(c, -5.0), ("\u2581" + c, -4.0)]  # a word start is cheaper as one piece
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def build_tiny_kd30(seed: int = 0):
    """Kandinsky 3's one pipeline at toy size: T5 encoder, UNet and the 4-block (8x) tiny MoVQ."""
    import torch
    from diffusers import DDPMScheduler, Kandinsky3Pipeline, Kandinsky3UNet
    from transformers import T5Config, T5EncoderModel

    tokenizer = tiny_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(
            T5Config(
                vocab_size=len(tokenizer),
                d_model=EMBED_DIM,  # the UNet's encoder_hid_dim
                d_kv=8,
                d_ff=37,
                num_layers=2,
                num_heads=4,
                relative_attention_num_buckets=8,
            )
        )
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
        movq = _tiny_movq()
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


def build_tiny_kd31(seed: int = 0):
    """Kandinsky 3.1 at toy size, written as the official repo lays out its files (repo/weights/...), so
    loading it runs the same conversion as real weights: base, Flash and inpainting UNets, MoVQ, T5."""
    import torch
    from diffusers import Kandinsky3UNet, VQModel
    from transformers import T5Config, T5EncoderModel

    from kubin.models.native.kd3_inpaint import Kandinsky3InpaintUNet
    from kubin.models.native.kd31_convert import OfficialLayout, UNetArch

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
        text_encoder = T5EncoderModel(
            T5Config(vocab_size=len(tokenizer), d_model=EMBED_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8)
        )  # fmt: skip
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
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip


def tiny_qwen_processor():
    """A byte-level Qwen2 tokenizer (256 byte symbols, no merges, Qwen's special tokens) in the
    Qwen2-VL processor that Kandinsky 5 uses; Kandinsky 5 writes its own prompt template, so no chat
    template is needed."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Qwen2Tokenizer(vocab={s: i for i, s in enumerate(symbols)}, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS})
    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor()
    )


def _tiny_kd5_text_encoders(qwen_hidden: int, clip_hidden: int, processor):
    """Qwen2.5-VL (with a one-layer vision tower, which image-to-image feeds) and the CLIP text encoder."""
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
    )

    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(name) for name in QWEN_SPECIAL_TOKENS}
    quarter = qwen_hidden // 2 // 4  # mrope sections must add up to half a head's size
    qwen = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config={
                "hidden_size": qwen_hidden,
                "intermediate_size": qwen_hidden,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "rope_scaling": {
                    "mrope_section": [quarter, quarter, qwen_hidden // 4 - 2 * quarter],
                    "rope_type": "default",
                    "type": "default",
                },
                "rope_theta": 1000000.0,
                "vocab_size": len(tok),
                "bos_token_id": ids["<|endoftext|>"],
                "eos_token_id": ids["<|im_end|>"],
                "pad_token_id": ids["<|endoftext|>"],
            },  # fmt: skip
            vision_config={
                "depth": 1,
                "hidden_size": qwen_hidden,
                "intermediate_size": qwen_hidden,
                "num_heads": 2,
                "out_hidden_size": qwen_hidden,
            },
            hidden_size=qwen_hidden,
            vocab_size=len(tok),
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            vision_token_id=ids["<|vision_pad|>"],
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
        )
    )
    clip = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            vocab_size=514,
            hidden_size=clip_hidden,
            intermediate_size=clip_hidden * 2,
            num_attention_heads=2,
            num_hidden_layers=2,
            projection_dim=clip_hidden,
        )
    )
    return qwen, clip


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
        qwen, clip = _tiny_kd5_text_encoders(32, 16, processor)
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
    return {"pipeline": pipe, FOLDER_INFO_NAME: {"attributes": attributes}}


# --- Kandinsky 4.0 ---------------------------------------------------------------------------------
def build_tiny_kd40(seed: int = 0):
    """Kandinsky 4.0 T2V Flash at toy size, laid out like the official repos so the real loader reads it:
    dit/ holds kandinsky4_distil_512.pt (our DiT at the test vectors' config), cogvideox/ holds vae/,
    text_encoder/, tokenizer/ and scheduler/ as THUDM/CogVideoX-5b does."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
    from transformers import T5Config, T5EncoderModel

    from kubin.models.kd40_native import CogVideoXParts, DitCheckpoint
    from kubin.models.native.kd40_dit import Kandinsky4DiT

    tokenizer = tiny_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(
            T5Config(vocab_size=len(tokenizer), d_model=EMBED_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8)
        )  # fmt: skip
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

    from kubin.models.shape_diffusers import marching_cubes_tables

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


FOLDER_INFO_NAME = "kubin.json"

TINY_BUILDERS = {
    "tiny-kd22": build_tiny_kd22,
    "tiny-kd21": build_tiny_kd21,
    "tiny-kd30": build_tiny_kd30,
    "tiny-kd31": build_tiny_kd31,
    "tiny-kd50-t2v": lambda: build_tiny_kd50("t2v"),
    "tiny-kd50-i2v": lambda: build_tiny_kd50("i2v"),
    "tiny-kd50-t2i": lambda: build_tiny_kd50("t2i"),
    "tiny-kd50-i2i": lambda: build_tiny_kd50("i2i"),
    "tiny-shap-e": build_tiny_shap_e,
    "tiny-kd40": build_tiny_kd40,
    "tiny-kd20": build_tiny_kd20,
}


def tiny_model_folder(model_id: str) -> Path:
    """The folder holding a tiny model in diffusers layout, building it on first use (atomically)."""
    folder = cache_root() / "tiny" / f"{model_id}-{TINY_VERSION}"
    if (folder / "complete").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=folder.parent))
    try:
        for name, part in TINY_BUILDERS[model_id]().items():
            if isinstance(part, dict):  # kubin.json: what the pipelines do not save themselves
                (staging / name).write_text(json.dumps(part, indent=2), encoding="utf-8")
            else:
                part.save_pretrained(staging / name)
        (staging / "complete").write_text(TINY_VERSION)
        try:
            staging.rename(folder)
        except OSError:  # another process finished first; theirs is as good as ours
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
