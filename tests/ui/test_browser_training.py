"""The Training tab in Chromium: a short run started from the tab shows its loss plot and a sample image
and ends with the adapter in the LoRA folder; a long run's Cancel stops it and its name is offered to
Resume, and the new adapter is in the text-to-image tab's LoRA picker; on a phone the tab's fields and buttons stay within the screen."""

from __future__ import annotations

import re

import pytest
from browser_helpers import open_tab
from playwright.sync_api import expect
from training_helpers import fill, make_pictures, no_trace_of_training

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
RUN_TIMEOUT_MS = 180_000


@pytest.fixture(autouse=True)
def leaves_no_adapter(kubin_server):
    with no_trace_of_training(kubin_server):
        yield


def test_a_run_from_the_tab_shows_the_loss_plot_and_samples_and_cancel_offers_resume(
    new_page, kubin_server, tmp_path, artifacts_dir
):
    pictures = make_pictures(tmp_path / "pictures")
    page = new_page("/", viewport=DESKTOP)
    open_tab(page, "Training")
    expect(page.locator("#train-model input")).to_have_value("tiny-kd22")
    expect(page.locator("#train-target input")).to_have_value("decoder")
    fill(page, "data", str(pictures))
    fill(page, "output", "ui-squares")
    fill(page, "steps", "6")
    page.locator("#train-options").get_by_text("Options").click()
    fill(page, "resolution", "64")
    expect(page.locator("#train-resolution input")).to_have_value("64")
    fill(page, "rank", "2")
    fill(page, "sample-every", "3")
    fill(page, "sample-prompts", "a square")
    page.locator("#train-check").click()
    # The first check imports diffusers' training helpers (seconds on a busy machine).
    expect(page.locator("#train-report")).to_contain_text("8 picture(s) in buckets 64×64: 8", timeout=90_000)
    page.locator("#train-start").click()
    expect(page.locator("#train-status")).to_contain_text(
        "Done: ui-squares.safetensors", timeout=RUN_TIMEOUT_MS
    )
    assert (kubin_server.lora_dir / "ui-squares.safetensors").is_file()
    expect(page.locator("#train-loss canvas, #train-loss svg").first).to_be_visible()
    expect(page.locator("#train-samples img")).to_have_count(2)  # steps 3 and 6
    expect(page.locator("#train-cancel")).to_be_disabled()
    expect(page.locator("#train-resolution input")).to_have_value("64")
    page.screenshot(path=artifacts_dir / "ui-training-desktop.png", full_page=True)

    fill(page, "output", "ui-long")
    fill(page, "steps", "5000")
    fill(page, "sample-every", "0")
    page.locator("#train-start").click()
    expect(page.locator("#train-status")).to_contain_text(
        re.compile(r"Step \d+/5000"), timeout=RUN_TIMEOUT_MS
    )
    expect(page.locator("#train-cancel")).to_be_enabled()
    page.wait_for_timeout(1500)  # a few plot updates
    # A page redrawing its plot twice a second waits long for a screenshot on a busy machine.
    page.screenshot(path=artifacts_dir / "ui-training-running-desktop.png", full_page=True, timeout=90_000)
    page.locator("#train-cancel").click(timeout=90_000)  # (the same: a click waited over 30 s under load)
    expect(page.locator("#train-status")).to_contain_text(
        "Cancelled: Training stopped at step", timeout=60_000
    )
    page.locator("#train-resumable input").click()
    expect(page.get_by_role("option", name="ui-long")).to_be_visible()
    page.keyboard.press("Escape")
    open_tab(page, "Text to image")  # the new adapter is in the picker without a refresh
    page.locator("#t2i-loras input").click()
    expect(
        page.get_by_role("option", name=re.compile(r"^ui-squares \(decoder UNet, rank 2\)"))
    ).to_be_visible()


def test_on_a_phone_the_training_tab_fits_the_screen(new_page, artifacts_dir):
    page = new_page("/", viewport=PHONE)
    open_tab(page, "Training")
    page.locator("#train-options").get_by_text("Options").click()
    for name in ("model", "data", "output", "steps", "start", "cancel", "resume", "loss", "samples"):
        box = page.locator(f"#train-{name}").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, name
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=artifacts_dir / "ui-training-phone.png", full_page=True)
