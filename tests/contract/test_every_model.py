"""Every tiny model, with each task it supports, through the same behaviour checks, as a user meets them
(in the spirit of diffusers' PipelineTesterMixin): a seed gives the same output again and another seed
another; every parameter a user sets reaches the pipeline and changes the result; progress counts to the
total; cancel stops within a step and the app goes on; each output is saved complete (temp name, then
renamed) with its parameters; videos get the model's frame counts; and the command line works per family.

A family's own test file keeps only what is its own: numerical parity, family options.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from cli_helpers import kubin_generate, printed
from job_helpers import CancelAtStep
from PIL import Image

import kubin.outputs
from kubin.engine import CANCELLED, DONE, Job, JobHandle
from kubin.models.registry import list_models
from kubin.outputs import read_image_metadata, read_mesh_metadata, read_video_metadata, video_info
from kubin.params import Text2VideoParams
from kubin.tasks import nearest_resolution, prepare

TIMEOUT = 300
cases = pytest.mark.cases


def run(engine, case, pictures, **changes) -> JobHandle:
    """One job of `case` with the user's `changes`, to its end; it must succeed."""
    handle = engine.submit(Job(case.task, case.spec.id, case.values(pictures) | changes))
    assert handle.wait(TIMEOUT), f"{case} did not finish"
    assert handle.state == DONE, handle.error
    return handle


def output(handle: JobHandle) -> np.ndarray:
    """What the user gets, as numbers: an image's pixels, a video's frames, a 3D object's vertices."""
    [result] = handle.results
    if result.is_mesh:
        import trimesh

        return np.asarray(trimesh.load(result.files["ply"], force="mesh").vertices)
    if result.is_video:
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(str(result.path))
        width, height = next(reader)["size"]
        return np.stack([np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader])
    with Image.open(result.path) as image:
        return np.asarray(image.convert("RGB"))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)


def saved_size(handle: JobHandle) -> tuple[int, int]:
    [result] = handle.results
    if result.is_video:
        info = video_info(result.path)
        return info["width"], info["height"]
    with Image.open(result.path) as image:
        return image.size


def metadata(path: Path) -> dict:
    if path.suffix == ".mp4":
        return read_video_metadata(path)
    if path.suffix == ".glb":
        return read_mesh_metadata(path)
    return read_image_metadata(path)


class Baseline:
    """A case's first job (seed 1, 2 steps), run once and shared by the checks that only read it, with
    the renames the saving made and the events the job sent."""

    def __init__(self, engine, case, pictures):
        real_replace = os.replace
        with mock.patch.object(kubin.outputs.os, "replace", side_effect=real_replace) as replace:
            self.handle = run(engine, case, pictures)
        self.renames = [(Path(c.args[0]), Path(c.args[1])) for c in replace.call_args_list]
        self.events = list(self.handle.events(timeout=1))  # replayed: the job has finished
        self.output = output(self.handle)


@pytest.fixture(scope="module")
def baselines() -> dict:
    return {}


@pytest.fixture
def baseline(case, engine, pictures, baselines) -> Baseline:
    if str(case) not in baselines:
        baselines[str(case)] = Baseline(engine, case, pictures)
    return baselines[str(case)]


# --- seeds ---------------------------------------------------------------------------------------------
@cases(lambda c: c.task != "i2mesh")
def test_the_same_seed_gives_the_same_output_and_another_seed_another(case, engine, pictures, baseline):
    again = run(engine, case, pictures)
    other = run(engine, case, pictures, seed=2)

    assert again.results[0].seed == 1 and other.results[0].seed == 2
    assert same(output(again), baseline.output), f"{case}: seed 1 gave another output the second time"
    assert not same(output(other), baseline.output), f"{case}: seeds 1 and 2 gave the same output"


# --- each parameter a user sets reaches the pipeline -------------------------------------------------
@cases(lambda c: c.sets("prompt") and not c.slow)
def test_the_prompt_changes_the_result(case, engine, pictures, baseline):
    other = run(engine, case, pictures, prompt="a blue dog sleeps")

    assert other.results[0].meta["params"]["prompt"] == "a blue dog sleeps"
    assert not same(output(other), baseline.output), f"{case}: another prompt changed nothing"


