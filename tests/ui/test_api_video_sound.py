"""Kandinsky 6 through the video tabs' Gradio API (/t2v, /t2v_restore) and the native REST API
(/kubin/api/v1/tasks/i2v), on tiny-kd6: a video with its soundtrack, Sound off, Expand prompt, and the
parameters restored from the mp4."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from gradio_client import handle_file
from PIL import Image

from kubin.outputs import read_video_metadata, video_info

T2V = {
    "model_id": "tiny-kd6", "prompt": "a violinist in the rain", "negative_prompt": "", "width": 64,
    "height": 64, "frames": 17, "fps": 8, "steps": 2, "guidance_scale": 4.0, "seed": 11, "batch_count": 1,
    "scheduler": "",
}  # fmt: skip


def saved_videos(server, task: str) -> set[Path]:
    return {p for p in (server.output_dir / task).glob("*/*.mp4") if not p.name.startswith(".")}


def test_the_tab_makes_a_video_with_sound_shows_the_expanded_prompt_and_restores_the_switches(
    api_client, kubin_server
):
    before = saved_videos(kubin_server, "t2v")

    gallery, info, details = api_client.predict(
        **T2V, sample_audio=False, expand_prompt=True, api_name="/t2v"
    )

    (video,) = saved_videos(kubin_server, "t2v") - before
    assert not video.with_suffix(".wav").exists()  # Sound off
    meta = read_video_metadata(video)
    assert meta["expanded_prompt"] and meta["params"]["prompt"] == "a violinist in the rain"
    assert "Expanded prompt" in info and "With sound" not in info
    assert details["outputs"][0]["expanded_prompt"] == meta["expanded_prompt"]
    assert gallery[0]["video"].endswith(".mp4")

    restored = api_client.predict(handle_file(str(video)), api_name="/t2v_restore")

    values = [v.get("value") if isinstance(v, dict) else v for v in restored]
    assert "a violinist in the rain" in values
    assert values.count(True) >= 1 and False in values  # Expand prompt on, Sound off, as saved
    assert "Restored the parameters" in restored[-1]

    _, info, details = api_client.predict(**T2V, api_name="/t2v")  # the switches' defaults: sound, no rewrite
    assert "With sound" in info and "Expanded prompt" not in info
    wav = Path(details["outputs"][0]["audio"])
    assert wav.suffix == ".wav" and wav.is_file() and wav.with_suffix(".mp4").is_file()


def test_the_rest_api_makes_an_image_to_video_with_sound_and_serves_its_wav(http):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 160, 90)).save(buffer, format="PNG")
    reply = http.post(
        "/kubin/api/v1/tasks/i2v",
        json={"model": "tiny-kd6", "prompt": "leaves rustle", "init_image": base64.b64encode(buffer.getvalue()).decode(),
              "steps": 2, "frames": 17, "fps": 8, "seed": 4, "expand_prompt": True},
    )  # fmt: skip

    assert reply.status_code == 200, reply.text
    [result] = reply.json()["results"]
    assert result["frames"] == 17 and result["audio"].endswith(".wav") and result["expanded_prompt"]
    assert video_info(result["path"])["frames"] == 17
    sound = http.get(result["audio_url"])
    assert sound.status_code == 200 and sound.content[:4] == b"RIFF" and sound.content[8:12] == b"WAVE"


def test_the_rest_api_upscales_a_sent_video_keeping_its_sound_and_reads_no_server_path(http, tmp_path):
    import numpy as np

    from kubin.outputs import save_video

    rng = np.random.default_rng(2)
    frames = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(9)]
    tone = (np.sin(np.arange(18_000) * 2 * np.pi * 440 / 16_000) * 0.5)[None].astype(np.float32)
    clip, _ = save_video(frames, 8, tmp_path, "clip", {"seed": 0}, audio=(tone, 16_000))

    reply = http.post(
        "/kubin/api/v1/tasks/vsr",
        json={
            "model": "tiny-kd6-sr",
            "init_video": base64.b64encode(clip.read_bytes()).decode(),
            "scale": "2",
        },
    )
    refused = http.post("/kubin/api/v1/tasks/vsr", json={"model": "tiny-kd6-sr", "init_video": str(clip)})

    assert reply.status_code == 200, reply.text
    [result] = reply.json()["results"]
    assert (result["task"], result["frames"], result["width"], result["height"]) == ("vsr", 9, 32, 32)
    assert http.get(result["audio_url"]).content[:4] == b"RIFF"
    assert refused.status_code == 422 and "server paths and other URLs are not read" in refused.text
