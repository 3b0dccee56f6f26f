"""Saved videos: where they land, how they are named, the preview beside them, and the parameters they
carry in a sidecar and inside the mp4, read back even when the sidecar is lost."""

import datetime as dt
import json
import os
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from kubin.errors import InvalidParams, KubinError
from kubin.outputs import read_video_metadata, save_video, video_frame, video_info, video_tags

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (40, 220, 220)]


def clip(size=(64, 48), colours=COLOURS) -> list[Image.Image]:
    """One flat colour per frame, so that every frame can be recognised after lossy encoding."""
    return [Image.new("RGB", size, colour) for colour in colours]


def metadata(seed=3, prompt="a red cat"):
    return {
        "task": "t2v",
        "model": "tiny-kd50-t2v",
        "seed": seed,
        "frames": len(COLOURS),
        "fps": 8,
        "params": {"prompt": prompt, "steps": 2, "seed": seed},
    }


def folder_of(root: Path, task: str = "t2v") -> Path:
    return root / task / dt.date.today().isoformat()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def mean_colour(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).reshape(-1, 3).mean(axis=0)


def test_a_video_lands_in_a_dated_task_folder_with_its_sidecar_and_preview(tmp_path):
    path, preview = save_video(clip(), 8, tmp_path, "t2v", metadata(seed=3))

    folder = folder_of(tmp_path)
    assert (path, preview) == (folder / "00001-3.mp4", folder / "00001-3.webp")
    assert names(folder) == ["00001-3.json", "00001-3.mp4", "00001-3.webp"]
    assert video_info(path) == {"frames": 5, "width": 64, "height": 48, "fps": 8.0}
    with Image.open(preview) as animation:
        assert animation.format == "WEBP" and animation.is_animated
        assert (animation.n_frames, animation.size) == (5, (64, 48))
        animation.load()
        assert animation.info["duration"] == 125  # 8 frames per second


def test_the_preview_is_small_even_for_a_large_video(tmp_path):
    _, preview = save_video(clip(size=(768, 512), colours=COLOURS[:2]), 24, tmp_path, "t2v", metadata())

    with Image.open(preview) as animation:
        assert animation.size == (384, 256)  # at most 384 per side, same aspect ratio


def test_without_a_preview_only_the_video_and_its_sidecar_are_written(tmp_path):
    path, preview = save_video(clip(), 8, tmp_path, "t2v", metadata(seed=4), preview=False)

    assert preview is None
    assert names(folder_of(tmp_path)) == ["00001-4.json", "00001-4.mp4"]


def test_counters_increase_and_continue_after_the_highest_file_already_there(tmp_path):
    first, _ = save_video(clip(), 8, tmp_path, "t2v", metadata(seed=42))
    second, _ = save_video(clip(), 8, tmp_path, "t2v", metadata(seed=7))
    (folder_of(tmp_path) / "00041-1.png").write_bytes(b"")
    third, _ = save_video(clip(), 8, tmp_path, "t2v", metadata(seed=42))

    assert [first.name, second.name, third.name] == ["00001-42.mp4", "00002-7.mp4", "00042-42.mp4"]


def test_every_frame_comes_back_in_order_and_a_negative_index_counts_from_the_end(tmp_path):
    path, _ = save_video(clip(), 8, tmp_path, "t2v", metadata())

    for index, colour in enumerate(COLOURS):
        assert np.abs(mean_colour(video_frame(path, index)) - colour).max() < 8, index
    assert np.array_equal(np.asarray(video_frame(path, -1)), np.asarray(video_frame(path, 4)))
    assert np.array_equal(np.asarray(video_frame(path, -5)), np.asarray(video_frame(path, 0)))
    assert video_frame(path).size == (64, 48)


@pytest.mark.parametrize("index", [5, -6])
def test_a_frame_past_either_end_is_a_clear_error(tmp_path, index):
    path, _ = save_video(clip(), 8, tmp_path, "t2v", metadata())

    with pytest.raises(InvalidParams, match="The video has no frame"):
        video_frame(path, index)


def test_a_frame_before_the_start_is_reported_by_the_index_asked_for(tmp_path):
    path, _ = save_video(clip(), 8, tmp_path, "t2v", metadata())

    with pytest.raises(InvalidParams, match="no frame -6"):
        video_frame(path, -6)


