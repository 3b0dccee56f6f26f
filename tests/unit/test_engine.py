"""The engine on tiny-kd22: what a user gets back from a job, with seeds, cancel, queue order and saved metadata."""

import numpy as np
import pytest
from job_helpers import CancelAtStep, StepGate
from PIL import Image

from kubin.engine import CANCELLED, DONE, QUEUED, RUNNING, Job
from kubin.errors import InvalidParams, UnknownModel, UnsupportedTask
from kubin.outputs import read_image_metadata
from kubin.params import SEED_MAX, Text2ImageParams

SMALL = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2}


def t2i(**values) -> Job:
    return Job("t2i", "tiny-kd22", {**SMALL, **values})


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_a_job_gives_batch_count_times_batch_size_images_of_the_asked_size(engine, output_dir):
    handle = engine.run(t2i(width=128, height=64, batch_count=2, batch_size=2, seed=1))

    assert handle.state == DONE and handle.error is None
    assert [r.index for r in handle.results] == [0, 1, 2, 3]
    for result in handle.results:
        assert result.path.is_file() and result.path.parent.parent == output_dir / "t2i"
        assert (result.width, result.height) == (128, 64)
        with Image.open(result.path) as image:
            assert image.size == (128, 64)
    assert len(list((output_dir / "t2i").rglob("*.png"))) == 4


def test_an_explicit_seed_numbers_the_images_seed_seed_plus_one_and_so_on(engine):
    handle = engine.run(t2i(seed=1000, batch_count=2, batch_size=2))

    assert handle.seed == 1000
    assert [r.seed for r in handle.results] == [1000, 1001, 1002, 1003]
    assert handle.seeds() == [1000, 1001, 1002, 1003]
    assert [r.path.name.split("-", 1)[1] for r in handle.results] == [f"{s}.png" for s in range(1000, 1004)]


def test_seeds_wrap_around_at_the_largest_seed(engine):
    handle = engine.run(t2i(seed=SEED_MAX, batch_size=2))

    assert [r.seed for r in handle.results] == [SEED_MAX, 0]


def test_seed_minus_one_picks_a_random_seed_and_reports_it(engine):
    first = engine.run(t2i(seed=-1))
    second = engine.run(t2i(seed=-1))

    for handle in (first, second):
        [result] = handle.results
        assert 0 <= handle.seed <= SEED_MAX
        assert result.seed == handle.seed
        saved = read_image_metadata(result.path)
        assert saved["seed"] == handle.seed
        assert saved["params"]["seed"] == handle.seed  # so "reuse parameters" reproduces it
    assert first.seed != second.seed


def test_a_saved_model_folder_gives_the_same_pixels_as_the_model_it_came_from(engine, saved_tiny_folder):
    from_registry = engine.run(t2i(seed=11))
    from_folder = engine.run(Job("t2i", str(saved_tiny_folder), {**SMALL, "seed": 11}))

    assert from_folder.results[0].meta["model"] == str(saved_tiny_folder.resolve())
    assert np.array_equal(pixels(from_registry.results[0].path), pixels(from_folder.results[0].path))


def test_model_defaults_fill_in_what_a_job_leaves_out(engine):
    handle = engine.run(Job("t2i", "tiny-kd22", {"prompt": "a red cat"}))

    assert (handle.params.width, handle.params.height) == (64, 64)
    assert (handle.params.steps, handle.params.prior_steps) == (4, 2)
    assert (handle.results[0].width, handle.results[0].height) == (64, 64)


def test_typed_params_are_used_as_given(engine):
    handle = engine.run(Job("t2i", "tiny-kd22", Text2ImageParams(**SMALL, seed=3)))

    assert handle.results[0].seed == 3
    assert handle.params.steps == 2


def test_the_saved_png_carries_the_jobs_parameters(engine):
    handle = engine.run(t2i(prompt="кот в сапогах", negative_prompt="blurry", seed=42, scheduler="DDIM"))

    saved = read_image_metadata(handle.results[0].path)
    assert saved["params"]["prompt"] == "кот в сапогах"
    assert saved["params"]["negative_prompt"] == "blurry"
    assert saved["seed"] == 42
    assert saved["model"] == "tiny-kd22"
    assert saved["scheduler"] == "DDIM"
    assert saved["task"] == "t2i"
    assert (saved["width"], saved["height"]) == (64, 64)
    assert Text2ImageParams.from_dict(saved["params"]) == handle.params
    with Image.open(handle.results[0].path) as image:
        text = image.text["parameters"]
    assert text.startswith("кот в сапогах\nNegative prompt: blurry\n")
    assert "Steps: 2, Sampler: DDIM, CFG scale: 4.0, Seed: 42, Size: 64x64, Model: tiny-kd22" in text


def test_progress_counts_every_prior_and_decoder_step(engine):
    handle = engine.run(t2i(seed=1, batch_count=2, steps=3, prior_steps=2))

    assert handle.total_steps == 2 * (3 + 2)
    assert handle.step == handle.total_steps
    assert handle.phase == "decoder"