@cases(lambda c: c.sets("negative_prompt") and not c.slow)
def test_a_negative_prompt_changes_the_result(case, engine, pictures, baseline):
    assert baseline.handle.params.guidance_scale > 1  # without guidance a negative prompt has no effect

    steered = run(engine, case, pictures, negative_prompt="blurry, low quality")

    assert steered.results[0].meta["params"]["negative_prompt"] == "blurry, low quality"
    assert not same(output(steered), baseline.output), f"{case}: the negative prompt changed nothing"


@cases(lambda c: c.sets("guidance_scale") and not c.slow)
def test_the_guidance_scale_changes_the_result(case, engine, pictures, baseline):
    stronger = run(engine, case, pictures, guidance_scale=case.guidance + 2)

    assert stronger.results[0].meta["params"]["guidance_scale"] == case.guidance + 2
    assert not same(output(stronger), baseline.output), f"{case}: the guidance scale changed nothing"


@cases(lambda c: c.sets("strength") and not c.slow)
def test_a_lower_strength_runs_fewer_steps_and_changes_the_result(case, engine, pictures, baseline):
    weaker = run(engine, case, pictures, strength=0.5)

    assert weaker.total_steps < baseline.handle.total_steps
    assert weaker.step == weaker.total_steps
    assert not same(output(weaker), baseline.output), f"{case}: the strength changed nothing"


@cases(lambda c: c.sets("steps") and not c.slow)
def test_more_steps_are_reported_and_change_the_result(case, engine, pictures, baseline):
    longer = run(engine, case, pictures, steps=3)

    assert longer.total_steps == baseline.handle.total_steps + longer.params.batch_count
    assert longer.step == longer.total_steps
    assert longer.results[0].meta["params"]["steps"] == 3
    assert not same(output(longer), baseline.output), f"{case}: the step count changed nothing"


@cases(lambda c: c.free_size and not c.slow)
def test_the_output_has_the_size_asked_for_or_the_models_nearest_size(case, engine, pictures):
    asked = (192, 64) if case.spec.resolutions_only else (128, 64)
    expected = nearest_resolution(asked, case.spec.resolutions) if case.spec.resolutions_only else asked

    handle = run(engine, case, pictures, width=asked[0], height=asked[1])

    assert saved_size(handle) == expected
    assert (handle.results[0].width, handle.results[0].height) == expected
    if expected != asked:
        assert any(f"{asked[0]}x{asked[1]} became {expected[0]}x{expected[1]}" in n for n in handle.notices)


@cases(lambda c: c.video and c.sets("frames"))
def test_a_video_has_the_frames_asked_for_snapped_to_the_models_step(case, engine, pictures):
    step = case.spec.limits.get("frame_step", 1)
    frames = 17 + step  # the next count the model makes; asking one more snaps back down to it

    handle = run(engine, case, pictures, frames=frames + 1)

    assert handle.results[0].frames == frames
    assert video_info(handle.results[0].path)["frames"] == frames
    assert metadata(handle.results[0].path)["frames"] == frames


# --- progress, cancel ----------------------------------------------------------------------------------
def test_progress_reports_every_step_up_to_the_total(case, baseline):
    handle = baseline.handle
    progress = [e for e in baseline.events if e.kind == "progress"]

    assert handle.step == handle.total_steps > 0
    assert [e.step for e in progress] == list(range(1, handle.total_steps + 1))
    assert {e.total for e in progress} == {handle.total_steps}
    assert [e.kind for e in baseline.events][-2:] == ["result", "finished"]


@cases(lambda c: c.task != "i2mesh")
def test_cancel_stops_within_a_step_keeps_the_finished_outputs_and_the_next_job_runs(
    case, engine, pictures, baseline
):
    per_output = baseline.handle.total_steps  # the baseline makes one output
    cancel = CancelAtStep(engine, step=per_output + 1)  # in the first step of the second output
    values = case.values(pictures) | {"batch_count": 3, "seed": 1}
    handle = engine.submit(Job(case.task, case.spec.id, values), subscriber=cancel)
    assert handle.wait(TIMEOUT)

    assert handle.state == CANCELLED, f"{case}: {handle.state} {handle.error}"
    assert cancel.requested_at == per_output + 1 and handle.step - cancel.requested_at <= 1
    assert "the finished ones are saved" in str(handle.error)
    [kept] = handle.results  # the first output, whole and as it would be without the cancel
    assert same(output(handle), baseline.output)
    assert not [p for p in kept.path.parent.iterdir() if p.name.startswith(".tmp-")]

    after = run(engine, case, pictures)
    assert same(output(after), baseline.output), f"{case}: the job after a cancel came out differently"


