"""ControlNet (depth) for Kandinsky 2.2: a hint image steers text to image and image to image."""

import numpy as np
import pytest
from cli_helpers import kubin_generate
from PIL import Image

from kubin.engine import DONE, Job
from kubin.errors import InvalidParams
from kubin.models.registry import resolve_model

SMALL = {"prompt": "a red cat", "steps": 2, "prior_steps": 2, "seed": 4}


@pytest.fixture
def depth_map(tmp_path):
    path = tmp_path / "depth.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (32, 1))).save(path)  # 96x32, grey
    return str(path)


def pixels(result):
    return np.asarray(Image.open(result.path), dtype=int)


@pytest.mark.parametrize("task", ["t2i", "i2i"])
def test_a_hint_image_goes_through_the_controlnet_decoder(engine, depth_map, tmp_path, task):
    extra = {"width": 64, "height": 64}
    if task == "i2i":
        init = tmp_path / "init.png"
        Image.new("RGB", (64, 64), (200, 40, 40)).save(init)
        extra = {"init_image": str(init), "strength": 0.8, "steps": 4}
    plain = engine.run(Job(task, "tiny-kd22", {**SMALL, **extra}))
    hinted = engine.run(Job(task, "tiny-kd22", {**SMALL, **extra, "hint_image": depth_map, "batch_size": 2}))

    assert hinted.state == DONE and len(hinted.results) == 2
    assert (hinted.results[0].width, hinted.results[0].height) == (64, 64)
    assert np.abs(pixels(hinted.results[0]) - pixels(plain.results[0])).max() > 0  # a different decoder ran
    assert "The ControlNet hint was 96x32; it was resized to 64x64 to match the output." in hinted.notices
    assert hinted.results[0].meta["inputs"]["hint_image"].startswith("inputs/")


def test_the_same_hint_and_seed_give_the_same_pixels(engine, depth_map):
    job = {**SMALL, "width": 64, "height": 64, "hint_image": depth_map}
    first = engine.run(Job("t2i", "tiny-kd22", job))
    second = engine.run(Job("t2i", "tiny-kd22", job))

    assert np.array_equal(pixels(first.results[0]), pixels(second.results[0]))


def test_a_model_without_controlnet_refuses_a_hint_before_queueing(engine, depth_map):
    with pytest.raises(InvalidParams, match="has no ControlNet, so it cannot use a hint image"):
        engine.submit(Job("t2i", "tiny-kd21", {**SMALL, "hint_image": depth_map}))


def test_a_saved_folder_has_controlnet_only_with_its_decoder(saved_tiny_folder):
    assert (saved_tiny_folder / "decoder_controlnet").is_dir()
    assert "controlnet" in resolve_model(str(saved_tiny_folder)).features


def test_a_missing_hint_file_is_a_clear_error(engine, tmp_path):
    with pytest.raises(InvalidParams, match="ControlNet hint 'nope.png' does not exist"):
        engine.submit(Job("t2i", "tiny-kd22", {**SMALL, "hint_image": str(tmp_path / "nope.png")}))


@pytest.mark.slow  # a `kubin generate` process with a ControlNet: 20-30 s
def test_the_cli_takes_a_hint_image_and_reports_its_resize(tmp_path, depth_map):
    import json

    done = kubin_generate(
        tmp_path, "--model", "tiny-kd22", "--prompt", "a red cat", "--width", "64", "--height", "64", "--steps",
        "2", "--prior-steps", "2", "--seed", "1", "--hint-image", depth_map, "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["seed"] == 1
    assert (
        "notice: The ControlNet hint was 96x32; it was resized to 64x64 to match the output." in done.stderr
    )
