"""The model registry: which models exist, what they can do, and local model folders as model ids."""

import json

import pytest

from kubin.errors import UnknownModel
from kubin.models.registry import list_models, resolve_model


def test_the_registry_lists_kd22_and_its_tiny_twin():
    models = {spec.id: spec for spec in list_models()}

    assert {"kd22", "tiny-kd22"} <= set(models)
    for model_id in ("kd22", "tiny-kd22"):
        assert models[model_id].family == "kd22"
        assert list(models[model_id].tasks) == ["t2i", "i2i", "mix", "inpaint", "outpaint"]
        assert not models[model_id].supports("t2v")
    assert models["tiny-kd22"].tiny and not models["kd22"].tiny


def test_kd22_weights_come_from_the_kandinsky_community_repos():
    spec = resolve_model("kd22")

    assert spec.sources == {
        "prior": "kandinsky-community/kandinsky-2-2-prior",
        "decoder": "kandinsky-community/kandinsky-2-2-decoder",
        "decoder_inpaint": "kandinsky-community/kandinsky-2-2-decoder-inpaint",
        "decoder_controlnet": "kandinsky-community/kandinsky-2-2-controlnet-depth",
    }
    assert spec.defaults["t2i"]["width"] == 768
    assert "width" not in spec.defaults["inpaint"]  # inpainting keeps the image's own size


def test_config_can_point_one_component_at_a_local_folder():
    spec = resolve_model("kd22", {"kd22": {"prior": "/models/prior", "decoder": ""}})

    assert spec.sources["prior"] == "/models/prior"
    assert spec.sources["decoder"] == "kandinsky-community/kandinsky-2-2-decoder"


def test_an_unknown_id_is_an_error_naming_the_known_ids():
    with pytest.raises(UnknownModel) as caught:
        resolve_model("kd99")

    message = str(caught.value)
    assert "Unknown model 'kd99'" in message
    assert "kd22" in message and "tiny-kd22" in message
    assert "model folder" in message


def test_a_folder_saved_by_the_manager_is_a_kd22_model(saved_tiny_folder):
    spec = resolve_model(str(saved_tiny_folder))

    assert spec.family == "kd22"
    assert spec.supports("t2i")
    assert spec.id == str(saved_tiny_folder.resolve())
    assert spec.sources == {
        "prior": str(saved_tiny_folder / "prior"),
        "decoder": str(saved_tiny_folder / "decoder"),
        "decoder_inpaint": str(saved_tiny_folder / "decoder_inpaint"),
        "decoder_controlnet": str(saved_tiny_folder / "decoder_controlnet"),
    }
    assert not spec.tiny  # loaded from the folder, not rebuilt in code


def test_a_saved_folder_keeps_the_defaults_of_the_model_it_came_from(saved_tiny_folder):
    assert resolve_model(str(saved_tiny_folder)).defaults == resolve_model("tiny-kd22").defaults


def test_a_diffusers_folder_from_elsewhere_gets_the_family_defaults(saved_tiny_folder, tmp_path):
    folder = tmp_path / "from-elsewhere"
    (folder / "decoder").mkdir(parents=True)
    (folder / "prior").mkdir()
    (folder / "decoder" / "model_index.json").write_text(
        (saved_tiny_folder / "decoder" / "model_index.json").read_text()
    )

    assert resolve_model(str(folder)).defaults == resolve_model("kd22").defaults


def test_a_folder_without_prior_and_decoder_is_a_clear_error(tmp_path):
    (tmp_path / "unet").mkdir()

    with pytest.raises(UnknownModel) as caught:
        resolve_model(str(tmp_path))

    message = str(caught.value)
    assert str(tmp_path) in message
    assert "prior/ and decoder/" in message
    assert "python -m kubin save" in message


def test_a_folder_of_another_pipeline_is_refused_by_name(tmp_path):
    (tmp_path / "decoder").mkdir()
    (tmp_path / "decoder" / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline"})
    )

    with pytest.raises(UnknownModel, match="holds a StableDiffusionPipeline, which Kubin cannot load yet"):
        resolve_model(str(tmp_path))