# --- saved outputs -----------------------------------------------------------------------------------
def test_the_output_is_saved_complete_with_its_parameters(case, baseline):
    [result] = baseline.handle.results
    meta = metadata(result.path)

    assert result.path.is_file() and result.path.stat().st_size > 0
    assert meta["model"] == case.spec.id and meta["task"] == case.task
    assert meta["seed"] == 1 and meta["params"]["seed"] == 1
    assert meta["params"]["steps"] == 2
    if case.task == "mix":
        assert meta["params"]["prompts"] == ["a dog"]
    elif "prompt" in case.fields:
        assert meta["params"]["prompt"] == "a red cat"
    if case.video or case.mesh:  # the sidecar beside the file says the same
        assert json.loads(result.path.with_suffix(".json").read_text(encoding="utf-8")) == meta
    else:  # and other tools read the A1111 text
        with Image.open(result.path) as image:
            text = image.text["parameters"]
        assert "Steps: 2" in text and "Seed: 1" in text and f"Model: {case.spec.id}" in text


def test_the_output_was_written_under_a_temporary_name_and_renamed_into_place(case, baseline):
    [result] = baseline.handle.results
    sources = [src for src, dst in baseline.renames if dst == result.path]

    assert sources, f"{case}: {result.path.name} was written under its final name, not renamed into place"
    assert sources[0].parent == result.path.parent and sources[0].name != result.path.name
    assert not sources[0].exists()
    assert not [p for p in result.path.parent.iterdir() if p.name.startswith(".tmp-")]


# --- frame counts, at the unit level -----------------------------------------------------------------
VIDEO_MODELS = [spec for spec in list_models() if spec.tiny and spec.limits.get("frame_step")]


@pytest.mark.parametrize("spec", VIDEO_MODELS, ids=lambda spec: spec.id)
def test_a_video_models_frame_counts_snap_to_the_nearest_k_times_step_plus_one(spec):
    step = spec.limits["frame_step"]
    made = range(1, 200, step)  # what the model makes: k * step + 1
    for asked in range(17, 17 + 4 * step):
        distances = sorted(abs(asked - m) for m in made)
        if distances[0] == distances[1]:
            continue  # halfway between two counts: either is fair
        expected = min(made, key=lambda m: abs(asked - m))

        prepared = prepare(Text2VideoParams(prompt="a cat", frames=asked, width=64, height=64), spec=spec)

        assert prepared.frames == expected, f"{spec.id}: {asked} frames became {prepared.frames}"
        assert bool(prepared.notices) == (asked != expected)
        if asked != expected:
            assert f"{asked} frames became {expected}" in prepared.notices[0]


# --- the command line, once per family -----------------------------------------------------------------
def first_of_each_family() -> list:
    chosen: dict[str, tuple] = {}
    for spec in list_models():
        task = next((t for t in spec.tasks if t in ("t2i", "t2v", "t2mesh")), None)
        if spec.tiny and task and spec.family not in chosen:
            marks = [pytest.mark.slow] if task == "t2mesh" else []
            chosen[spec.family] = pytest.param(spec.id, task, id=spec.family, marks=marks)
    return list(chosen.values())


@pytest.mark.parametrize(("model", "task"), first_of_each_family())
def test_the_command_line_saves_an_output_and_prints_it_as_json(model, task, tmp_path):
    done = kubin_generate(
        tmp_path, "--model", model, "--task", task, "--prompt", "a red cat", "--steps", "2", "--seed", "42",
        "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    [line] = printed(done.stdout)
    path = Path(line["path"])
    assert path.is_file() and path.is_relative_to(tmp_path / "out" / task)
    assert (line["model"], line["task"], line["seed"]) == (model, task, 42)
    meta = metadata(path)
    assert (meta["model"], meta["seed"], meta["params"]["steps"]) == (model, 42, 2)
