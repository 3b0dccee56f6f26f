"""Kandinsky 6.0 Video on tiny-kd6, through the engine and the command line, as a user runs it.

A video comes with its soundtrack: the mp4 holds a video stream of the frames asked for (snapped to the
model's 4k+1 step) and an AAC audio stream as long as the clip, and a WAV of the sound lies beside it.
Sound off gives a silent mp4 and no WAV. Expand prompt has the model rewrite the prompt first; the video is
made from the rewritten prompt, which is saved with it. A seed gives the same frames and the same sound
again; Cancel stops within a step; bad input is refused at submit with a message for the user.
"""

from __future__ import annotations

import json
import subprocess
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from cli_helpers import kubin_generate
from job_helpers import CancelAtStep
from PIL import Image

from kubin.engine import CANCELLED, DONE, Job
from kubin.errors import InvalidParams
from kubin.models.registry import FAMILIES, resolve_model
from kubin.outputs import read_video_metadata

SMALL = {"prompt": "a red cat meows on a fence", "steps": 2, "seed": 1, "frames": 17, "fps": 8}
SAMPLE_RATE = 16_000  # tiny-kd6's sound (the real models make 44.1 kHz)


@pytest.fixture(scope="module")
def manager(fresh_manager):
    """This module's model in a manager of its own, so the session's tiny-kd22 stays loaded."""
    return fresh_manager


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("pictures") / "square.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return str(path)


def job(task: str = "t2v", **values) -> Job:
    return Job(task, "tiny-kd6", {**SMALL, **values})


def streams(path: Path) -> list[str]:
    """The kinds of the streams in a media file ("Video: h264 ...", "Audio: aac ..."), as ffmpeg lists them."""
    run = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                         capture_output=True, text=True)  # fmt: skip
    return [line.split(": ", 1)[1] for line in run.stderr.splitlines() if line.strip().startswith("Stream #")]


def video_frames(path: Path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return np.stack([np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader])


def audio_samples(path: Path) -> np.ndarray:
    """The first audio stream of a file, decoded by ffmpeg to mono 16-bit samples at tiny-kd6's rate."""
    run = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le",
         "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
        capture_output=True, check=True,
    )  # fmt: skip
    return np.frombuffer(run.stdout, "<i2")


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as sound:
        return sound.getnframes() / sound.getframerate()


# --- the registry ----------------------------------------------------------------------------------
def test_the_registry_knows_every_published_kd6_model_with_the_authors_settings():
    ids = {spec.id for spec in FAMILIES["kd6"].models}
    assert ids == {
        "kd6",
        "kd6-lite-distill",
        "kd6-lite-pretrain",
        "kd6-pro",
        "kd6-pro-distill",
        "kd6-pro-pretrain",
        "tiny-kd6",
        "kd6-sr",
        "tiny-kd6-sr",
    }
    sr = resolve_model("kd6-sr")
    assert sr.sources == {"pipeline": "kandinskylab/Kandinsky-6.0-VSR-distilled2steps-5s-Diffusers"}
    assert sr.tasks == ("vsr",) and sr.defaults["vsr"] == {"steps": 2, "scale": "2.25"}

    lite, distill = resolve_model("kd6"), resolve_model("kd6-pro-distill")
    assert lite.sources == {"pipeline": "kandinskylab/Kandinsky-6.0-Lite-5s-Diffusers"}
    assert resolve_model("kd6-pro-pretrain").sources == {
        "pipeline": "kandinskylab/Kandinsky-6.0-Pro-pretrain-5s-Diffusers"
    }
    assert lite.tasks == ("t2v", "i2v") and lite.limits == {"frames": 121, "frame_step": 4}
    wanted = {"width": 768, "height": 512, "frames": 121, "fps": 24, "steps": 50, "guidance_scale": 5.0,
              "sample_audio": True}  # fmt: skip
    assert lite.defaults["t2v"].items() >= wanted.items()
    # The distilled models run PiFlow's 10 steps without guidance, so they have no guidance to set.
    lite_distill = resolve_model("kd6-lite-distill")
    assert lite_distill.sources == {"pipeline": "kandinskylab/Kandinsky-6.0-Lite-distill-5s-Diffusers"}
    assert lite_distill.defaults["t2v"]["width"] == 768  # Lite's sizes
    for spec in (distill, lite_distill):
        assert spec.schedulers == ("PiFlow",)
        assert (spec.defaults["t2v"]["steps"], spec.defaults["t2v"]["guidance_scale"]) == (10, 1.0)
        assert {"guidance_scale", "negative_prompt"} <= set(spec.unused_params)


