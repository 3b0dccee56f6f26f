"""Kandinsky 2.1 on tiny-kd21, through the engine and the command line, as a user runs it.

Every image task gives the images asked for; a seed gives the same pixels again, also from a saved model
folder; inpainting keeps what lies outside the mask; every offered scheduler paints; progress counts the
steps that are reported, and cancel stops a job within a step, in the prior as in the decoder.
"""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import kubin_generate
from job_helpers import CancelAtStep
from PIL import Image

from kubin.engine import CANCELLED, DONE, Job
from kubin.models.registry import resolve_model
from kubin.outputs import read_image_metadata

MODEL = "tiny-kd21"
SMALL = {"steps": 2, "prior_steps": 2, "seed": 1}
BOX = (30, 20, 60, 40)  # the repainted rectangle of the test mask: left, top, right, bottom


@pytest.fixture(scope="module")
def manager(fresh_manager):
    """This module's model in a manager of its own, so the session's tiny-kd22 stays loaded."""
    return fresh_manager


@pytest.fixture(scope="module")
def saved_folder(manager, tmp_path_factory) -> Path:
    return manager.save(MODEL, tmp_path_factory.mktemp("saved") / MODEL)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> SimpleNamespace:
    """A 100x70 photo (no side a multiple of 64) and a mask for it."""
    folder = tmp_path_factory.mktemp("pictures")
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (70, 100, 3), dtype=np.uint8))
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, BOX)
    photo.save(folder / "photo.png")
    mask.save(folder / "mask.png")
    return SimpleNamespace(photo=str(folder / "photo.png"), mask=str(folder / "mask.png"))


def job(task: str, model: str = MODEL, **values) -> Job:
    prompt = {} if task == "mix" else {"prompt": "a red cat"}  # mix takes a list of prompts instead
    return Job(task, model, {**prompt, **SMALL, **values})


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


TASKS = {  # values for one small job of each task, and the output size they give
    "t2i": ({"width": 128, "height": 64}, (128, 64)),
    "i2i": ({"init_image": "photo", "strength": 0.5, "steps": 4}, (128, 64)),  # 100x70 snaps to 128x64
    "mix": (
        {"images": ["photo"], "prompts": ["a dog"], "weights": [0.5, 0.5], "width": 64, "height": 128},
        (64, 128),
    ),
    "inpaint": ({"init_image": "photo", "mask": "mask", "mask_blur": 0}, (100, 70)),  # back at its own size
    "outpaint": ({"init_image": "photo", "expand": [28, 0, 0, 0]}, (128, 70)),
}


def values_for(task: str, pictures) -> dict:
    def path(value):
        return getattr(pictures, value) if value in ("photo", "mask") else value

    values = TASKS[task][0]
    return {
        k: [path(v) for v in value] if isinstance(value, list) else path(value) for k, value in values.items()
    }


def test_the_registry_knows_kd21_its_repos_and_its_tiny_twin():
    real, tiny = resolve_model("kd21"), resolve_model(MODEL)

    assert (real.family, real.implementation, real.module) == (
        "kd21",
        "diffusers",
        "kubin.models.families.kd21.model",
    )
    assert real.sources == {
        "prior": "kandinsky-community/kandinsky-2-1-prior",
        "decoder": "kandinsky-community/kandinsky-2-1",
        "decoder_inpaint": "kandinsky-community/kandinsky-2-1-inpaint",
    }
    assert list(real.tasks) == list(tiny.tasks) == ["t2i", "i2i", "mix", "inpaint", "outpaint"]
    assert real.defaults["t2i"] == {
        "width": 768, "height": 768, "steps": 100, "guidance_scale": 4.0, "prior_steps": 25, "prior_guidance_scale": 4.0,
    }  # fmt: skip
    assert "width" not in real.defaults["inpaint"]  # inpainting keeps the image's own size
    assert tiny.tiny and not real.tiny


@pytest.mark.parametrize("task", list(TASKS))
def test_each_task_gives_batch_size_images_of_the_expected_size(engine, pictures, task):
    handle = engine.run(job(task, batch_size=2, **values_for(task, pictures)))

    assert handle.state == DONE and handle.error is None
    assert [r.seed for r in handle.results] == [1, 2]
    for result in handle.results:
        assert (result.width, result.height) == TASKS[task][1]
        with Image.open(result.path) as image:
            assert image.size == TASKS[task][1]
        saved = read_image_metadata(result.path)
        assert (saved["model"], saved["family"], saved["task"]) == (MODEL, "kd21", task)
        assert saved["scheduler"] == "DDIM"
    assert not np.array_equal(pixels(handle.results[0].path), pixels(handle.results[1].path))


