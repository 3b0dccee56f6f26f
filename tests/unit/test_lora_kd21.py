"""LoRA adapters on Kandinsky 2.1: its decoder UNet and prior have the layer names of 2.2's, so a file is
told apart by what only one of them has (2.1's prompt layers, the number of image tokens, the CLIP width);
a file that says nothing either way fits both. Files made here with peft on the tiny models."""

import pytest
from lora_helpers import ATTENTION, diff, save_lora

from kubin.engine import Engine, Job
from kubin.errors import InvalidParams
from kubin.models.lora import LoraLibrary

KD21 = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2, "seed": 7}
TEXT_LAYERS = ["encoder_hid_proj.text_proj", "encoder_hid_proj.image_embeds", "add_embedding.text_proj"]


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    """A 2.1 decoder adapter (with its prompt layers), a 2.2 one (with its image-token layer), one of the
    attention layers alone, and a 2.1 prior one."""
    from diffusers import PriorTransformer, UNet2DConditionModel

    from kubin.models.tiny import tiny_model_folder

    folder = tmp_path_factory.mktemp("lora21")
    kd21, kd22 = tiny_model_folder("tiny-kd21"), tiny_model_folder("tiny-kd22")
    unet21 = UNet2DConditionModel.from_pretrained(kd21 / "decoder" / "unet")
    save_lora(unet21, folder / "ink21.safetensors", ATTENTION + TEXT_LAYERS, 1)
    save_lora(unet21, folder / "plain.safetensors", ATTENTION, 2)
    unet22 = UNet2DConditionModel.from_pretrained(kd22 / "decoder" / "unet")
    image_tokens = ["add_k_proj", "add_v_proj", "encoder_hid_proj.image_embeds"]  # 32 of the added K/V width
    save_lora(unet22, folder / "ink22.safetensors", ATTENTION + image_tokens, 3)
    prior = PriorTransformer.from_pretrained(kd21 / "prior" / "prior")
    save_lora(prior, folder / "mood21.safetensors", ATTENTION, 4)
    return folder


@pytest.fixture(scope="module")
def kd21_engine(fresh_manager, lora_folder, tmp_path_factory):
    engine = Engine(fresh_manager, tmp_path_factory.mktemp("out21"), loras=LoraLibrary(lora_folder))
    yield engine
    engine.close(wait=True)


def run(engine, model="tiny-kd21", **values):
    return engine.run(Job("t2i", model, {**KD21, **values})).results[0]


def test_a_2_1_and_a_2_2_file_are_told_apart_and_an_attention_only_one_fits_both(lora_folder):
    found = {f.name: f for f in LoraLibrary(lora_folder).list()}
    assert (found["ink21"].family, found["ink21"].part, found["ink21"].also) == ("kd21", "decoder", ())
    assert (found["ink22"].family, found["ink22"].part, found["ink22"].also) == ("kd22", "decoder", ())
    assert found["plain"].fits_family("kd21") and found["plain"].fits_family("kd22")
    assert found["plain"].describe() == (
        "the decoder UNet of family kd22 (or kd21: its layers are alike there), rank 4"
    )
    assert found["mood21"].part == "prior" and found["mood21"].fits_family("kd21")


def test_a_full_size_prior_file_is_told_apart_by_its_clip_width(tmp_path):
    from diffusers import PriorTransformer

    for width in (768, 1280):
        prior = PriorTransformer(num_attention_heads=1, attention_head_dim=8, num_layers=1,
                                 embedding_dim=width, num_embeddings=2, additional_embeddings=2)  # fmt: skip
        save_lora(prior, tmp_path / f"p{width}.safetensors", ["proj_in", "to_q"], 5)
    found = {f.name: f for f in LoraLibrary(tmp_path).list()}
    assert (found["p768"].family, found["p768"].also) == ("kd21", ())
    assert (found["p1280"].family, found["p1280"].also) == ("kd22", ())


def test_kandinsky_2_1_takes_its_adapters_and_a_job_without_them_is_a_fresh_models(kd21_engine, tmp_path):
    from kubin.models.manager import ModelManager

    base = run(kd21_engine)
    styled = run(kd21_engine, loras=["ink21:1"])
    zero = run(kd21_engine, loras=["ink21:0"])
    both = run(kd21_engine, loras=["plain:1", "mood21:1"])
    after = run(kd21_engine)
    assert diff(base, styled) > 1 and diff(base, both) > 1 and diff(styled, both) > 1
    assert diff(base, zero) == 0 and diff(base, after) == 0
    assert styled.meta["loras"][0]["name"] == "ink21"
    manager = ModelManager(device="cpu", dtype="fp32")
    fresh_engine = Engine(manager, tmp_path)
    try:
        fresh = run(fresh_engine)
    finally:
        fresh_engine.close(wait=True)
        manager.unload()
    assert diff(fresh, after) == 0


def test_a_2_2_file_is_refused_on_2_1_and_a_2_1_file_on_2_2(kd21_engine, lora_folder, photo):
    with pytest.raises(InvalidParams) as refused:
        kd21_engine.submit(Job("t2i", "tiny-kd21", {**KD21, "loras": ["ink22"]}))
    assert str(refused.value).startswith(
        "The LoRA ink22.safetensors fits the decoder UNet of family kd22, rank 4; Kandinsky 2.1 (tiny"
    )
    assert str(refused.value).endswith("(family kd21) needs a LoRA for its decoder UNet, prior transformer.")
    with pytest.raises(
        InvalidParams, match=r"The LoRA ink21.safetensors fits the decoder UNet of family kd21"
    ):
        kd21_engine.submit(Job("t2i", "tiny-kd22", {**KD21, "loras": ["ink21"]}))
    inpaint = {
        "prompt": "a red cat",
        "steps": 2,
        "prior_steps": 2,
        "seed": 7,
        "init_image": photo,
        "mask": photo,
    }
    plain = kd21_engine.run(Job("inpaint", "tiny-kd21", inpaint)).results[0]
    inked = kd21_engine.run(Job("inpaint", "tiny-kd21", {**inpaint, "loras": ["ink21"]})).results[0]
    assert diff(inked, plain) > 1  # the inpainting decoder's own UNet takes the decoder adapter
    assert diff(kd21_engine.run(Job("inpaint", "tiny-kd21", inpaint)).results[0], plain) == 0
    assert run(kd21_engine).path.is_file()  # the engine goes on
