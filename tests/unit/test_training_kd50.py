"""Training a LoRA for Kandinsky 5's text-to-image transformer on the CPU (tiny-kd50-t2i): the loss falls on 8
generated pictures, the adapter is what the LoRA loader takes for the transformer and changes the pixels
(text-to-video training on clips is in test_training_video.py)."""

import numpy as np
import pytest
from PIL import Image
from training_helpers import make_pictures

from kubin.engine import Engine, Job
from kubin.models.lora import LoraLibrary
from kubin.training.runs import Trainings

KD50 = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "seed": 7}
FAST = {"model": "tiny-kd50-t2i", "rank": 4, "learning_rate": 3e-2, "batch_size": 2, "seed": 1,
        "target_modules": ["to_query", "to_key", "to_value", "attention.out_layer", "feed_forward.in_layer",
                           "feed_forward.out_layer"]}  # fmt: skip


@pytest.fixture(scope="module")
def studio(fresh_manager, tmp_path_factory):
    root = tmp_path_factory.mktemp("studio50")
    engine = Engine(fresh_manager, root / "output", loras=LoraLibrary(root / "lora"))
    engine.trainings = Trainings(engine, root / "training")
    yield engine
    engine.close(wait=True)


def pixels(result) -> np.ndarray:
    with Image.open(result.path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def test_the_transformer_learns_and_its_adapter_changes_the_pixels(studio, tmp_path):
    pictures = make_pictures(tmp_path / "pictures")
    run = studio.trainings.start({**FAST, "data": str(pictures), "output": "k5squares", "steps": 40,
                                  "checkpoint_every": 40, "trigger": "k5sq"})  # fmt: skip
    assert run.wait(600) and run.state == "done", run.error
    losses = [loss for _, loss in run.losses]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    found = {f.name: f for f in studio.loras.list()}["k5squares"]
    assert (found.family, found.part, found.rank, found.triggers) == ("kd50", "transformer", 4, ("k5sq",))
    base = studio.run(Job("t2i", "tiny-kd50-t2i", KD50)).results[0]
    tuned = studio.run(Job("t2i", "tiny-kd50-t2i", {**KD50, "loras": ["k5squares"]})).results[0]
    assert np.abs(pixels(base) - pixels(tuned)).mean() > 1
