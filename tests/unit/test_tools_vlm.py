"""Kandinsky 5 and 6 caption images and expand prompts with their own Qwen2.5-VL text encoder: a tool job in the
engine's queue on the loaded model (no caption or expansion model loaded beside it). The tiny models' Qwen is
random, so each answer is checked against the encoder's own greedy `generate` called directly."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_in_process
from PIL import Image

from kubin.engine import Job
from kubin.models.tiny import tiny_model_folder
from kubin.tools.caption import CHAT_PROMPTS
from kubin.tools.jobs import caption_image, enhance_prompt
from kubin.tools.models import ToolModels
from kubin.tools.vlm import QWEN_CHAT_TEMPLATE


@pytest.fixture(scope="module")
def manager(fresh_manager):
    return fresh_manager


@pytest.fixture
def vlm_engine(engine):
    # Tool models that would answer otherwise: the test shows they are not the ones that do.
    engine.tool_models = ToolModels(caption="tiny-caption", enhance="tiny-enhance")
    return engine


def picture() -> Image.Image:
    return Image.fromarray((np.random.default_rng(7).random((48, 64, 3)) * 255).astype(np.uint8))


def pipeline(model_id: str, cls: str):
    """The tiny model's pipeline loaded again, apart from the engine's: the reference answers come from it."""
    import diffusers

    return getattr(diffusers, cls).from_pretrained(tiny_model_folder(model_id) / "pipeline").to("cpu")


def greedy(pipe, content: list[dict]) -> str:
    """What the encoder writes for one user message with plain transformers calls."""
    processor, encoder = pipe.tokenizer, pipe.text_encoder
    text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True, chat_template=QWEN_CHAT_TEMPLATE)  # fmt: skip
    images = [c["image"] for c in content if c["type"] == "image"] or None
    inputs = processor(text=[text], images=images, return_tensors="pt")
    out = encoder.generate(**inputs, do_sample=False, max_new_tokens=24)
    answer = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    return " ".join("".join(c for c in answer if c.isprintable() or c.isspace()).split())


def test_kandinsky_5_captions_with_the_loaded_models_own_encoder(vlm_engine):
    vlm_engine.run(Job("t2i", "tiny-kd50-t2i", {"prompt": "a cat", "steps": 1, "width": 64, "height": 64}))
    loaded = vlm_engine.manager.get("tiny-kd50-t2i")

    said = caption_image(vlm_engine, picture(), "tiny-kd50-t2i", mode="detailed")

    expected = greedy(pipeline("tiny-kd50-t2i", "Kandinsky5T2IPipeline"),
                      [{"type": "image", "image": picture()}, {"type": "text", "text": CHAT_PROMPTS["detailed"]}])  # fmt: skip
    assert said == expected and said
    tags = caption_image(vlm_engine, picture(), "tiny-kd50-t2i", mode="tags")
    assert tags == greedy(pipeline("tiny-kd50-t2i", "Kandinsky5T2IPipeline"),
                          [{"type": "image", "image": picture()}, {"type": "text", "text": CHAT_PROMPTS["tags"]}])  # fmt: skip
    assert vlm_engine.manager.get("tiny-kd50-t2i") is loaded  # the same model, not loaded again
    assert vlm_engine.manager._tools == {}  # and no caption model beside it


def test_kandinsky_5_expands_a_prompt_with_its_own_template(vlm_engine):
    from kubin.models.families.kd50.model import IMAGE_EXPANSION

    said = enhance_prompt(vlm_engine, "a red cat", "tiny-kd50-t2i")

    expected = greedy(pipeline("tiny-kd50-t2i", "Kandinsky5T2IPipeline"),
                      [{"type": "text", "text": IMAGE_EXPANSION.format("a red cat")}])  # fmt: skip
    assert said == expected and said != "a red cat"
    assert vlm_engine.manager.loaded_id == "tiny-kd50-t2i" and vlm_engine.manager._tools == {}


def test_kandinsky_6_expands_with_its_pipelines_expand_prompts_and_captions_too(vlm_engine):
    said = enhance_prompt(vlm_engine, "a red cat", "tiny-kd6")
    caption = caption_image(vlm_engine, picture(), "tiny-kd6")

    pipe = pipeline("tiny-kd6", "Kandinsky6TI2VAPipeline")
    with torch.no_grad():
        expanded = pipe.expand_prompts("a red cat", pipe.tokenizer, pipe.text_encoder, "cpu", max_sequence_length=24,
                                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert said == "".join(c for c in expanded if c.isprintable() or c == "\n").strip()
    content = [{"type": "image", "image": picture()}, {"type": "text", "text": CHAT_PROMPTS["short"]}]
    assert caption == greedy(pipe, content)
    assert vlm_engine.manager.loaded_id == "tiny-kd6" and vlm_engine.manager._tools == {}


def test_kubin_caption_and_enhance_use_a_kandinsky_5_models_own_encoder(tmp_path, vlm_engine):
    picture().save(tmp_path / "cat.png")
    (tmp_path / "user.yaml").write_text("")
    config = ["--config", str(tmp_path / "user.yaml")]

    captioned = run_in_process(tmp_path, ["caption", *config, "--caption-model", "tiny-kd50-i2i",
                                          "--mode", "detailed", str(tmp_path / "cat.png")])  # fmt: skip
    enhanced = run_in_process(tmp_path, ["enhance", *config, "--model", "tiny-kd50-t2i", "a red cat"])

    assert captioned.returncode == 0, captioned.stderr
    assert json.loads(captioned.stdout)["caption"] == caption_image(
        vlm_engine, picture(), "tiny-kd50-i2i", mode="detailed"
    )
    assert enhanced.returncode == 0, enhanced.stderr
    assert enhanced.stdout.strip() == enhance_prompt(vlm_engine, "a red cat", "tiny-kd50-t2i")
