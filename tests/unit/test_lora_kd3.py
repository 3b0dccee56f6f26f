"""LoRA adapters on the Kandinsky 3 UNet (3.0 and 3.1), which diffusers gives no LoRA loader: Kubin injects
them with peft. Files made here with peft on tiny-kd30's UNet."""

import pytest
from lora_helpers import ATTENTION, diff, kd22_decoder_lora, save_injected_lora

from kubin.engine import Engine, Job
from kubin.errors import InvalidParams
from kubin.models.lora import LoraLibrary
from kubin.outputs import read_image_metadata

KD3 = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "seed": 7}


def tiny_kd30_unet():
    from diffusers import Kandinsky3UNet

    from kubin.models.tiny import tiny_model_folder

    return Kandinsky3UNet.from_pretrained(tiny_model_folder("tiny-kd30") / "pipeline" / "unet")


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    """Two adapters of the tiny 3.0 UNet (attention; attention and feed-forward) and a 2.2 decoder one."""
    folder = tmp_path_factory.mktemp("lora3")
    save_injected_lora(tiny_kd30_unet(), folder / "oil.safetensors", ATTENTION, 1)
    save_injected_lora(tiny_kd30_unet(), folder / "neon.safetensors", [*ATTENTION, "feed_forward.0"], 2)
    kd22_decoder_lora(folder / "ink.safetensors")
    return folder


@pytest.fixture(scope="module")
def kd3_engine(fresh_manager, lora_folder, tmp_path_factory):
    engine = Engine(fresh_manager, tmp_path_factory.mktemp("out3"), loras=LoraLibrary(lora_folder))
    yield engine
    engine.close(wait=True)


def run(engine, model="tiny-kd30", **values):
    return engine.run(Job("t2i", model, {**KD3, **values})).results[0]


def test_a_kandinsky_3_unet_file_is_recognised_for_3_0_and_3_1(lora_folder):
    found = {f.name: f for f in LoraLibrary(lora_folder).list()}
    assert (found["oil"].family, found["oil"].part, found["oil"].also, found["oil"].rank) == (
        "kd30", "unet", ("kd31",), 4
    )  # fmt: skip
    assert (found["neon"].family, found["neon"].part) == ("kd30", "unet")
    assert (found["ink"].family, found["ink"].part) == ("kd22", "decoder")  # not taken for a 3.x UNet one


def test_the_kandinsky_3_unet_takes_adapters_by_weight_and_without_them_gives_a_fresh_models_pixels(
    kd3_engine, tmp_path
):
    from kubin.models.manager import ModelManager

    base = run(kd3_engine)
    changes = [diff(base, run(kd3_engine, loras=[f"oil:{w}"])) for w in (0.5, 1.0)]
    zero = run(kd3_engine, loras=["oil:0"])
    both = run(kd3_engine, loras=["oil", "neon:0.5"])
    after = run(kd3_engine)
    assert 1 < changes[0] < changes[1]
    assert diff(base, zero) == 0 and diff(base, after) == 0
    assert diff(base, both) > 1
    saved = read_image_metadata(both.path)
    assert [(lora["name"], lora["weight"]) for lora in saved["loras"]] == [("oil", 1), ("neon", 0.5)]
    assert saved["params"]["loras"] == ["oil:1", "neon:0.5"]
    manager = ModelManager(device="cpu", dtype="fp32")
    fresh_engine = Engine(manager, tmp_path)
    try:
        fresh = run(fresh_engine)
    finally:
        fresh_engine.close(wait=True)
        manager.unload()
    assert diff(fresh, after) == 0


def test_a_2_2_file_is_refused_on_3_0_and_a_3_0_file_on_2_2(kd3_engine):
    with pytest.raises(InvalidParams) as refused:
        kd3_engine.submit(Job("t2i", "tiny-kd30", {**KD3, "loras": ["ink"]}))
    assert str(refused.value).startswith("The LoRA ink.safetensors fits the decoder UNet of family kd22")
    assert str(refused.value).endswith("(family kd30) needs a LoRA for its UNet.")
    with pytest.raises(
        InvalidParams, match=r"The LoRA oil.safetensors fits the UNet of family kd30 \(or kd31"
    ):
        kd3_engine.submit(Job("t2i", "tiny-kd22", {**KD3, "prior_steps": 2, "loras": ["oil"]}))
    assert run(kd3_engine).path.is_file()  # the engine goes on


def test_kandinsky_3_1_takes_a_file_of_its_size_refuses_another_size_and_its_inpainting_takes_none(
    kd3_engine, fresh_manager, lora_folder, photo
):
    from diffusers import Kandinsky3UNet

    base = run(kd3_engine, model="tiny-kd31")
    unet = Kandinsky3UNet.from_config(fresh_manager.get("tiny-kd31").pipe.unet.config)  # tiny 3.1's sizes
    save_injected_lora(unet, lora_folder / "oil31.safetensors", ATTENTION, 3)
    styled = run(kd3_engine, model="tiny-kd31", loras=["oil31"])
    assert diff(base, styled) > 1 and diff(base, run(kd3_engine, model="tiny-kd31")) == 0
    with pytest.raises(
        InvalidParams, match=r"The LoRA oil.safetensors does not fit this model's UNet \(.*size"
    ):
        run(kd3_engine, model="tiny-kd31", loras=["oil"])  # tiny 3.0's sizes
    assert diff(base, run(kd3_engine, model="tiny-kd31")) == 0  # the model is as it was
    inpaint = {"prompt": "a red cat", "steps": 2, "seed": 7, "init_image": photo, "mask": photo}
    with pytest.raises(InvalidParams, match="the inpainting UNet takes none"):
        kd3_engine.run(Job("inpaint", "tiny-kd31", {**inpaint, "loras": ["oil31"]}))
