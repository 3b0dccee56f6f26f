"""The tiny tool models: the real transformers classes (Depth Anything, Florence-2, Qwen2) from small
configs with seeded random weights and byte-level tokenizers made in code, saved in transformers layout
so they load through the same `from_pretrained` path as real weights. Their generation configs keep the
output to lowercase letters and spaces, so the random text they write is readable and deterministic."""

from __future__ import annotations

import string
from pathlib import Path

SEED = 0


def save_depth(folder: Path) -> None:
    """Depth Anything (a 4-layer, 32-wide DINOv2 backbone) and its DPT image processor at 56 px."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(SEED)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=56, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)  # fmt: skip
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, patch_size=14)  # fmt: skip
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(folder)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14, resample=3,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)  # fmt: skip


def _byte_vocab(specials: list[str]) -> dict[str, int]:
    from tokenizers import pre_tokenizers

    vocab = {s: i for i, s in enumerate(specials)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    return vocab


def _letters_only(vocab: dict[str, int], size: int, allowed: list[int]) -> list[int]:
    """Token ids to suppress so that only lowercase letters, spaces and `allowed` can be generated."""
    keep = {vocab[c] for c in string.ascii_lowercase} | {vocab["\u0120"]} | set(allowed)  # Ġ is the space
    return [i for i in range(size) if i not in keep]


def save_caption(folder: Path) -> None:
    """Florence-2 (a 4-stage DaViT 8..32 wide, a 1+1-layer BART 32 wide) with a byte-level BART tokenizer and
    a 64 px CLIP image processor, in Florence2Processor."""
    import torch
    from transformers import (
        BartConfig,
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
        GenerationConfig,
    )

    torch.manual_seed(SEED)
    vocab = _byte_vocab(["<s>", "<pad>", "</s>", "<unk>"])
    vocab["<mask>"] = len(vocab)
    tokenizer = BartTokenizer(vocab=vocab, merges=[], extra_special_tokens={"image_token": "<image>"})
    vision = Florence2VisionConfig(depths=[1, 1, 1, 1], embed_dim=[8, 16, 16, 32], num_heads=[1, 1, 1, 2],
                                   num_groups=[1, 1, 1, 2], window_size=2, projection_dim=32, drop_path_rate=0.0,
                                   max_temporal_embeddings=4, max_position_embeddings=8)  # fmt: skip
    ids = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
    text = BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                      max_position_embeddings=256, decoder_start_token_id=2, forced_eos_token_id=2, init_std=0.5,
                      **ids)  # fmt: skip
    model = Florence2ForConditionalGeneration(
        Florence2Config(vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id)
    ).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=2, forced_eos_token_id=2, min_new_tokens=6, max_new_tokens=20, do_sample=False,
        num_beams=1, suppress_tokens=_letters_only(vocab, len(tokenizer), [2]), **ids,
    )  # fmt: skip
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64},
                                         do_center_crop=False, image_seq_length=5)  # fmt: skip
    Florence2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def save_enhance(folder: Path) -> None:
    """A 2-layer, 32-wide Qwen2 causal LM with a byte-level Qwen2 tokenizer and a ChatML template (the
    format of Qwen2.5 Instruct)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    torch.manual_seed(SEED)
    vocab = _byte_vocab([])
    tokenizer = Qwen2Tokenizer(vocab=dict(vocab), merges=[])
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]}
    )
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=True,
                         initializer_range=0.5)  # fmt: skip
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, min_new_tokens=8, max_new_tokens=24,
        do_sample=False, suppress_tokens=_letters_only(vocab, len(tokenizer), [eos]),
    )  # fmt: skip
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
