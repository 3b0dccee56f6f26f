"""Prompt expansion: a small instruct model (a Qwen2.5 0.5B Instruct class model by default) through
transformers' `text-generation` pipeline rewrites a short prompt into a detailed one, for the user to edit
before generating."""

from __future__ import annotations

from typing import Any

DEFAULT_ENHANCE_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
KNOWN_ENHANCE_MODELS = (DEFAULT_ENHANCE_MODEL, "Qwen/Qwen2.5-1.5B-Instruct", "tiny-enhance")
SETTING = "tools.enhance_model (--enhance-model)"
MAX_NEW_TOKENS = 160
INSTRUCTION = (
    "You turn a short idea into one prompt for the text-to-image model {target}. Keep the user's subject and "
    "meaning; add the setting, composition, lighting, colours and style. Reply with the prompt only: one "
    "paragraph, under 70 words, no quotes, no preamble."
)


def load_enhancer(model_id: str, device: str = "cpu") -> Any:
    """The `text-generation` pipeline of `model_id`, its model placed on `device`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    from kubin.runtime.placement import place_tool_model
    from kubin.tools.weights import tool_folder

    folder = tool_folder(model_id, "prompt expansion model", SETTING)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    place_tool_model(model, device)
    return pipeline(
        "text-generation", model=model, tokenizer=AutoTokenizer.from_pretrained(folder), device=device
    )


def enhance(enhancer: Any, prompt: str, target: str = "Kandinsky") -> str:
    """`prompt` rewritten in detail for the model titled `target` (greedy decoding: the same prompt gives
    the same text)."""
    import torch

    from kubin.errors import InvalidParams

    if not prompt.strip():
        raise InvalidParams("Write a short prompt first; Enhance prompt expands it.")
    messages = [
        {"role": "system", "content": INSTRUCTION.format(target=target or "Kandinsky")},
        {"role": "user", "content": prompt.strip()},
    ]
    with torch.no_grad():
        # The model's own limit when its generation config sets one (the tiny model's few tokens), else ours.
        limit = getattr(enhancer.model.generation_config, "max_new_tokens", None) or MAX_NEW_TOKENS
        out = enhancer(messages, return_full_text=False, do_sample=False, max_new_tokens=limit)
    text = " ".join(str(out[0]["generated_text"]).split()).strip().strip('"').strip()
    return text or prompt.strip()