def test_metadata_reads_back_from_the_sidecar_and_from_the_mp4_comment_tag_when_the_sidecar_is_lost(tmp_path):
    # The comment tag's text format escapes =, ;, #, backslashes and newlines: all must come back as written.
    prompt = "a red cat\nsecond line = more; #not a comment \\ back-slash — ünïcode 猫"
    meta = metadata(prompt=prompt)
    path, _ = save_video(clip(), 8, tmp_path, "t2v", meta)

    assert json.loads(path.with_suffix(".json").read_text(encoding="utf-8")) == meta
    assert read_video_metadata(path) == meta
    path.with_suffix(".json").unlink()  # the video copied on its own
    assert read_video_metadata(path) == meta
    assert json.loads(video_tags(path)["comment"])["params"]["prompt"] == prompt


def test_a_damaged_sidecar_falls_back_to_the_copy_inside_the_video(tmp_path):
    meta = metadata(seed=9)
    path, _ = save_video(clip(), 8, tmp_path, "t2v", meta)
    path.with_suffix(".json").write_text("{not json", encoding="utf-8")

    assert read_video_metadata(path) == meta


def test_a_video_made_elsewhere_has_no_generation_parameters(tmp_path):
    path = tmp_path / "camera.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (64, 48), fps=8, ffmpeg_log_level="error")
    writer.send(None)
    for frame in clip():
        writer.send(np.asarray(frame))
    writer.close()

    with pytest.raises(InvalidParams, match="carries no generation parameters"):
        read_video_metadata(path)
    assert video_info(path)["frames"] == 5


def test_a_file_that_is_not_a_video_or_is_missing_gives_a_clear_error(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video", encoding="utf-8")

    with pytest.raises(InvalidParams, match="Could not read the video file"):
        read_video_metadata(text)
    with pytest.raises(InvalidParams, match="not found"):
        read_video_metadata(tmp_path / "missing.mp4")


@pytest.mark.parametrize("read", [video_info, video_frame], ids=["video_info", "video_frame"])
def test_reading_frames_of_a_file_that_is_not_a_video_gives_a_clear_error(tmp_path, read):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video", encoding="utf-8")

    with pytest.raises(InvalidParams):
        read(text)


def test_saving_leaves_no_temporary_files_behind(tmp_path):
    for seed in range(3):
        save_video(clip(), 8, tmp_path, "t2v", metadata(seed=seed))

    assert not [n for n in names(folder_of(tmp_path)) if n.startswith(".tmp-")]
    assert len(names(folder_of(tmp_path))) == 9  # mp4, json and webp for each


def test_a_video_without_frames_is_refused_and_leaves_nothing(tmp_path):
    with pytest.raises(InvalidParams, match="no frames"):
        save_video([], 8, tmp_path, "t2v", metadata())

    assert names(folder_of(tmp_path)) == []


def test_when_ffmpeg_stops_while_encoding_nothing_is_left_behind(tmp_path, monkeypatch):
    import imageio_ffmpeg._io

    # An "ffmpeg" that exits at once: writing a long clip to it breaks the pipe.
    monkeypatch.setattr(imageio_ffmpeg._io, "get_ffmpeg_exe", lambda: "/bin/false")
    frames = clip(size=(512, 512)) * 4

    with pytest.raises(OSError):
        save_video(frames, 8, tmp_path, "t2v", metadata())

    assert names(folder_of(tmp_path)) == []


@pytest.mark.parametrize("odd_size", [(32, 32), (128, 128)], ids=["smaller", "larger"])
def test_frames_of_different_sizes_are_refused_and_leave_nothing(tmp_path, odd_size):
    frames = clip(size=(64, 64), colours=COLOURS[:2]) + [Image.new("RGB", odd_size, (0, 0, 0))]

    with pytest.raises((KubinError, ValueError, OSError)):
        save_video(frames, 8, tmp_path, "t2v", metadata())

    assert names(folder_of(tmp_path)) == []


def test_a_frame_rate_ffmpeg_refuses_fails_instead_of_saving_an_empty_video(tmp_path):
    with pytest.raises((KubinError, ValueError, OSError)):
        save_video(clip(), -1, tmp_path, "t2v", metadata())

    assert names(folder_of(tmp_path)) == []


def test_a_preview_that_cannot_be_made_leaves_no_temporary_file(tmp_path):
    with pytest.raises((KubinError, ValueError, ArithmeticError)):
        save_video(clip(), 0, tmp_path, "t2v", metadata())

    assert [n for n in names(folder_of(tmp_path)) if n.startswith(".tmp-")] == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc")
def test_saving_videos_leaves_no_file_open(tmp_path):
    save_video(clip(), 8, tmp_path, "t2v", metadata(seed=0))  # any one-time setup happens here
    before = len(os.listdir("/proc/self/fd"))

    for seed in range(1, 6):
        save_video(clip(), 8, tmp_path, "t2v", metadata(seed=seed))

    assert len(os.listdir("/proc/self/fd")) == before
