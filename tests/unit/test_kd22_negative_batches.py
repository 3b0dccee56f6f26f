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


def test_the_negative_prompt_changes_the_image(engine):
    plain = engine.run(Job("t2i", "tiny-kd22", {**SMALL, "prompt": "a red cat", "negative_prompt": ""}))
    negative = engine.run(Job("t2i", "tiny-kd22", {**SMALL, "prompt": "a red cat"}))

    a = np.asarray(Image.open(plain.results[0].path), dtype=int)
    b = np.asarray(Image.open(negative.results[0].path), dtype=int)
    assert np.abs(a - b).max() > 0