def test_kandinsky_5_pro_distilled_models_are_known_and_other_video_models_have_no_sound_switches():
    for task in ("t2v", "i2v"):
        spec = resolve_model(f"kd50-{task}-pro-distilled-5s")
        kind = task.upper()
        assert spec.sources == {"pipeline": f"kandinskylab/Kandinsky-5.0-{kind}-Pro-distilled-5s-Diffusers"}
        assert (spec.defaults[task]["steps"], spec.defaults[task]["guidance_scale"]) == (16, 1.0)
    for model_id in ("kd50-t2v-lite-sft-5s", "tiny-kd50-i2v", "kd40"):
        assert {"sample_audio", "expand_prompt"} <= set(resolve_model(model_id).unused_params)


# --- a video with its soundtrack -------------------------------------------------------------------
@pytest.mark.parametrize("task", ["t2v", "i2v"])
def test_a_video_carries_its_soundtrack_as_an_aac_track_and_a_wav_beside_it(engine, picture, task):
    init = {"init_image": picture} if task == "i2v" else {}
    handle = engine.run(job(task, frames=18, **init))  # 18 frames snap to 17 (4k+1)

    assert handle.state == DONE and handle.error is None
    assert any("18 frames became 17" in n for n in handle.notices)
    [result] = handle.results
    assert result.frames == 17 and len(video_frames(result.path)) == 17
    kinds = streams(result.path)
    assert [k.split(":")[0] for k in kinds] == ["Video", "Audio"]
    assert "aac" in kinds[1] and f"{SAMPLE_RATE} Hz" in kinds[1]
    seconds = 17 / 8
    assert abs(len(audio_samples(result.path)) / SAMPLE_RATE - seconds) < 0.05  # as long as the clip
    assert result.audio == result.path.with_suffix(".wav")
    assert abs(wav_seconds(result.audio) - seconds) < 0.01
    assert np.abs(audio_samples(result.audio)).max() > 0  # a sound, not silence
    meta = read_video_metadata(result.path)
    assert meta["audio"] == {"sample_rate": SAMPLE_RATE, "seconds": pytest.approx(seconds, abs=0.01)}
    assert meta["params"]["sample_audio"] is True and meta["family"] == "kd6"
    assert sorted(p.suffix for p in result.path.parent.iterdir()) == [".json", ".mp4", ".wav", ".webp"]


def test_sound_off_gives_a_silent_mp4_and_no_wav(engine):
    handle = engine.run(job(sample_audio=False))

    [result] = handle.results
    assert [k.split(":")[0] for k in streams(result.path)] == ["Video"]
    assert result.audio is None and not result.path.with_suffix(".wav").exists()
    assert result.as_json()["audio"] is None
    assert "audio" not in read_video_metadata(result.path)


def test_a_seed_gives_the_same_frames_and_the_same_sound_again(engine):
    first, again, other = (engine.run(job(seed=seed)).results[0] for seed in (7, 7, 8))

    assert np.array_equal(video_frames(first.path), video_frames(again.path))
    assert first.audio.read_bytes() == again.audio.read_bytes()
    assert not np.array_equal(video_frames(first.path), video_frames(other.path))
    assert first.audio.read_bytes() != other.audio.read_bytes()


# --- prompt expansion ------------------------------------------------------------------------------
def test_expand_prompt_makes_the_video_from_the_rewritten_prompt_and_saves_it(engine):
    plain = engine.run(job(seed=3)).results[0]
    expanded = engine.run(job(seed=3, expand_prompt=True))
    again = engine.run(job(seed=3, expand_prompt=True)).results[0]

    [result] = expanded.results
    meta = read_video_metadata(result.path)
    rewritten = meta["expanded_prompt"]
    assert rewritten and rewritten != SMALL["prompt"] and rewritten.isprintable()
    assert meta["params"]["prompt"] == SMALL["prompt"]  # the user's own prompt, to restore
    assert meta["params"]["expand_prompt"] is True
    assert result.as_json()["expanded_prompt"] == rewritten
    # The pipeline got the rewritten prompt: another video from the same seed; the rewrite is seeded too.
    assert not np.array_equal(video_frames(result.path), video_frames(plain.path))
    assert read_video_metadata(again.path)["expanded_prompt"] == rewritten
    assert np.array_equal(video_frames(result.path), video_frames(again.path))
    # Progress tells the user about the expansion, then counts the steps.
    assert expanded.total_steps == 1 + 2 and expanded.step == 3


