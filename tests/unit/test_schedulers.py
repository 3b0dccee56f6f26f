"""Schedulers: every name Kubin offers for Kandinsky 2.2 paints a real image; names that would break are not offered."""

import numpy as np
import pytest
from PIL import Image

from kubin.engine import Job
from kubin.errors import InvalidParams
from kubin.models.registry import resolve_model
from kubin.models.schedulers import SCHEDULERS

SMALL = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2, "seed": 42}


@pytest.fixture(scope="module")
def offered(model_manager) -> list[str]:
    return model_manager.get("tiny-kd22").schedulers("t2i")


def test_the_model_offers_its_own_scheduler_first(offered):
    assert offered[0] == "DDPM"
    assert len(offered) == len(set(offered)) > 1


def test_the_registry_offers_the_same_schedulers_as_the_loaded_model(offered):
    # The UI builds its scheduler list from the registry before any model is loaded.
    assert list(resolve_model("tiny-kd22").schedulers) == offered
    assert list(resolve_model("kd22").schedulers) == offered


def test_schedulers_that_need_scale_model_input_are_not_offered(offered):
    needs_scaling = [name for name, (_, _, scales) in SCHEDULERS.items() if scales]

    assert {"Euler", "Euler a", "Heun"} <= set(needs_scaling)
    assert not set(needs_scaling) & set(offered)


def test_every_offered_scheduler_paints_a_64x64_image(engine, offered):
    for name in offered:
        handle = engine.run(Job("t2i", "tiny-kd22", {**SMALL, "scheduler": name}))

        assert handle.state == "done", name
        [result] = handle.results
        assert result.meta["scheduler"] == name
        with Image.open(result.path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=float)
        assert pixels.shape == (64, 64, 3), name
        assert pixels.std() > 1.0, f"{name} gave a flat image"  # NaN latents come out as one flat colour


def test_an_empty_scheduler_uses_the_models_own(engine):
    handle = engine.run(Job("t2i", "tiny-kd22", {**SMALL, "scheduler": ""}))

    assert handle.results[0].meta["scheduler"] == "DDPM"


def test_an_unknown_scheduler_is_refused_at_submit_with_the_choices(engine, offered):
    with pytest.raises(InvalidParams) as caught:
        engine.submit(Job("t2i", "tiny-kd22", {**SMALL, "scheduler": "Karras Magic"}))

    assert "Scheduler 'Karras Magic' is not available" in str(caught.value)
    assert ", ".join(offered) in str(caught.value)


def test_a_scheduler_that_needs_input_scaling_is_refused(engine):
    with pytest.raises(InvalidParams, match="Scheduler 'Euler a' is not available"):
        engine.run(Job("t2i", "tiny-kd22", {**SMALL, "scheduler": "Euler a"}))