def test_a_negative_prompt_changes_the_picture_also_in_a_batch(engine):
    plain = engine.run(job("t2i", seed=3, batch_size=2))
    negative = engine.run(job("t2i", seed=3, batch_size=2, negative_prompt="blurry"))

    for a, b in zip(plain.results, negative.results, strict=True):
        assert not np.array_equal(pixels(a.path), pixels(b.path))


@pytest.mark.parametrize("task", ["t2i", "inpaint"])
def test_a_saved_model_folder_gives_the_same_pixels_as_the_model(engine, saved_folder, pictures, task):
    values = values_for(task, pictures)
    from_registry = engine.run(job(task, seed=11, **values))
    from_folder = engine.run(job(task, str(saved_folder), seed=11, **values))

    assert sorted(p.name for p in saved_folder.iterdir()) == [
        "decoder",
        "decoder_inpaint",
        "kubin.json",
        "prior",
    ]
    assert resolve_model(str(saved_folder)).family == "kd21"
    assert from_folder.results[0].meta["model"] == str(saved_folder.resolve())
    assert np.array_equal(pixels(from_registry.results[0].path), pixels(from_folder.results[0].path))


def test_inpainting_keeps_every_pixel_outside_the_mask(engine, pictures):
    handle = engine.run(job("inpaint", **values_for("inpaint", pictures)))

    original, result = pixels(pictures.photo), pixels(handle.results[0].path)
    inside = np.zeros(original.shape[:2], dtype=bool)
    left, top, right, bottom = BOX
    inside[top:bottom, left:right] = True
    assert np.array_equal(result[~inside], original[~inside])
    assert not np.array_equal(result[inside], original[inside])


@pytest.mark.parametrize("task", ["t2i", "i2i", "inpaint"])
def test_every_offered_scheduler_paints_an_image(engine, manager, pictures, task):
    offered = manager.get(MODEL).schedulers(task)
    assert offered == list(resolve_model(MODEL).schedulers) == list(resolve_model("kd21").schedulers)
    assert offered[0] == "DDIM"  # the model's own first

    for name in offered:
        handle = engine.run(job(task, scheduler=name, **values_for(task, pictures)))

        assert handle.state == DONE, name
        [result] = handle.results
        assert result.meta["scheduler"] == name
        assert pixels(result.path).std() > 1.0, f"{name} gave a flat image"  # NaN latents give one colour


@pytest.mark.parametrize(
    ("task", "values", "expected"),
    [
        ("t2i", {"steps": 3, "prior_steps": 2}, 2 + 3),
        ("i2i", {"steps": 10, "strength": 0.3, "prior_steps": 2}, 2 + 3),
        # The mix prior runs once per prompt and once for the negative embedding, for each seed.
        ("mix", {"steps": 3, "prior_steps": 2, "batch_size": 2}, 2 * (2 + 1) * 2 + 3),
    ],
)
def test_progress_counts_every_step_that_runs(engine, pictures, task, values, expected):
    if task == "mix":
        values = {**values, "images": [pictures.photo], "prompts": ["a dog", "a cat"], "weights": [1, 1, 1]}
    elif task == "i2i":
        values = {**values, "init_image": pictures.photo}
    handle = engine.run(job(task, batch_count=2, **values))

    assert handle.total_steps == 2 * expected
    assert handle.step == handle.total_steps
    assert handle.phase == "decoder"


def test_cancelling_in_the_prior_stops_before_the_decoder(engine, pictures):
    # Five prompts at 200 prior steps: the mix prior alone runs 1200 steps.
    prompts = ["a dog", "a cat", "a fox", "an owl", "a cow"]
    cancel = CancelAtStep(engine, step=1)  # from inside the prior's first step: no timing involved
    handle = engine.submit(
        job(
            "mix",
            images=[pictures.photo],
            prompts=prompts,
            weights=[1] * 6,
            prior_steps=200,
            width=64,
            height=64,
        ),
        subscriber=cancel,
    )
    assert handle.wait(120)

    assert handle.state == CANCELLED and handle.results == []
    assert handle.phase == "prior"
    assert handle.step <= cancel.requested_at + 1  # within a step of the request, the decoder never ran


def test_the_command_line_generates_with_tiny_kd21(tmp_path):
    out = tmp_path / "out"
    args = ["--model", MODEL, "--task", "t2i", "--prompt", "a red cat", "--width", "64", "--height", "64"]
    done = kubin_generate(
        tmp_path, *args, "--steps", "2", "--seed", "42", "--output-dir", str(out), timeout=120
    )

    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stdout.splitlines() if text.strip()]
    assert (line["seed"], line["model"], line["task"]) == (42, MODEL, "t2i")
    path = Path(line["path"])
    assert path.is_file() and path.is_relative_to(out / "t2i")
    with Image.open(path) as image:
        assert image.size == (64, 64)
