"""The ModelManager keeps one model loaded and lets go of the previous one when the user switches."""

import gc
import weakref

import pytest

from kubin.errors import UnsupportedTask
from kubin.models.manager import ModelManager


def test_switching_models_unloads_the_previous_one(saved_tiny_folder):
    manager = ModelManager(device="cpu", dtype="fp32")
    tiny = manager.get("tiny-kd22", "t2i")
    old_prior = weakref.ref(tiny.prior)
    old_decoder = weakref.ref(tiny.decoder)
    assert manager.loaded_id == "tiny-kd22"
    assert manager.get("tiny-kd22") is tiny  # asking again reuses the loaded model

    folder_model = manager.get(str(saved_tiny_folder))
    gc.collect()

    assert manager.loaded_id == str(saved_tiny_folder.resolve())
    assert folder_model is not tiny
    assert tiny.prior is None and tiny.decoder is None
    assert old_prior() is None and old_decoder() is None  # the memory is really free
    manager.unload()
    assert manager.loaded_id is None


def test_a_task_the_model_cannot_do_is_refused_before_loading(t2i_only_model):
    manager = ModelManager(device="cpu", dtype="fp32")

    with pytest.raises(UnsupportedTask, match="cannot do i2i"):
        manager.get(t2i_only_model, "i2i")

    assert manager.loaded_id is None


def test_the_manager_places_models_on_the_cpu_in_fp32():
    model = ModelManager(device="cpu", dtype="auto").get("tiny-kd22")

    assert (model.placement.device, model.placement.dtype) == ("cpu", "fp32")
    assert next(model.decoder.unet.parameters()).device.type == "cpu"
