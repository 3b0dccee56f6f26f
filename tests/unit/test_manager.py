"""The ModelManager keeps one model loaded and lets go of the previous one when the user switches."""

import gc
import weakref

import pytest

from kubin.errors import UnsupportedTask, WeightsMissing
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


# One model of each family; their weights are not here (the Hub is offline and its cache empty).
ONE_PER_FAMILY = ["kd20", "kd21", "kd22", "kd30", "kd31-flash", "kd40", "kd50-t2i-lite-sft", "shap-e"]


def refused_while_tiny_stays_loaded(manager: ModelManager, model_id: str) -> WeightsMissing:
    """Ask for `model_id` with tiny-kd22 loaded: it must fail, and tiny-kd22 stay loaded as it was."""
    tiny = manager.get("tiny-kd22", "t2i")
    manager.take_load_notices()
    prior, decoder = tiny.prior, tiny.decoder

    with pytest.raises(WeightsMissing) as missing:
        manager.get(model_id, manager.spec(model_id).tasks[0])

    assert manager.loaded_id == "tiny-kd22", "the model in use is still loaded"
    assert manager.get("tiny-kd22", "t2i") is tiny and tiny.prior is prior and tiny.decoder is decoder
    assert manager.take_load_notices() is None, "and the next job loads nothing"
    assert model_id in str(missing.value) and "\n" not in str(missing.value)
    return missing.value


@pytest.mark.parametrize("model_id", ONE_PER_FAMILY)
def test_a_model_whose_weights_are_not_here_is_refused_and_the_model_in_use_stays_loaded(
    model_manager, model_id
):
    refused_while_tiny_stays_loaded(model_manager, model_id)


def test_a_configured_folder_that_is_missing_or_incomplete_is_refused_the_same_way(tmp_path):
    incomplete = tmp_path / "pipeline"  # copied without its vae/
    incomplete.mkdir()
    (incomplete / "model_index.json").write_text(
        '{"_class_name": "X", "vae": ["diffusers", "AutoencoderKL"]}'
    )
    sources = {
        "kd22": {"prior": str(tmp_path / "nowhere")},
        "kd50-t2i-lite-sft": {"pipeline": str(incomplete)},
    }
    manager = ModelManager(device="cpu", dtype="fp32", sources=sources)

    assert "no model_index.json" in str(refused_while_tiny_stays_loaded(manager, "kd22"))
    assert "lacks vae/" in str(refused_while_tiny_stays_loaded(manager, "kd50-t2i-lite-sft"))
    manager.unload()