def test_expand_prompt_for_image_to_video_sees_the_init_image(engine, picture):
    handle = engine.run(job("i2v", init_image=picture, expand_prompt=True))

    assert handle.state == DONE
    assert read_video_metadata(handle.results[0].path)["expanded_prompt"]


# --- cancel and bad input --------------------------------------------------------------------------
def test_cancel_stops_the_video_within_a_step_and_saves_nothing(engine, output_dir):
    cancel = CancelAtStep(engine, step=2)
    handle = engine.submit(job(steps=40), subscriber=cancel)
    assert handle.wait(120)

    assert handle.state == CANCELLED and handle.step == cancel.requested_at == 2
    assert (
        handle.results == [] and not list(output_dir.rglob("*.mp4")) and not list(output_dir.rglob("*.wav"))
    )


@pytest.mark.parametrize(
    ("task", "values", "message"),
    [
        ("t2v", {"width": 70}, "Width must be a multiple of 16 for video (got 70)"),
        ("t2v", {"frames": 125}, "makes at most 121 frames"),
        ("t2v", {"scheduler": "DDIM"}, "Scheduler 'DDIM' is not available for Kandinsky 6.0 Video"),
        ("i2v", {}, "Image to video needs an init image (the first frame)."),
        ("i2v", {"init_image": "/no/such/picture.png"}, "Init image"),
    ],
    ids=["width-70", "above-121-frames", "unknown-scheduler", "i2v-no-init-image", "i2v-missing-init-image"],
)  # fmt: skip
def test_bad_input_is_refused_at_submit_with_a_clear_message(engine, output_dir, task, values, message):
    with pytest.raises(InvalidParams) as refused:
        engine.submit(job(task, **values))

    assert message in str(refused.value)
    assert engine.pending() == [] and not output_dir.exists()


# --- the command line ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "user.yaml").write_text("")
    return folder


@pytest.mark.parametrize("sound", [True, False])
def test_the_command_line_reports_frames_and_the_wav_and_no_sound_makes_a_silent_video(workdir, sound):
    out = workdir / f"out-{sound}"
    done = kubin_generate(
        workdir, "--model", "tiny-kd6", "--task", "t2v", "--prompt", "waves on a beach", "--frames", "19",
        "--fps", "8", "--steps", "2", "--seed", "42", "--output-dir", str(out),
        *([] if sound else ["--no-sound"]), timeout=180,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stdout.splitlines() if text.strip()]
    assert (line["model"], line["task"], line["frames"], line["fps"]) == ("tiny-kd6", "t2v", 17, 8)
    path = Path(line["path"])
    if sound:
        assert line["audio"] == str(path.with_suffix(".wav")) and Path(line["audio"]).is_file()
        assert [k.split(":")[0] for k in streams(path)] == ["Video", "Audio"]
    else:
        assert line["audio"] is None and not path.with_suffix(".wav").exists()
        assert [k.split(":")[0] for k in streams(path)] == ["Video"]


def test_the_command_line_expands_the_prompt_and_prints_the_rewrite(workdir):
    done = kubin_generate(
        workdir, "--model", "tiny-kd6", "--task", "t2v", "--prompt", "rain", "--steps", "1", "--seed", "5",
        "--expand-prompt", "--output-dir", str(workdir / "out-expand"), timeout=180,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stdout.splitlines() if text.strip()]
    assert line["expanded_prompt"] and line["expanded_prompt"] != "rain"
    assert read_video_metadata(line["path"])["expanded_prompt"] == line["expanded_prompt"]


