"""Kandinsky 2.2 with a negative prompt and several images per call: the prior then runs a doubled
batch, which once broke every batch above one image."""

import numpy as np
import pytest
from PIL import Image

from kubin.engine import DONE, Job

SMALL = {"steps": 2, "prior_steps": 2, "seed": 9, "batch_size": 2, "negative_prompt": "blurry, low quality"}


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "picture.png"
    Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype("uint8")).save(path)
    return str(path)


@pytest.mark.parametrize("task", ["t2i", "i2i", "inpaint", "mix"])
def test_a_negative_prompt_with_batch_size_two_gives_two_images(engine, picture, tmp_path, task):
    mask = tmp_path / "mask.png"
    Image.new("L", (64, 64), 255).save(mask)
    extra = {
        "t2i": {"prompt": "a red cat", "width": 64, "height": 64},
        "i2i": {"prompt": "a red cat", "init_image": picture},
        "inpaint": {"prompt": "a red cat", "init_image": picture, "mask": str(mask)},
        "mix": {"images": [picture], "prompts": ["a red cat"], "weights": [1, 1], "width": 64, "height": 64},
    }[task]

    handle = engine.run(Job(task, "tiny-kd22", {**SMALL, **extra}))

    assert handle.state == DONE
    assert [r.seed for r in handle.results] == [9, 10]
    assert handle.results[0].meta["params"]["negative_prompt"] == "blurry, low quality"


@pytest.mark.parametrize("model", ["tiny-kd22", "tiny-kd21"])
def test_a_negative_prior_prompt_steers_the_prior_apart_from_the_negative_prompt(engine, model):
    base = {**SMALL, "prompt": "a red cat", "width": 64, "height": 64, "negative_prompt": "blurry"}
    same = engine.run(Job("t2i", model, base))
    separate = engine.run(Job("t2i", model, {**base, "negative_prior_prompt": "dark"}))
    explicit_same = engine.run(Job("t2i", model, {**base, "negative_prior_prompt": "blurry"}))

    assert separate.state == DONE and len(separate.results) == 2
    assert separate.results[0].meta["params"]["negative_prior_prompt"] == "dark"
    assert np.abs(pixels(separate) - pixels(same)).max() > 0
    assert np.array_equal(pixels(explicit_same), pixels(same))  # empty means "the negative prompt"


def test_mix_takes_a_negative_prior_prompt(engine, picture):
    job = {
        **SMALL,
        "images": [picture],
        "prompts": ["a red cat"],
        "weights": [1, 1],
        "width": 64,
        "height": 64,
    }
    plain = engine.run(Job("mix", "tiny-kd22", job))
    steered = engine.run(Job("mix", "tiny-kd22", {**job, "negative_prior_prompt": "dark"}))

    assert np.abs(pixels(steered) - pixels(plain)).max() > 0


def pixels(handle):
    return np.asarray(Image.open(handle.results[0].path), dtype=int)
