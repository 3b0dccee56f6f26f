"""The video tabs as a user sees them in Chromium: a video that plays in the results, one of its frames sent
on to image to image, and a tab that hides what the chosen model does not use."""

from __future__ import annotations

import re

import pytest
from browser_helpers import open_tab
from cli_helpers import kubin_server
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

VIDEO_TIMEOUT_MS = 60_000


def choose_model(page, elem_id: str, model_id: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(model_id)
    page.get_by_role("option", name=re.compile(f"^{re.escape(model_id)} ")).click()


def test_make_a_video_watch_it_and_send_its_last_frame_to_image_to_image(
    new_page, kubin_server, artifacts_dir
):
    page = new_page("/")
    open_tab(page, "Text to video")
    choose_model(page, "t2v-model", "tiny-kd50-t2v")
    page.locator("#t2v-prompt textarea").fill("a kite over the sea")
    page.locator("#t2v-frames input[type=number]").fill("17")
    page.locator("#t2v-generate").click()

    video = page.locator("#t2v-gallery video").first
    expect(video).to_be_attached(timeout=VIDEO_TIMEOUT_MS)
    # The browser could load and decode the mp4: it knows its length (17 frames at 8 fps, about 2 s).
    page.wait_for_function(
        "() => { const v = document.querySelector('#t2v-gallery video'); return v && v.duration > 1.5; }",
        timeout=VIDEO_TIMEOUT_MS,
    )
    expect(page.locator("#t2v-info")).to_contain_text("17 frames at 8 fps, 64x64")
    page.screenshot(path=artifacts_dir / "ui-t2v-result.png", full_page=True)

    page.locator("#t2v-send-i2i").click()

    expect(page.get_by_role("tab", name="Image to image", exact=True)).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.locator("#i2i-init-image img").first).to_be_visible(timeout=15_000)
    expect(page.locator("#i2i-prompt textarea")).to_have_value("a kite over the sea")
    frames = list(kubin_server.output_dir.glob("t2v/*/*-frame16.png"))
    assert frames, "the last frame (16) was saved beside the video"


def test_a_model_without_a_prior_hides_the_prior_controls(new_page):
    page = new_page("/")
    expect(page.locator("#prior-steps")).to_be_visible()

    choose_model(page, "t2i-model", "tiny-kd50-t2i")

    expect(page.locator("#prior-steps")).to_be_hidden()
    expect(page.locator("#t2i-negative-prior-prompt")).to_be_hidden()
    choose_model(page, "t2i-model", "tiny-kd22")
    expect(page.locator("#prior-steps")).to_be_visible()


def frames_range(page) -> tuple[str, str, str]:
    """The Frames slider's (least, most, step), as its box and its end labels show them."""
    box = page.locator("#t2v-frames input[type=number]")
    labels = (page.locator("#t2v-frames [data-testid=min-value]").inner_text(),
              page.locator("#t2v-frames [data-testid=max-value]").inner_text())  # fmt: skip
    assert labels == (box.get_attribute("min"), box.get_attribute("max")), labels
    return box.get_attribute("min"), box.get_attribute("max"), box.get_attribute("step")


def type_number(page, selector: str, value: int):
    box = page.locator(selector)
    box.fill(str(value))
    box.press("Tab")
    return box


def test_widgets_take_their_range_and_step_from_the_model_and_snap_what_is_typed(new_page):
    page = new_page("/")
    # A width is a multiple of 64 for the image models: 100 would be refused at Generate.
    expect(type_number(page, "#width input[type=number]", 100)).to_have_value("128")
    open_tab(page, "Text to video")
    expect(page.locator("#t2v-model input")).to_have_value(re.compile(r"^tiny-kd50-t2v "))
    expect(page.locator("#t2v-frames input[type=number]")).to_have_attribute("max", "121")
    assert frames_range(page) == ("17", "121", "4")  # the model's 17 to 121 frames of 4k+1, not 1 to 481

    choose_model(page, "t2v-model", "tiny-kd40")

    expect(page.locator("#t2v-frames input[type=number]")).to_have_attribute("max", "97")
    assert frames_range(page) == ("1", "97", "8")  # Kandinsky 4: at most 97 frames, 8k+1
    expect(type_number(page, "#t2v-frames input[type=number]", 100)).to_have_value("97")
    expect(type_number(page, "#t2v-frames input[type=number]", 30)).to_have_value("33")


def test_started_on_a_video_model_the_page_opens_on_text_to_video(browser, tmp_path):
    """A new install starts on Kandinsky 5 Lite T2V: the first thing the user sees is its tab."""
    with kubin_server(
        tmp_path, "--model", "tiny-kd50-t2v", "--output-dir", str(tmp_path / "out"), timeout=90
    ) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url + "/")

        expect(page.locator("#t2v-prompt textarea")).to_be_visible(timeout=30_000)
        expect(page.get_by_role("tab", name="Text to video", exact=True)).to_have_attribute(
            "aria-selected", "true"
        )
        page.close()
