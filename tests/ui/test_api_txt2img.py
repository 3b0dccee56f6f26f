"""The text-to-image tab through its Gradio API (/txt2img, /t2i_cancel), as a script or another app uses it."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest
from gradio_client.exceptions import AppError
from PIL import Image

JOB_TIMEOUT_S = 60


def txt2img_args(**changes) -> list:
    """The /txt2img inputs in the API's order; tiny-kd22, 64x64 and few steps unless changed."""
    args = {
        "model_id": "tiny-kd22", "prompt": "a red cat", "negative_prompt": "", "width": 64, "height": 64,
        "steps": 2, "guidance_scale": 4.0, "prior_steps": 2, "prior_guidance_scale": 4.0, "seed": 42,
        "batch_count": 1, "batch_size": 1, "scheduler": "",
    }  # fmt: skip
    unknown = set(changes) - set(args)
    assert not unknown, f"not /txt2img inputs: {unknown}"
    return list((args | changes).values())


def run_txt2img(client, **changes):
    """Run a job to the end; returns (gallery, info markdown, details JSON)."""
    job = client.submit(*txt2img_args(**changes), api_name="/txt2img")
    return job.result(timeout=JOB_TIMEOUT_S)


def today_folders() -> set[str]:
    """Today's date folder name, and yesterday's in case the test runs across midnight."""
    today = dt.date.today()
    return {today.isoformat(), (today - dt.timedelta(days=1)).isoformat()}


def test_generates_a_gallery_of_saved_images_with_their_seeds(api_client, kubin_server):
    gallery, info, details = run_txt2img(api_client, prompt="a red cat", seed=42, batch_count=2)

    assert len(gallery) == 2
    assert [item["caption"] for item in gallery] == ["seed 42", "seed 43"]
    for item in gallery:
        with Image.open(item["image"]) as image:
            assert (image.format, image.size) == ("PNG", (64, 64))
    assert "seeds 42, 43" in info
    assert "2 of 2 image(s)" in info

    assert details["seed"] == 42
    assert details["state"] == "done"
    assert details["params"]["prompt"] == "a red cat"
    files = [Path(out["file"]) for out in details["outputs"]]
    assert [out["seed"] for out in details["outputs"]] == [42, 43]
    output_root = kubin_server.output_dir.resolve()
    for path in files:
        assert path.is_file()
        assert path.resolve().parent.parent == output_root / "t2i"
        assert path.parent.name in today_folders()
    # <counter>-<seed>.png, the second image numbered right after the first
    first, second = (re.fullmatch(r"(\d{5})-(\d+)\.png", p.name) for p in files)
    assert first and second, [p.name for p in files]
    assert (first[2], second[2]) == ("42", "43")
    assert int(second[1]) == int(first[1]) + 1
    assert f"Saved in `{files[0].parent}`" in info

    with Image.open(files[0]) as saved:
        assert saved.size == (64, 64)
        parameters = saved.text["parameters"]
    assert parameters.startswith("a red cat\n")
    assert "Seed: 42" in parameters
    assert "Size: 64x64" in parameters
    assert "Model: tiny-kd22" in parameters


def test_bad_width_is_reported_and_the_app_keeps_working(api_client, kubin_server):
    before = kubin_server.saved_images()

    with pytest.raises(AppError) as raised:
        run_txt2img(api_client, width=100)

    message = raised.value.message
    assert "Width must be a multiple of 64" in message
    assert "got 100" in message
    assert kubin_server.saved_images() == before, "a rejected job must not save anything"

    gallery, info, details = run_txt2img(api_client, seed=7)
    assert len(gallery) == 1
    assert details["state"] == "done"
    assert "seeds 7" in info


def test_random_seed_is_reported_as_the_concrete_seed_used(api_client):
    gallery, info, details = run_txt2img(api_client, seed=-1)

    seed = details["seed"]
    assert isinstance(seed, int)
    assert 0 <= seed <= 2**32 - 1
    assert details["params"]["seed"] == seed
    assert details["outputs"][0]["seed"] == seed
    assert Path(details["outputs"][0]["file"]).name.endswith(f"-{seed}.png")
    assert f"seeds {seed}" in info
    assert gallery[0]["caption"] == f"seed {seed}"


def test_cancel_stops_the_job_and_keeps_the_finished_images(api_client, kubin_server):
    before = kubin_server.saved_images()
    # 400 steps is a few seconds per image on a CPU: long enough to cancel between images.
    job = api_client.submit(
        *txt2img_args(prompt="a slow snail", steps=400, prior_steps=2, batch_count=3, seed=1000),
        api_name="/txt2img",
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not (kubin_server.saved_images() - before):
        assert time.monotonic() < deadline, "no image was saved in time"
        assert not job.done(), f"the job ended before its first image was seen: {job.status()}"
        time.sleep(0.05)

    # Same Client, so the same session hash: the per-session cancel finds this client's job.
    asked = time.monotonic()
    reply = api_client.predict(api_name="/t2i_cancel")
    gallery, info, details = job.result(timeout=JOB_TIMEOUT_S)
    took = time.monotonic() - asked

    assert reply == "Cancel requested: the job stops after the step under way."
    assert took < 10, f"the job took {took:.1f} s to stop after cancel"
    kept = kubin_server.saved_images() - before
    assert 1 <= len(kept) < 3
    assert details["state"] == "cancelled"
    assert len(gallery) == len(details["outputs"]) == len(kept)
    assert {Path(out["file"]).resolve() for out in details["outputs"]} == {p.resolve() for p in kept}
    assert f"Cancelled after {len(kept)} of 3 image(s)" in info


def test_cancel_with_nothing_running_says_so(api_client):
    assert api_client.predict(api_name="/t2i_cancel") == "Nothing to cancel."
