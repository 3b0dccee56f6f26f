"""Training through Kubin's API on the shared server: a run is started with a folder of pictures, watched
(state, losses, samples; and as a stream of events) until its adapter is in the LoRA list, and a long run is
cancelled with a checkpoint that Resume can go on from; a mistake answers 422 with its reason; a video model's run
on short clips reports its clips and serves its samples as mp4 videos."""

from __future__ import annotations

import json

import pytest
from training_helpers import make_clips, make_pictures

RUNS = "/kubin/api/v1/training"


@pytest.fixture(autouse=True)
def leaves_no_adapter(http, kubin_server):
    """The shared server's LoRA folder as it was: other test files list it."""
    before = set(kubin_server.lora_dir.rglob("*.safetensors"))
    yield
    for path in set(kubin_server.lora_dir.rglob("*.safetensors")) - before:
        path.unlink()
    http.post("/sdapi/v1/refresh-loras")


BODY = {"model": "tiny-kd22", "resolution": 64, "rank": 2, "target_modules": ["to_q", "to_v"]}


def test_a_run_is_started_watched_streamed_and_its_adapter_listed(http, tmp_path):
    pictures = make_pictures(tmp_path / "pictures")
    body = {**BODY, "data": str(pictures), "output": "api-squares", "steps": 4, "sample_every": 2,
            "sample_prompts": ["a square"], "trigger": "apisq"}  # fmt: skip
    started = http.post(RUNS, json=body)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert started.json()["dataset"]["images"] == 8
    with http.stream("GET", f"{RUNS}/{run_id}/events") as stream:
        events = [json.loads(line) for line in stream.iter_lines() if line]
    assert [e["step"] for e in events if e["kind"] == "step"] == [1, 2, 3, 4]
    assert events[-1]["kind"] == "finished" and events[-1]["state"] == "done"
    done = http.get(f"{RUNS}/{run_id}", params={"wait": 60}).json()
    assert done["state"] == "done" and len(done["losses"]) == 4
    assert done["path"].endswith("api-squares.safetensors")
    assert [s["step"] for s in done["samples"]] == [2, 4]
    sample = http.get(f"{RUNS}/{run_id}/samples/0")
    assert sample.status_code == 200 and sample.content[:4] == b"\x89PNG"
    listed = {lora["name"]: lora for lora in http.get("/kubin/api/v1/loras").json()}
    assert listed["api-squares"]["part"] == "decoder" and listed["api-squares"]["triggers"] == ["apisq"]
    made = http.post("/kubin/api/v1/tasks/t2i", json={"prompt": "apisq", "steps": 2, "prior_steps": 2,
                     "width": 64, "height": 64, "loras": ["api-squares"]})  # fmt: skip
    assert made.status_code == 200 and made.json()["state"] == "done", made.text


def test_a_long_run_is_cancelled_with_a_checkpoint_and_a_mistake_answers_422(http, tmp_path):
    pictures = make_pictures(tmp_path / "pictures")
    started = http.post(RUNS, json={**BODY, "data": str(pictures), "output": "api-long", "steps": 5000})
    run_id = started.json()["id"]
    with http.stream("GET", f"{RUNS}/{run_id}/events") as stream:
        for line in stream.iter_lines():
            if line and json.loads(line)["kind"] == "step":
                break
    cancelled = http.post(f"{RUNS}/{run_id}/cancel").json()
    assert cancelled["state"] == "cancelled" and "Resume goes on from there" in cancelled["error"]
    assert "api-long" in http.get(f"{RUNS}/resumable").json()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = http.post(RUNS, json={**BODY, "data": str(empty), "output": "x", "steps": 2})
    assert refused.status_code == 422 and "is empty; put pictures" in refused.json()["detail"]
    unknown = http.post(RUNS, json={**BODY, "data": str(pictures), "output": "x", "optimiser": "adamw"})
    assert unknown.status_code == 422


def test_a_video_run_on_clips_answers_with_its_clips_and_an_mp4_sample(http, tmp_path):
    clips = make_clips(tmp_path / "clips")
    body = {"model": "tiny-kd50-t2v", "data": str(clips), "output": "api-boxes", "steps": 2, "frames": 5,
            "fps": 8, "rank": 2, "sample_every": 2, "sample_prompts": ["a box"]}  # fmt: skip
    started = http.post(RUNS, json=body)
    assert started.status_code == 202, started.text
    assert started.json()["dataset"] | {"folder": "", "dataset_hash": ""} == {
        "folder": "", "clips": 3, "skipped": [], "buckets": [{"width": 64, "height": 64, "clips": 3}],
        "dataset_hash": "", "frames": 5, "fps": 8.0, "frame_buckets": [{"frames": 5, "clips": 3}]}  # fmt: skip
    done = http.get(f"{RUNS}/{started.json()['id']}", params={"wait": 300}).json()
    assert done["state"] == "done" and done["path"].endswith("api-boxes.safetensors"), done
    sample = http.get(f"{RUNS}/{done['id']}/samples/0")
    assert sample.status_code == 200 and sample.headers["content-type"] == "video/mp4"
    assert sample.content[4:8] == b"ftyp"  # an mp4
    odd = http.post(RUNS, json={**body, "output": "x", "frames": 6})
    assert odd.status_code == 422 and "frames must be 1 more than a multiple of 4" in odd.json()["detail"]
