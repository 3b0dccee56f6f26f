"""Small parts the tiny models of several families share: tokenizers made in code (no download), the 2.x
prior modules and decoder UNet, the MoVQ of 2.x and 3.x, and the Qwen2-VL processor, all at toy size."""

from __future__ import annotations

EMBED_DIM = 32  # the width of every tiny text and image embedding


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


def tiny_t5_encoder(tokenizer):
    """A two-layer T5 encoder EMBED_DIM wide (the 3.x UNets' and the 4.0 DiT's text width)."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(tokenizer), d_model=EMBED_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8)  # fmt: skip
    return T5EncoderModel(config)


def tiny_t5_tokenizer():
    """A character-level T5 (Unigram) tokenizer with T5's specials: pad 0, </s> 1, <unk> 2."""
    import string

    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    for c in string.ascii_letters + string.digits + string.punctuation:
        pieces += [(c, -5.0), ("\u2581" + c, -4.0)]  # a word start is cheaper as one piece
    return T5Tokenizer(vocab=pieces, extra_ids=0)


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


def tiny_qwen_clip_encoders(qwen_hidden: int, clip_hidden: int, processor):
    """The text encoders of Kandinsky 5 and 6: a two-layer Qwen2.5-VL (with a one-layer vision tower, which
    image-to-image and prompt expansion with an image feed) over `processor`'s tokenizer, and a CLIP text
    encoder over `tiny_clip_tokenizer`."""
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
    # What it writes when it captions or expands a prompt (kubin.tools.vlm): a short line, so tests stay fast.
    qwen.generation_config.max_new_tokens = 24
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


def tiny_prior_modules():
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


def tiny_prior_pipeline(cls, text_encoder, image_encoder, prior):
    """A 2.x prior pipeline (2.1 and 2.2 share the layout) around the tiny prior modules."""
    return cls(
        prior=prior,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        tokenizer=tiny_clip_tokenizer(),
        scheduler=tiny_prior_scheduler(),
        image_processor=tiny_image_processor(),
    )


def tiny_prior_scheduler():
    from diffusers import UnCLIPScheduler

    return UnCLIPScheduler(
        variance_type="fixed_small_log",
        prediction_type="sample",
        num_train_timesteps=1000,
        clip_sample=True,
        clip_sample_range=10.0,
    )


def tiny_image_processor():
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


def tiny_movq():
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


def tiny_unet(in_channels: int, addition_embed_type: str = "image", encoder_hid_dim_type: str = "image_proj"):
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