def test_cancelling_mid_job_keeps_the_finished_images_and_stops_within_a_step(engine, output_dir):
    cancel = CancelAtStep(engine, at="result")  # as the first image is saved
    handle = engine.submit(t2i(seed=5, batch_count=3), subscriber=cancel)
    assert handle.wait(120)

    assert handle.state == CANCELLED
    assert len(handle.results) == 1
    assert handle.step - cancel.requested_at <= 1  # at most the step under way
    assert "the finished ones are saved" in str(handle.error)
    saved = sorted((output_dir / "t2i").rglob("*.png"))
    assert saved == sorted(r.path for r in handle.results)


def test_cancelling_a_queued_job_drops_it_before_it_starts(engine, output_dir):
    with StepGate() as gate:
        running = engine.submit(t2i(seed=1), subscriber=gate)
        queued = engine.submit(t2i(seed=2))
        gate.wait_reached()

        engine.cancel(queued)

        assert queued.finished and queued.state == CANCELLED
    assert "before it started" in str(queued.error)
    assert running.wait(120) and running.state == DONE
    assert queued.results == [] and queued.step == 0
    assert [p.name for p in (output_dir / "t2i").rglob("*.png")] == [running.results[0].path.name]


def test_jobs_run_in_the_order_they_were_submitted_and_report_their_place(engine):
    with StepGate() as gate:
        first = engine.submit(t2i(seed=1), subscriber=gate)
        gate.wait_reached()
        second = engine.submit(t2i(seed=2))
        third = engine.submit(t2i(seed=3))

        assert (first.state, engine.position(first)) == (RUNNING, 0)
        assert (second.state, engine.position(second)) == (QUEUED, 1)
        assert (third.state, engine.position(third)) == (QUEUED, 2)

    assert third.wait(120)
    assert [h.state for h in (first, second, third)] == [DONE, DONE, DONE]
    assert first.started_at < second.started_at < third.started_at
    names = [h.results[0].path.name for h in (first, second, third)]
    assert names == ["00001-1.png", "00002-2.png", "00003-3.png"]
    assert engine.position(third) == 0  # finished


def test_bad_parameters_fail_at_submit_and_nothing_is_queued(engine, output_dir):
    with pytest.raises(InvalidParams, match="Width must be a multiple of 64"):
        engine.submit(t2i(width=100))
    with pytest.raises(InvalidParams, match="Steps must be between 1 and 500"):
        engine.submit(t2i(steps=0))
    with pytest.raises(InvalidParams, match=r"Unknown parameter\(s\) for t2i: strength"):
        engine.submit(t2i(strength=0.5))

    assert not output_dir.exists()


def test_prompts_over_the_length_limit_fail_at_submit_with_one_sentence(manager, output_dir):
    from kubin.engine import DEFAULT_MAX_PROMPT_CHARS, Engine

    engine = Engine(manager, output_dir, max_prompt_chars=20)
    try:
        engine.submit(t2i(prompt="x" * 20, negative_prompt="y" * 20))  # at the limit: accepted
        with pytest.raises(InvalidParams, match=r"^Prompt is 21 characters long; the limit is 20 \("):
            engine.submit(t2i(prompt="x" * 21))
        with pytest.raises(InvalidParams, match="^Negative prompt is 21 characters"):
            engine.submit(t2i(negative_prompt="y" * 21))
        with pytest.raises(InvalidParams, match="^One of the prompts is 21 characters"):
            engine.submit(Job("mix", "tiny-kd22", {"prompts": ["a cat", "z" * 21], "weights": [1, 1]}))
    finally:
        engine.close(wait=True)
    assert DEFAULT_MAX_PROMPT_CHARS == 10_000


def test_a_task_the_model_cannot_do_fails_at_submit(engine, t2i_only_model):
    with pytest.raises(UnsupportedTask, match="cannot do i2i; it supports: t2i"):
        engine.submit(Job("i2i", t2i_only_model, {"prompt": "a red cat"}))


def test_an_unknown_model_fails_at_submit(engine):
    with pytest.raises(UnknownModel, match="Unknown model 'kd99'"):
        engine.submit(Job("t2i", "kd99", {"prompt": "a red cat"}))


def test_cancel_owner_stops_only_that_owners_jobs(engine):
    with StepGate() as gate:
        mine = engine.submit(Job("t2i", "tiny-kd22", {**SMALL, "seed": 1}, owner="alice"), subscriber=gate)
        theirs = engine.submit(Job("t2i", "tiny-kd22", {**SMALL, "seed": 2}, owner="bob"))
        also_mine = engine.submit(Job("t2i", "tiny-kd22", {**SMALL, "seed": 3}, owner="alice"))
        gate.wait_reached()

        assert engine.cancel_owner("alice") == 2

    assert theirs.wait(120) and theirs.state == DONE
    assert mine.state == CANCELLED and also_mine.state == CANCELLED


