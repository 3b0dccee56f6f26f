"""Depth for ControlNet: a photo as the hint becomes a depth map made by the depth model (a tool model run by
the engine), which steers the decoder exactly as uploading that map would."""

import shutil

import numpy as np
import pytest
from cli_helpers import printed, run_in_process
from PIL import Image

from kubin.engine import DONE, Job
from kubin.errors import WeightsMissing
from kubin.params import Text2ImageParams
from kubin.tasks import prepare
from kubin.tools.depth import estimate_depth, load_depth
from kubin.tools.models import ToolModels
from kubin.tools.weights import tool_folder

SMALL = {"prompt": "a red cat", "steps": 2, "prior_steps": 2, "seed": 4, "width": 64, "height": 64}


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 72, 3)) * 255).astype(np.uint8)).save(path)  # 72x40, in colour
    return str(path)


@pytest.fixture
def depth_engine(engine):
    engine.tool_models = ToolModels(depth="tiny-depth")
    return engine


def pixels(path):
    return np.asarray(Image.open(path), dtype=int)


def test_a_photo_hint_becomes_a_depth_map_that_steers_like_uploading_that_map(depth_engine, photo):
    estimated = depth_engine.run(Job("t2i", "tiny-kd22", {**SMALL, "hint_image": photo}))

    assert estimated.state == DONE
    result = estimated.results[0]
    depth = Image.open(result.depth_map)
    assert depth.mode == "L" and depth.size == (72, 40)  # one channel, the hint's size
    assert result.as_json()["depth_map"] == str(result.depth_map)
    assert result.meta["depth_model"] == "tiny-depth" and set(result.meta["inputs"]) == {
        "hint_image",
        "hint_photo",
    }
    assert any("tiny-depth estimated its depth map" in n for n in estimated.notices)

    uploaded = depth_engine.run(Job("t2i", "tiny-kd22", {**SMALL, "hint_image": str(result.depth_map)}))

    assert uploaded.results[0].depth_map is None  # a grey map is used as it is
    assert np.array_equal(pixels(uploaded.results[0].path), pixels(result.path))


@pytest.mark.parametrize(
    ("mode", "grey", "estimated"),
    [("auto", False, True), ("auto", True, False), ("never", False, False), ("always", True, True)],
)
def test_auto_estimates_only_a_hint_that_is_not_a_depth_map_yet(tmp_path, photo, mode, grey, estimated):
    hint = photo
    if grey:
        hint = str(tmp_path / "grey.png")
        Image.open(photo).convert("L").convert("RGB").save(hint)
    prepared = prepare(Text2ImageParams(**SMALL, hint_image=hint, estimate_depth=mode))

    assert (prepared.depth_from is not None) is estimated


def test_a_depth_job_waits_for_the_running_generation(depth_engine):
    from kubin.tools.jobs import estimate_depth as queued_estimate

    generation = depth_engine.submit(Job("t2i", "tiny-kd22", {**SMALL, "steps": 12}))
    depth = queued_estimate(depth_engine, Image.new("RGB", (30, 20), (200, 30, 30)))

    assert generation.finished and generation.state == DONE  # the tool job ran after it, not beside it
    assert depth.mode == "L" and depth.size == (30, 20)


def test_saved_depth_models_load_back_offline_through_the_same_loader(tmp_path):
    """Depth Anything (the tiny one's folder) and DPT (DPT-hybrid's class) load from a folder as real ids do."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    anything = tmp_path / "depth-anything"
    shutil.copytree(tool_folder("tiny-depth", "depth model", ""), anything)
    dpt = tmp_path / "dpt"
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, image_size=32,
                       patch_size=8, neck_hidden_sizes=[8, 16, 16, 32], fusion_hidden_size=16, head_hidden_size=8,
                       backbone_out_indices=[0, 1, 2, 3])  # fmt: skip
    DPTForDepthEstimation(config).eval().save_pretrained(dpt)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(dpt)
    photo = Image.new("RGB", (50, 30), (10, 120, 240))

    for folder in (anything, dpt):
        depth = estimate_depth(load_depth(str(folder)), photo)
        assert depth.mode == "L" and depth.size == (50, 30)


def test_a_missing_depth_model_offline_names_it_and_kubin_download():
    with pytest.raises(WeightsMissing) as caught:
        load_depth("depth-anything/Depth-Anything-V2-Small-hf")

    said = str(caught.value)
    assert "depth-anything/Depth-Anything-V2-Small-hf" in said
    assert "kubin download depth-anything/Depth-Anything-V2-Small-hf" in said


def test_the_cli_estimates_depth_from_a_hint_photo(tmp_path, photo):
    (tmp_path / "user.yaml").write_text("")
    done = run_in_process(tmp_path, [
        "generate", "--config", str(tmp_path / "user.yaml"), "--model", "tiny-kd22", "--prompt", "a red cat",
        "--width", "64", "--height", "64", "--steps", "2", "--prior-steps", "2", "--seed", "1",
        "--hint-image", photo, "--estimate-depth", "--depth-model", "tiny-depth", "--output-dir", str(tmp_path / "out"),
    ])  # fmt: skip

    assert done.returncode == 0, done.stderr
    out = printed(done.stdout)[0]
    assert out["depth_model"] == "tiny-depth"
    assert Image.open(out["depth_map"]).size == (72, 40)
    assert "notice: The ControlNet hint was a photo: tiny-depth estimated its depth map" in done.stderr


def test_kubin_download_knows_the_tool_models(tmp_path):
    (tmp_path / "user.yaml").write_text("")
    config = ["--config", str(tmp_path / "user.yaml")]

    tiny = run_in_process(tmp_path, [*config, "download", "tiny-depth"])
    real = run_in_process(tmp_path, [*config, "download", "Intel/dpt-hybrid-midas"])

    assert tiny.returncode == 0 and "tiny-depth is built in code and needs no download" in tiny.stdout
    assert real.returncode == 2  # offline in the tests: the one sentence, not a registry error
    assert "error: The tool model Intel/dpt-hybrid-midas is not in the Hugging Face cache" in real.stderr
