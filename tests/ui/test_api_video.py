"""The video tabs through their Gradio API (/t2v, /i2v, /t2v_restore) on the tiny Kandinsky 5 models: an mp4
with the asked frames, size and frame rate is saved and shown; user mistakes come back as clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from kubin.outputs import read_video_metadata, video_info

JOB_TIMEOUT_S = 90
T2V = {
    "model_id": "tiny-kd50-t2v", "prompt": "a paper boat on a river", "negative_prompt": "", "width": 64,
    "height": 64, "frames": 17, "fps": 8, "steps": 2, "guidance_scale": 4.0, "seed": 7, "batch_count": 1,
    "scheduler": "",
}  # fmt: skip


def saved_videos(server, task: str) -> set[Path]:
    return {p for p in (server.output_dir / task).glob("*/*.mp4") if not p.name.startswith(".")}


def test_text_to_video_saves_an_mp4_with_the_asked_frames_size_and_rate(api_client, kubin_server):
    before = saved_videos(kubin_server, "t2v")

    gallery, info, details = api_client.predict(**(T2V | {"frames": 21, "width": 128}), api_name="/t2v")

    new = saved_videos(kubin_server, "t2v") - before
    assert len(new) == 1
    video = new.pop()
    assert video_info(video) == {"frames": 21, "width": 128, "height": 64, "fps": 8.0}
    assert video.with_suffix(".webp").is_file()  # the preview beside it
    meta = read_video_metadata(video)
    assert (meta["params"]["prompt"], meta["seed"], meta["model"]) == (
        "a paper boat on a river",
        7,
        "tiny-kd50-t2v",
    )
    # The gallery plays the video the server saved; the info line says what it is.
    assert len(gallery) == 1 and gallery[0]["video"].endswith(".mp4")
    assert "1 of 1 video(s)" in info and "21 frames at 8 fps, 128x64" in info
    assert details["outputs"][0]["file"] == str(video) and details["outputs"][0]["frames"] == 21


def test_frames_off_the_models_step_are_snapped_and_the_user_is_told(api_client, kubin_server):
    before = saved_videos(kubin_server, "t2v")

    _, info, _ = api_client.predict(**(T2V | {"frames": 19}), api_name="/t2v")

    (video,) = saved_videos(kubin_server, "t2v") - before
    assert video_info(video)["frames"] == 17
    assert "19 frames became 17" in info


def test_image_to_video_starts_from_the_uploaded_picture(api_client, kubin_server, tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (128, 64), (200, 30, 30)).save(wide)
    before = saved_videos(kubin_server, "i2v")

    _, info, details = api_client.predict(
        model_id="tiny-kd50-i2v", init_image=handle_file(str(wide)), prompt="the boat sails away",
        negative_prompt="", width=64, height=64, frames=17, fps=8, steps=2, guidance_scale=4.0, seed=3,
        batch_count=1, scheduler="", api_name="/i2v",
    )  # fmt: skip

    (video,) = saved_videos(kubin_server, "i2v") - before
    assert video_info(video)["frames"] == 17
    assert "centre-cropped" in info  # a 2:1 picture into a square video
    meta = read_video_metadata(video)
    assert meta["inputs"]["init_image"].startswith("inputs/")
    assert (kubin_server.output_dir / meta["inputs"]["init_image"]).is_file()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"width": 70}, "multiple of 16"),
        ({"frames": 0}, "less than minimum value 1"),  # the slider itself refuses it
        ({"frames": 125}, "at most 121 frames"),
    ],
)
def test_bad_video_settings_are_refused_with_a_clear_message(api_client, change, message):
    with pytest.raises(AppError, match=message):
        api_client.predict(**(T2V | change), api_name="/t2v")


def test_image_to_video_without_a_picture_says_what_is_missing(api_client):
    with pytest.raises(AppError, match="needs an init image"):
        api_client.predict(
            model_id="tiny-kd50-i2v", init_image=None, prompt="x", negative_prompt="", width=64, height=64,
            frames=17, fps=8, steps=2, guidance_scale=4.0, seed=1, batch_count=1, scheduler="", api_name="/i2v",
        )  # fmt: skip


def test_restoring_from_a_video_brings_back_its_settings(api_client, kubin_server):
    before = saved_videos(kubin_server, "t2v")
    api_client.predict(**(T2V | {"prompt": "a lighthouse at dusk", "fps": 12, "seed": 99}), api_name="/t2v")
    (video,) = saved_videos(kubin_server, "t2v") - before

    restored = api_client.predict(handle_file(str(video)), api_name="/t2v_restore")

    # Each widget comes back as an update carrying its restored value.
    values = [v.get("value") if isinstance(v, dict) else v for v in restored]
    assert "a lighthouse at dusk" in values
    assert 12 in values and 99 in values
    assert "Restored the parameters" in restored[-1]
