"""Weights: a model whose weights are absent while offline fails fast with one sentence saying how to get them."""

import os
import time
from pathlib import Path

import pytest

from kubin.engine import Job
from kubin.errors import WeightsMissing
from kubin.models.weights import ensure_weights


def test_kd22_without_weights_offline_names_the_repo_and_the_download_command(engine, monkeypatch):
    # conftest points HF_HOME at an empty folder for the whole run; offline is set here again to be explicit.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not list(Path(os.environ["HF_HOME"]).rglob("*kandinsky*"))
    started = time.monotonic()

    with pytest.raises(WeightsMissing) as caught:
        engine.run(Job("t2i", "kd22", {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2}))

    assert time.monotonic() - started < 15  # no network wait, no hang
    message = str(caught.value)
    assert "kandinsky-community/kandinsky-2-2-prior" in message
    assert "python -m kubin download kd22" in message
    assert "HF_HUB_OFFLINE" in message


def test_the_engine_still_works_after_a_model_failed_to_load(engine, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMissing):
        engine.run(Job("t2i", "kd22", {"prompt": "a red cat"}))

    handle = engine.run(Job("t2i", "tiny-kd22", {"prompt": "a red cat", "steps": 2, "seed": 1}))

    assert handle.state == "done"
    assert handle.results[0].path.is_file()
    assert engine.manager.loaded_id == "tiny-kd22"


def test_a_local_folder_without_a_pipeline_is_named_in_the_error(tmp_path):
    with pytest.raises(
        WeightsMissing, match=r"the folder .* does not hold a diffusers pipeline \(no model_index.json\)"
    ):
        ensure_weights(str(tmp_path), "my-model")


def test_a_local_pipeline_folder_is_used_as_it_is(saved_tiny_folder):
    assert ensure_weights(str(saved_tiny_folder / "prior"), "tiny") == str(saved_tiny_folder / "prior")
