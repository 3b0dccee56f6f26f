"""Captions and prompt expansion with a generation model's own vision-language text encoder: Kandinsky 5 and 6
read prompts with Qwen2.5-VL, which also sees images and writes text. The loaded pipeline's processor and
encoder are used as they are (no caption or expansion model beside them, no second copy), with greedy
decoding, so the same image or prompt gives the same text."""

from __future__ import annotations

from typing import Any

from PIL import Image

# Qwen's chat layout, for a processor saved without a chat template (the tiny models' byte-level one).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CAPTION_TOKENS = 160  # the most a caption writes
EXPAND_TOKENS = 256  # the most an expanded prompt writes


def generate_text(processor: Any, encoder: Any, device: Any, content: list[dict], max_new_tokens: int) -> str:
    """The encoder's greedy answer to one user message (`content`: chat parts, text and images), printable
    text only (the answer goes into prompts, metadata and the page)."""
    import torch

    template = None if getattr(processor, "chat_template", None) else QWEN_CHAT_TEMPLATE
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}],
        tokenize=False,
        add_generation_prompt=True,
        chat_template=template,
    )
    images = [part["image"] for part in content if part["type"] == "image"] or None
    # The model's own limit when its generation config sets one (the tiny models' short line), else ours.
    max_new_tokens = getattr(encoder.generation_config, "max_new_tokens", None) or max_new_tokens
    inputs = processor(text=[text], images=images, padding=True, return_tensors="pt").to(device)
    with torch.no_grad():
        out = encoder.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
    answer = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    return " ".join("".join(c for c in answer if c.isprintable() or c.isspace()).split())


def caption(processor: Any, encoder: Any, device: Any, image: Image.Image, mode: str) -> str:
    """What `image` shows, in words, as `mode` asks (kubin.tools.caption.MODES)."""
    from kubin.tools.caption import CHAT_PROMPTS, check_mode

    prompt = CHAT_PROMPTS[check_mode(mode)]
    content = [{"type": "image", "image": image.convert("RGB")}, {"type": "text", "text": prompt}]
    return generate_text(processor, encoder, device, content, CAPTION_TOKENS)


def expand(processor: Any, encoder: Any, device: Any, prompt: str, instruction: str) -> str:
    """`prompt` rewritten in detail as `instruction` (with a {} for the prompt) asks; the prompt itself when
    the model answers nothing."""
    content = [{"type": "text", "text": instruction.format(prompt.strip())}]
    return generate_text(processor, encoder, device, content, EXPAND_TOKENS) or prompt.strip()
