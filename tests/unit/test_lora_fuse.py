"""Fused LoRA (`lora.fuse`, --fuse-lora): the job's adapters merged into the weights give the pixels of the
unfused adapters; a change of weights merges again; a job without them gives a fresh model's exact pixels
(the model's own weights are put back, not unmerged). On tiny-kd22 (diffusers' loader) and tiny-kd30 (peft
injection)."""

import pytest
from lora_helpers import ATTENTION, diff, kd22_decoder_lora, save_injected_lora

from kubin.engine import Engine, Job
from kubin.models.lora import LoraLibrary

BASE = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2, "seed": 7}


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    from diffusers import Kandinsky3UNet

    from kubin.models.tiny import tiny_model_folder

    folder = tmp_path_factory.mktemp("lora-fuse")
    kd22_decoder_lora(folder / "ink.safetensors")
    unet = Kandinsky3UNet.from_pretrained(tiny_model_folder("tiny-kd30") / "pipeline" / "unet")
    save_injected_lora(unet, folder / "oil.safetensors", ATTENTION, 1)
    return folder


@pytest.mark.parametrize(("model", "lora"), [("tiny-kd22", "ink"), ("tiny-kd30", "oil")])
def test_fused_adapters_give_the_unfused_pixels_and_a_job_without_them_a_fresh_models(
    lora_folder, tmp_path, model, lora
):
    from kubin.models.manager import ModelManager

    results = {}
    for fuse in (False, True):
        manager = ModelManager(device="cpu", dtype="fp32")
        engine = Engine(manager, tmp_path / str(fuse), loras=LoraLibrary(lora_folder, fuse=fuse))

        def run(engine=engine, **more):
            return engine.run(Job("t2i", model, {**BASE, **more})).results[0]

        try:
            results[fuse] = [run(), run(loras=[f"{lora}:1"]), run(loras=[f"{lora}:1"]), run(loras=[f"{lora}:0.5"]),
                             run(loras=[f"{lora}:0"]), run()]  # fmt: skip
        finally:
            engine.close(wait=True)
            manager.unload()
    fresh, full, again, half, zero, after = results[True]
    unfused = results[False]
    assert diff(fresh, full) > 1 and diff(full, again) == 0
    assert diff(full, unfused[1]) < 0.5 and diff(half, unfused[3]) < 0.5  # merged: the same up to rounding
    assert diff(half, full) > 1
    assert diff(zero, fresh) == 0 and diff(after, fresh) == 0 and diff(after, unfused[0]) == 0


@pytest.mark.parametrize("quantize", ["torchao-int8", "quanto-int8"])
def test_a_quantised_model_runs_its_adapters_unfused_and_says_so(lora_folder, tmp_path, quantize):
    """Merged into quantised weights the adapter failed the job (torchao) or was silently lost (quanto)."""
    from kubin.models.manager import ModelManager
    from kubin.runtime.memory import MemoryOptions

    manager = ModelManager(device="cpu", dtype="fp32", memory=MemoryOptions(quantize=quantize))
    engine = Engine(manager, tmp_path, loras=LoraLibrary(lora_folder, fuse=True))
    try:
        plain = engine.run(Job("t2i", "tiny-kd22", BASE))
        inked = engine.run(Job("t2i", "tiny-kd22", {**BASE, "loras": ["ink:1"]}))
        again = engine.run(Job("t2i", "tiny-kd22", {**BASE, "loras": ["ink:1"]}))
        plain_again = engine.run(Job("t2i", "tiny-kd22", BASE))
    finally:
        engine.close(wait=True)
        manager.unload()

    assert inked.state == "done", inked.error
    assert diff(inked.results[0], plain.results[0]) > 1  # the adapter is applied
    assert diff(again.results[0], inked.results[0]) == 0
    assert diff(plain_again.results[0], plain.results[0]) == 0  # switched off again: the model's own pixels
    said = [n for n in inked.notices if n.startswith("LoRA: the decoder is quantised")]
    assert said and "run unfused" in said[0]
    assert not [n for n in again.notices if n.startswith("LoRA:")]  # said once
