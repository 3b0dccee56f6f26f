"""Kandinsky 5.0 on the tiny kd50 models, through the engine and the command line, as a user runs it.

Text to video makes an mp4 of the frames asked for (snapped to the model's 4k+1 step), at the size and
frame rate asked for, with its parameters beside it and inside it and an animated preview; a seed gives
the same video again. Image to video starts from the init image, centre-cropped to the video's size. The
image models make only their own sizes, and a batch's seeds give its images back one by one. Bad input
fails at submit with a message for the user; progress counts steps per video; cancel keeps what is done.
"""

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import imageio_ffmpeg
import numpy as np
import pytest
from cli_helpers import kubin_generate
from PIL import Image

from kubin.engine import DONE, Job
from kubin.errors import InvalidParams, UnsupportedTask
from kubin.models.registry import FAMILIES, resolve_model
from kubin.outputs import read_image_metadata, read_video_metadata, video_frame, video_info

SMALL = {"prompt": "a red cat walks", "steps": 2, "seed": 1}
TINY_LIMIT = "Kandinsky 5.0 {} (tiny, random weights, for tests and demos)"


@pytest.fixture(scope="module")
def manager(fresh_manager):
    """This module's model in a manager of its own, so the session's tiny-kd22 stays loaded."""
    return fresh_manager


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> SimpleNamespace:
    """Init images: two squares that differ, a wide and a tall photo, and the wide one's centre."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    images = {
        "square": Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)),
        "flat": Image.new("RGB", (64, 64), (200, 180, 40)),
        "wide": Image.fromarray(rng.integers(0, 256, (64, 192, 3), dtype=np.uint8)),  # 3:1
        "tall": Image.fromarray(rng.integers(0, 256, (150, 64, 3), dtype=np.uint8)),
        "photo": Image.fromarray(rng.integers(0, 256, (70, 100, 3), dtype=np.uint8)),
    }
    images["centre"] = images["wide"].crop((64, 0, 128, 64))
    images["left"] = images["wide"].crop((0, 0, 64, 64))
    for name, image in images.items():
        image.save(folder / f"{name}.png")
    return SimpleNamespace(**{name: str(folder / f"{name}.png") for name in images})


def job(task: str, model: str | None = None, **values) -> Job:
    return Job(task, model or f"tiny-kd50-{task}", {**SMALL, **values})


def frames_of(path) -> np.ndarray:
    """Every frame of a video as one array (frames, height, width, 3)."""
    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    frames = [np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader]
    return np.stack(frames)


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


# --- the registry ----------------------------------------------------------------------------------
def test_the_registry_knows_every_published_kd50_model_with_its_length_and_its_tiny_twins():
    ids = [spec.id for spec in FAMILIES["kd50"].models]
    for seconds in ("5s", "10s"):
        for variant in ("sft", "pretrain", "nocfg", "distilled"):
            assert f"kd50-t2v-lite-{variant}-{seconds}" in ids
    assert {"kd50-t2v-pro-sft-5s", "kd50-i2v-pro-sft-5s", "kd50-t2i-lite-sft", "kd50-i2i-lite-sft"} <= set(
        ids
    )
    assert {f"tiny-kd50-{task}" for task in ("t2v", "i2v", "t2i", "i2i")} <= set(ids)

    five, ten = resolve_model("kd50-t2v-lite-sft-5s"), resolve_model("kd50-t2v-lite-sft-10s")
    assert five.sources == {"pipeline": "kandinskylab/Kandinsky-5.0-T2V-Lite-sft-5s-Diffusers"}
    assert (five.limits["frames"], ten.limits["frames"]) == (121, 241)  # 5 s and 10 s at 24 fps
    assert five.defaults["t2v"]["frames"] == 121 and ten.defaults["t2v"]["frames"] == 241
    assert resolve_model("kd50-t2v-lite-distilled-5s").defaults["t2v"]["steps"] == 16
    for spec in FAMILIES["kd50"].models:
        assert len(spec.tasks) == 1, spec.id  # one published pipeline per task
        assert spec.family == "kd50" and spec.module == "kubin.models.families.kd50.model"


# --- text to video ---------------------------------------------------------------------------------
# 80 is a multiple of 16 but not of 64: video sizes follow the video VAE and the transformer's patches.
@pytest.mark.parametrize(("frames", "width", "height", "fps"), [(17, 64, 64, 8), (21, 80, 64, 12)])
def test_text_to_video_makes_an_mp4_of_the_frames_size_and_fps_asked_for(
    engine, output_dir, frames, width, height, fps
):
    handle = engine.run(job("t2v", frames=frames, width=width, height=height, fps=fps))

    assert handle.state == DONE and handle.error is None and handle.notices == []
    [result] = handle.results
    assert result.path.suffix == ".mp4" and result.path.name == "00001-1.mp4"
    assert (result.frames, result.fps, result.width, result.height) == (frames, fps, width, height)
    assert video_info(result.path) == {"frames": frames, "width": width, "height": height, "fps": float(fps)}
    assert result.path.with_suffix(".json").is_file()
    assert result.preview == result.path.with_suffix(".webp")
    with Image.open(result.preview) as preview:
        assert preview.is_animated and (preview.n_frames, preview.size) == (frames, (width, height))
    assert sorted(p.name for p in result.path.parent.iterdir()) == [
        "00001-1.json",
        "00001-1.mp4",
        "00001-1.webp",
    ]
    video = frames_of(result.path)
    assert not np.array_equal(video[0], video[-1])  # a clip, not one picture repeated


def test_a_video_carries_its_parameters_beside_it_and_inside_it(engine):
    handle = engine.run(job("t2v", prompt="a red cat walks on a fence", seed=5, fps=8, frames=17))
    path = handle.results[0].path

    beside = read_video_metadata(path)
    assert beside["params"]["prompt"] == "a red cat walks on a fence"
    assert (beside["seed"], beside["frames"], beside["fps"]) == (5, 17, 8)
    assert (beside["model"], beside["family"], beside["task"]) == ("tiny-kd50-t2v", "kd50", "t2v")
    assert beside["scheduler"] == "Flow Match Euler"
    assert (beside["width"], beside["height"]) == (64, 64)
    path.with_suffix(".json").unlink()  # the video copied on its own
    assert read_video_metadata(path) == beside


def test_progress_counts_the_steps_of_every_video(engine):
    handle = engine.run(job("t2v", steps=3, batch_count=2, seed=40))

    assert handle.total_steps == 3 * 2
    assert handle.step == handle.total_steps
    assert handle.phase == "denoise"
    assert [r.seed for r in handle.results] == [40, 41]
    assert [r.path.name for r in handle.results] == ["00001-40.mp4", "00002-41.mp4"]


# --- bad input: refused at submit, before anything is queued ----------------------------------------
@pytest.mark.parametrize(
    ("model", "task", "values", "message"),
    [
        ("tiny-kd50-t2v", "t2v", {"width": 70}, "Width must be a multiple of 16 for video (got 70); the nearest are 64 and 80."),
        ("tiny-kd50-t2v", "t2v", {"height": 72}, "Height must be a multiple of 16 for video (got 72)"),
        ("tiny-kd50-t2v", "t2v", {"frames": 0}, "Frames must be between 1 and"),
        ("tiny-kd50-t2v", "t2v", {"frames": 125}, f"{TINY_LIMIT.format('T2V')} makes at most 121 frames"),
        ("kd50-t2v-lite-sft-5s", "t2v", {"frames": 125},
         "Kandinsky 5.0 T2V Lite SFT 5 s makes at most 121 frames (5.0 s at 24 fps); got 125. Ask for fewer frames or pick a longer model."),
        ("kd50-t2v-lite-distilled-10s", "t2v", {"frames": 245}, "makes at most 241 frames (10.0 s at 24 fps); got 245"),
        ("kd50-t2v-pro-sft-5s", "t2v", {"frames": 241}, "makes at most 121 frames"),
        ("tiny-kd50-t2v", "t2v", {"scheduler": "DDIM"}, "Scheduler 'DDIM' is not available for Kandinsky 5.0 T2V"),
        ("tiny-kd50-i2v", "i2v", {}, "Image to video needs an init image (the first frame)."),
        ("tiny-kd50-i2v", "i2v", {"init_image": "square", "frames": 13},
         f"{TINY_LIMIT.format('I2V')} needs at least 17 frames; got 13."),
        ("kd50-i2v-pro-sft-5s", "i2v", {"init_image": "square", "frames": 9}, "needs at least 17 frames; got 9."),
        ("tiny-kd50-i2v", "i2v", {"init_image": "missing"}, "Init image"),
        ("tiny-kd50-t2i", "t2i", {"width": 70}, "Width must be a multiple of 64 (got 70)"),
    ],
    ids=["width-70", "height-72", "no-frames", "tiny-above-limit", "5s-above-121", "10s-above-241",
         "pro-5s-above-121", "unknown-scheduler", "i2v-no-init-image", "i2v-below-17", "pro-i2v-below-17",
         "i2v-missing-init-image", "t2i-width-70"],
)  # fmt: skip
def test_bad_input_is_refused_at_submit_with_a_clear_message(
    engine, output_dir, pictures, model, task, values, message
):
    if "init_image" in values:
        values = {**values, "init_image": getattr(pictures, values["init_image"], "/no/such/picture.png")}

    with pytest.raises(InvalidParams) as refused:
        engine.submit(job(task, model, **values))

    assert message in str(refused.value)
    assert engine.pending() == []
    assert not output_dir.exists()


def test_a_video_model_refuses_a_task_it_was_not_made_for(engine):
    with pytest.raises(UnsupportedTask, match="cannot do i2v; it supports: t2v"):
        engine.submit(job("i2v", "tiny-kd50-t2v", init_image="x.png"))


# --- image to video --------------------------------------------------------------------------------
def test_image_to_video_starts_from_the_init_image_and_keeps_a_copy_of_it(engine, output_dir, pictures):
    first = engine.run(job("i2v", init_image=pictures.square))
    again = engine.run(job("i2v", init_image=pictures.square))
    other = engine.run(job("i2v", init_image=pictures.flat))

    assert first.state == DONE and first.notices == []
    [result] = first.results
    assert video_info(result.path) == {"frames": 17, "width": 64, "height": 64, "fps": 8.0}  # tiny defaults
    assert np.array_equal(frames_of(result.path), frames_of(again.results[0].path))
    assert not np.array_equal(
        np.asarray(video_frame(result.path, 0)), np.asarray(video_frame(other.results[0].path, 0))
    )
    stored = read_video_metadata(result.path)["inputs"]["init_image"]
    assert stored.startswith("inputs/")
    assert np.array_equal(pixels(output_dir / stored), pixels(pictures.square))


@pytest.mark.parametrize(
    ("picture", "size", "made", "cropped"),
    [
        ("square", (0, 0), (64, 64), False),
        ("wide", (0, 0), (128, 64), True),  # 3:1 -> the nearest of the model's sizes, 2:1
        ("tall", (0, 0), (64, 128), True),
        ("wide", (64, 64), (64, 64), True),
    ],
)
def test_the_video_size_follows_the_init_image_unless_asked_and_a_mismatch_is_centre_cropped(
    engine, pictures, picture, size, made, cropped
):
    handle = engine.run(job("i2v", init_image=getattr(pictures, picture), width=size[0], height=size[1]))

    assert (handle.results[0].width, handle.results[0].height) == made
    assert video_info(handle.results[0].path)["width"] == made[0]
    crop_notices = [n for n in handle.notices if "centre-cropped" in n]
    assert bool(crop_notices) == cropped
    if cropped:
        assert f"to the video's {made[0]}x{made[1]} aspect ratio" in crop_notices[0]


def test_a_wide_init_image_gives_the_same_video_as_its_centre(engine, pictures):
    wide = engine.run(job("i2v", init_image=pictures.wide, width=64, height=64))
    centre = engine.run(job("i2v", init_image=pictures.centre))
    left = engine.run(job("i2v", init_image=pictures.left))

    difference = np.abs(frames_of(wide.results[0].path).astype(int) - frames_of(centre.results[0].path))
    assert difference.max() <= 2  # the same picture in, up to resampling
    assert not np.array_equal(frames_of(wide.results[0].path), frames_of(left.results[0].path))


# --- text to image ---------------------------------------------------------------------------------
def test_text_to_image_makes_a_png_of_a_size_the_model_makes(engine):
    handle = engine.run(job("t2i", width=128, height=64))

    assert handle.state == DONE and handle.notices == []
    [result] = handle.results
    assert result.path.suffix == ".png"
    with Image.open(result.path) as image:
        assert image.size == (128, 64)
    saved = read_image_metadata(result.path)
    assert (saved["model"], saved["family"], saved["task"]) == ("tiny-kd50-t2i", "kd50", "t2i")


def test_a_batch_gives_different_images_that_their_seeds_give_back_one_by_one(engine):
    batch = engine.run(job("t2i", seed=20, batch_size=2))
    first = engine.run(job("t2i", seed=20))
    second = engine.run(job("t2i", seed=21))

    assert [r.seed for r in batch.results] == [20, 21]
    assert np.abs(pixels(batch.results[0].path) - pixels(batch.results[1].path)).mean() > 10
    # The same picture, up to the rounding of batched arithmetic (one level in a rare pixel).
    assert np.abs(pixels(batch.results[0].path) - pixels(first.results[0].path)).max() <= 1
    assert np.abs(pixels(batch.results[1].path) - pixels(second.results[0].path)).max() <= 1


# --- image to image --------------------------------------------------------------------------------
def test_image_editing_follows_the_init_image_at_a_size_the_model_makes(engine, pictures):
    photo = engine.run(job("i2i", init_image=pictures.photo))  # 100x70 -> 128x64
    square = engine.run(job("i2i", init_image=pictures.square))
    flat = engine.run(job("i2i", init_image=pictures.flat))

    with Image.open(photo.results[0].path) as image:
        assert image.size == (128, 64)
    assert not np.array_equal(pixels(square.results[0].path), pixels(flat.results[0].path))
    assert read_image_metadata(square.results[0].path)["inputs"]["init_image"].startswith("inputs/")


def test_image_editing_has_no_strength_and_leaves_unused_params_out_of_the_metadata(engine, pictures):
    weak = engine.run(job("i2i", init_image=pictures.square, steps=4, strength=0.3, prior_steps=3))
    strong = engine.run(job("i2i", init_image=pictures.square, steps=4, strength=0.9))

    assert np.array_equal(
        pixels(weak.results[0].path), pixels(strong.results[0].path)
    )  # full steps either way
    assert weak.total_steps == strong.total_steps == 4  # every step runs, none is skipped by a strength
    params = read_image_metadata(weak.results[0].path)["params"]
    for unused in ("strength", "prior_steps", "prior_guidance_scale", "negative_prior_prompt", "hint_image"):
        assert unused not in params
    assert (params["prompt"], params["steps"], params["seed"]) == (SMALL["prompt"], 4, 1)


def test_image_editing_runs_a_single_step_since_it_has_no_strength(engine, pictures):
    handle = engine.run(job("i2i", init_image=pictures.square, steps=1))

    assert handle.state == DONE and handle.total_steps == 1


# --- the command line ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "user.yaml").write_text("")  # keep a developer's configs/kubin.user.yaml out of the tests
    return folder


def generate(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return kubin_generate(workdir, *args, timeout=180)


@pytest.mark.parametrize("task", ["t2v", "i2v"])
def test_the_command_line_makes_a_video_and_prints_its_path(workdir, pictures, task):
    out = workdir / f"out-{task}"
    init = ["--init-image", pictures.tall] if task == "i2v" else []
    done = generate(
        workdir, "--model", f"tiny-kd50-{task}", "--task", task, "--prompt", "a red cat walks", *init,
        "--frames", "17", "--fps", "8", "--steps", "2", "--seed", "42", "--output-dir", str(out),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stdout.splitlines() if text.strip()]
    assert (line["seed"], line["model"], line["task"], line["frames"], line["fps"]) == (
        42, f"tiny-kd50-{task}", task, 17, 8,
    )  # fmt: skip
    path = Path(line["path"])
    assert path.suffix == ".mp4" and path.is_file() and path.is_relative_to(out / task)
    size = (64, 64) if task == "t2v" else (64, 128)  # image to video follows the tall image
    assert video_info(path) == {"frames": 17, "width": size[0], "height": size[1], "fps": 8.0}
    assert Path(line["preview"]).is_file()
    if task == "i2v":
        assert "centre-cropped" in done.stderr  # the notice reaches the user


def test_the_command_line_refuses_a_video_width_off_the_16_pixel_grid(workdir):
    out = workdir / "out-bad"
    done = generate(
        workdir, "--model", "tiny-kd50-t2v", "--task", "t2v", "--prompt", "a cat", "--width", "70",
        "--output-dir", str(out),
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: Width must be a multiple of 16 for video (got 70); the nearest are 64 and 80."]
    assert not out.exists()