def test_an_adopted_owner_cancels_what_the_page_started_before_it_loaded(engine):
    """A page clicks Generate under its session owner, then its load gives it the browser's lasting owner id:
    Cancel under the new id stops the job already running and one that arrives later under the old id."""
    with StepGate() as gate:
        early = engine.submit(
            Job("t2i", "tiny-kd22", {**SMALL, "seed": 1}, owner="session-1"), subscriber=gate
        )
        gate.wait_reached()
        engine.adopt_owner("session-1", "browser:t2i")
        late = engine.submit(Job("t2i", "tiny-kd22", {**SMALL, "seed": 2}, owner="session-1"))
        other = engine.submit(Job("t2i", "tiny-kd22", {**SMALL, "seed": 3}, owner="session-2"))

        assert engine.cancel_owner("browser:t2i") == 2

    assert other.wait(120) and other.state == DONE
    assert early.state == CANCELLED and late.state == CANCELLED


@pytest.fixture
def wildcards(engine, tmp_path):
    """The engine's wildcards folder, with colors.txt in it."""
    from kubin.prompts import Wildcards

    folder = tmp_path / "wildcards"
    folder.mkdir()
    (folder / "colors.txt").write_text("red\ngreen\nblue\n", encoding="utf-8")
    engine.wildcards = Wildcards(folder)
    return engine.wildcards


def test_a_prompt_template_gives_each_image_the_prompt_its_seed_picks_and_saves_both(engine, wildcards):
    template = "a __colors__ {cat|dog|fox|owl}"
    handle = engine.run(
        t2i(prompt=template, negative_prompt="{blur|noise}", seed=20, batch_size=2, batch_count=2)
    )

    expected = [wildcards.random(template, seed) for seed in (20, 21, 22, 23)]
    assert [r.meta["prompt"] for r in handle.results] == expected
    assert len(set(expected)) > 1, "the seeds of one job pick different prompts"
    for result in handle.results:
        saved = read_image_metadata(result.path)
        assert saved["prompt_template"] == template and saved["prompt"] == result.meta["prompt"]
        assert (
            saved["negative_prompt"] in ("blur", "noise")
            and saved["negative_prompt_template"] == "{blur|noise}"
        )
        assert saved["params"]["prompt"] == template, "restoring the output restores the template"
        with Image.open(result.path) as image:
            text = image.text["parameters"]
        assert text.startswith(f"{saved['prompt']}\nNegative prompt: {saved['negative_prompt']}\n")
        assert f"Template: {template}, Negative Template: {{blur|noise}}" in text
    assert handle.step == handle.total_steps, "progress counts the extra calls of batches split by prompt"
    # The expanded prompt is what the pipeline got: the same pixels as that prompt written out.
    first = handle.results[0]
    plain = engine.run(
        t2i(prompt=first.meta["prompt"], negative_prompt=first.meta["negative_prompt"], seed=20)
    )
    assert np.array_equal(pixels(plain.results[0].path), pixels(first.path))
    again = engine.run(
        t2i(prompt=template, negative_prompt="{blur|noise}", seed=20, batch_size=2, batch_count=2)
    )
    assert [r.meta["prompt"] for r in again.results] == expected, "the same seed makes the same prompts"


def test_combinatorial_mode_makes_every_combination_and_a_missing_wildcard_fails_at_submit(engine, wildcards):
    handle = engine.run(t2i(prompt="a {red|blue} __colors__ ball", prompt_mode="combinatorial", seed=1))

    assert [r.meta["prompt"] for r in handle.results] == [
        "a red blue ball", "a red green ball", "a red red ball",
        "a blue blue ball", "a blue green ball", "a blue red ball",
    ]  # fmt: skip
    assert [r.seed for r in handle.results] == [1, 2, 3, 4, 5, 6] and handle.image_count == 6
    assert handle.results[0].as_json()["prompt_template"] == "a {red|blue} __colors__ ball"

    with pytest.raises(
        InvalidParams, match=r"^Wildcard __animals__ has no file: put animals.txt .* in the wildcards folder"
    ):
        engine.submit(t2i(prompt="an __animals__ in the snow"))
    with pytest.raises(InvalidParams, match="^Dynamic prompts must be one of random, combinatorial"):
        engine.submit(t2i(prompt="a {red|blue} cat", prompt_mode="every"))


def test_mix_prompts_may_be_templates_too(engine, wildcards):
    template = ["a {red|green|blue} cat", "a dog"]
    small = {k: v for k, v in SMALL.items() if k != "prompt"}
    handle = engine.run(
        Job("mix", "tiny-kd22", {**small, "prompts": template, "weights": [0.5, 0.5], "seed": 3})
    )

    [result] = handle.results
    assert result.meta["prompts_template"] == template
    assert result.meta["prompts"] == [wildcards.random(template[0], "3:prompts:0"), "a dog"]
    plain = engine.run(
        Job(
            "mix", "tiny-kd22", {**small, "prompts": result.meta["prompts"], "weights": [0.5, 0.5], "seed": 3}
        )
    )
    assert np.array_equal(pixels(plain.results[0].path), pixels(result.path))