def test_a_saved_tiny_kd6_folder_loads_as_a_model_with_both_tasks_and_makes_sound(
    manager, tmp_path, output_dir
):
    from kubin.engine import Engine

    folder = manager.save("tiny-kd6", tmp_path / "my-kd6")
    spec = resolve_model(str(folder))
    assert (spec.family, spec.tasks, spec.defaults["t2v"]["frames"]) == ("kd6", ("t2v", "i2v"), 17)

    engine = Engine(manager, output_dir)
    try:
        handle = engine.run(Job("t2v", str(folder), {**SMALL, "expand_prompt": True}))
    finally:
        engine.close(wait=True)
    [result] = handle.results
    assert result.audio.is_file() and [k.split(":")[0] for k in streams(result.path)] == ["Video", "Audio"]
    assert read_video_metadata(result.path)["expanded_prompt"]  # the folder keeps the expansion's settings


# --- video upscale (tiny-kd6-sr) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 16x16 video of 10 frames at 8 fps with a 440 Hz tone: what a user brings to be upscaled."""
    from kubin.outputs import save_video

    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(10)]
    tone = (np.sin(np.arange(20_000) * 2 * np.pi * 440 / SAMPLE_RATE) * 0.5)[None].astype(np.float32)
    path, _ = save_video(
        frames, 8, tmp_path_factory.mktemp("clip"), "clip", {"seed": 0}, audio=(tone, SAMPLE_RATE)
    )
    return path


def upscale(**values) -> Job:
    return Job("vsr", "tiny-kd6-sr", {"steps": 2, "seed": 1, **values})


@pytest.mark.parametrize(("scale", "side"), [("2", 32), ("4", 64)])
def test_an_upscaled_video_keeps_its_frame_rate_and_sound_and_grows_by_the_scale(engine, clip, scale, side):
    handle = engine.run(upscale(init_video=str(clip), scale=scale))

    assert handle.state == DONE
    assert any("10 frames became 9" in n for n in handle.notices)  # the upscaler takes 4k+1 frames
    [result] = handle.results
    assert (result.width, result.height, result.frames, result.fps) == (side, side, 9, 8.0)
    assert video_frames(result.path).shape == (9, side, side, 3)
    assert [k.split(":")[0] for k in streams(result.path)] == ["Video", "Audio"]
    kept = audio_samples(result.audio)
    assert abs(len(kept) / SAMPLE_RATE - 20_000 / SAMPLE_RATE) < 0.01  # the source's sound, whole
    source = audio_samples(clip)  # the source mp4's own (AAC) soundtrack, as ffmpeg decodes it
    assert len(kept) == len(source) and np.abs(kept.astype(int) - source).max() <= 1
    meta = read_video_metadata(result.path)
    assert (meta["task"], meta["params"]["scale"], meta["params"]["init_video"]) == ("vsr", scale, str(clip))


def test_the_command_line_upscales_a_video_and_prints_its_frames_and_sound(workdir, clip):
    out = workdir / "out-vsr"
    done = kubin_generate(
        workdir, "--model", "tiny-kd6-sr", "--task", "vsr", "--init-video", str(clip), "--scale", "2",
        "--seed", "3", "--output-dir", str(out), timeout=180,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stdout.splitlines() if text.strip()]
    assert (line["task"], line["frames"], line["width"], line["height"]) == ("vsr", 9, 32, 32)
    assert Path(line["audio"]).is_file() and Path(line["path"]).is_relative_to(out / "vsr")


def test_bad_videos_and_scales_are_refused_at_submit_with_a_clear_message(engine, output_dir, tmp_path, clip):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    sound_only = tmp_path / "sound.mp4"  # an mp4 with no frames: a soundtrack alone
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=duration=1",
                    "-c:a", "aac", str(sound_only)], check=True)  # fmt: skip
    cases = [
        ({"init_video": str(text)}, "notes.mp4) is not a video file ffmpeg can read"),
        (
            {"init_video": str(sound_only)},
            "sound.mp4) is not a video file ffmpeg can read: it has no video stream",
        ),
        ({"init_video": str(tmp_path / "missing.mp4")}, "does not exist"),
        ({}, "Video upscale needs a video"),
        ({"init_video": str(clip), "scale": "3"}, "Scale must be one of 2, 2.25, 4 (got '3')."),
    ]
    for values, message in cases:
        with pytest.raises(InvalidParams) as refused:
            engine.submit(upscale(**values))
        assert message in str(refused.value), values
    assert engine.pending() == [] and not output_dir.exists()
