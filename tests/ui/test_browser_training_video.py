"""The Training tab in Chromium with a folder of short clips: the text-to-video model's check names the clips
and their frames, a short run shows its loss plot and its samples as videos, and ends with the adapter in the
LoRA folder (the browser plays the sample videos); on a phone the tab with its video samples stays within the screen."""

from __future__ import annotations

import pytest
from browser_helpers import open_tab
from playwright.sync_api import expect
from training_helpers import fill, make_clips, no_trace_of_training

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
RUN_TIMEOUT_MS = 240_000


@pytest.fixture(autouse=True)
def leaves_no_adapter(kubin_server):
    with no_trace_of_training(kubin_server):
        yield


def test_a_video_run_from_the_tab_shows_video_samples_on_a_desktop_and_a_phone(
    new_page, kubin_server, tmp_path, artifacts_dir
):
    clips = make_clips(tmp_path / "clips")
    page = new_page("/", viewport=DESKTOP)
    open_tab(page, "Training")
    page.locator("#train-model input").click()
    page.get_by_role("option", name="tiny-kd50-t2v", exact=True).click()
    expect(page.locator("#train-model input")).to_have_value("tiny-kd50-t2v")
    expect(page.locator("#train-target input")).to_have_value("transformer")
    fill(page, "data", str(clips))
    fill(page, "output", "ui-boxes")
    fill(page, "steps", "4")
    page.locator("#train-options").get_by_text("Options").click()
    fill(page, "frames", "5")
    fill(page, "fps", "8")
    fill(page, "rank", "2")
    fill(page, "sample-every", "2")
    fill(page, "sample-prompts", "a box sliding")
    expect(page.locator("#train-fps input")).to_have_value("8")
    page.locator("#train-check").click()
    # The first check imports diffusers' training helpers (seconds on a busy machine).
    expect(page.locator("#train-report")).to_contain_text(
        "3 clip(s) of 5 frames at 8 fps in buckets 64×64: 3", timeout=90_000
    )
    page.locator("#train-start").click()
    expect(page.locator("#train-status")).to_contain_text(
        "Done: ui-boxes.safetensors", timeout=RUN_TIMEOUT_MS
    )
    assert (kubin_server.lora_dir / "ui-boxes.safetensors").is_file()
    expect(page.locator("#train-loss canvas, #train-loss svg").first).to_be_visible()
    videos = page.locator("#train-samples video")
    expect(videos).to_have_count(2)  # steps 2 and 4
    assert all(src.endswith(".mp4") for src in videos.evaluate_all("vs => vs.map(v => v.src)"))
    # The browser plays them: 5 frames at 8 fps last 0.625 s.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#train-samples video')].every(v => Math.abs(v.duration - 0.625) < 0.1)"
    )
    page.screenshot(path=artifacts_dir / "ui-training-video-desktop.png", full_page=True)

    page.set_viewport_size(PHONE)
    for name in ("model", "data", "frames", "fps", "start", "loss", "samples"):
        box = page.locator(f"#train-{name}").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, name
    sample = videos.first.bounding_box()
    assert sample and sample["x"] >= 0 and sample["x"] + sample["width"] <= PHONE["width"] + 0.5
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=artifacts_dir / "ui-training-video-phone.png", full_page=True)
