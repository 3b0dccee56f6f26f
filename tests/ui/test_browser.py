"""The page as a user sees it in Chromium: generating, dark mode, a phone-sized screen, progress and cancel."""

from __future__ import annotations

import io
import re
import time

import pytest
from browser_helpers import open_tab
from PIL import Image, ImageStat
from playwright.sync_api import Page, Route, expect

pytestmark = pytest.mark.browser

IMAGE_TIMEOUT_MS = 60_000
DESKTOP = {"viewport": {"width": 1366, "height": 900}}
TOUCH_TARGET_PX = 44  # the least side of a control a finger taps (Apple's guideline, WCAG 2.5.5)
MOBILE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}


def set_slider(page: Page, label: str, value: int) -> None:
    """Type into a slider's number box, as a user does, and leave it so Gradio takes the value."""
    box = page.locator(f'input[aria-label="number input for {label}"]')
    box.fill(str(value))
    box.press("Tab")
    expect(box).to_have_value(str(value))


def expect_gallery_image(page: Page) -> None:
    """At least one result image in the gallery, loaded (not a broken link)."""
    image = page.locator("#t2i-gallery img").first
    expect(image).to_be_visible(timeout=IMAGE_TIMEOUT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#t2i-gallery img')].some(i => i.complete && i.naturalWidth > 0)",
        timeout=IMAGE_TIMEOUT_MS,
    )


def hidden_part_of_result(page: Page, gallery: str = "#t2i-gallery") -> dict:
    """How many pixels of the first result image its box cuts off (on each side), and whether the box
    scrolls inside: 0 and False when the whole image is on show."""
    return page.evaluate(
        """(gallery) => {
            const image = document.querySelector(gallery + ' img');
            const box = image.closest('.grid-wrap');
            const i = image.getBoundingClientRect(), b = box.getBoundingClientRect();
            return {top: Math.max(0, b.top - i.top), bottom: Math.max(0, i.bottom - b.bottom),
                    left: Math.max(0, b.left - i.left), right: Math.max(0, i.right - b.right),
                    scrolls: box.scrollHeight > box.clientHeight + 1};
        }""",
        gallery,
    )


WHOLE = {"top": 0, "bottom": 0, "left": 0, "right": 0, "scrolls": False}


def expect_whole_result(page: Page, gallery: str = "#t2i-gallery", timeout_s: float = 5.0) -> None:
    """The first result image is wholly on show, once the gallery's layout has settled (it grows as the
    image arrives, so one measurement taken at that moment can catch it half-way)."""
    deadline = time.monotonic() + timeout_s
    while (hidden := hidden_part_of_result(page, gallery)) != WHOLE and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert hidden == WHOLE, f"part of the result is cut off or scrolls: {hidden}"


def small_tap_targets(page: Page, root: str) -> list[str]:
    """Visible controls under `root` smaller than a fingertip: buttons (reset, editor tools, send...), a
    slider's number box, a checkbox's label (the checkbox is tapped through it)."""
    return page.evaluate(
        """([root, least]) => [...document.querySelectorAll(
                root + ' button, ' + root + ' [data-testid=number-input], ' + root + ' .checkbox-container')]
            .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0
                && getComputedStyle(e).visibility !== 'hidden' && (r.width < least || r.height < least); })
            .filter(e => !e.closest('[role=tablist], .tab-wrapper, .label-wrap, .options'))
            .map(e => { const r = e.getBoundingClientRect();
                return `${e.getAttribute('aria-label') || e.innerText.trim().slice(0, 24)}: ${Math.round(r.width)}x${Math.round(r.height)}`; })""",
        [root, TOUCH_TARGET_PX],
    )


def reply_late(route: Route) -> None:
    response = route.fetch()
    time.sleep(1.0)
    route.fulfill(response=response)


def screen_luminance(page: Page) -> float:
    """Mean brightness (0..255) of what is on screen."""
    with Image.open(io.BytesIO(page.screenshot())) as shot:
        return ImageStat.Stat(shot.convert("L")).mean[0]


def app_width(page: Page) -> float:
    return page.evaluate("document.querySelector('.gradio-container').getBoundingClientRect().width")


def cut_off_labels(page: Page) -> list[str]:
    """Slider end labels (like "2048") that are visible but clipped by the box around them."""
    return page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=min-value], [data-testid=max-value]')]
            .filter(label => {
                const r = label.getBoundingClientRect();
                if (r.width === 0) return false;  // hidden on narrow screens
                let box = label.parentElement;
                while (box && getComputedStyle(box).overflowX === 'visible') box = box.parentElement;
                const b = box.getBoundingClientRect();
                return r.right > b.right + 0.5 || r.left < b.left - 0.5;
            })
            .map(label => label.closest('.block').querySelector('label').innerText + ': ' + label.textContent)"""
    )


def test_ctrl_enter_generates_and_the_whole_result_is_shown(new_page, artifacts_dir):
    page = new_page("/", **DESKTOP)
    expect(page.locator("#t2i-model input")).to_have_value(re.compile(r"^tiny-kd22"))
    width_before = app_width(page)
    expect(page.locator("#tab-t2i").get_by_text("Ctrl+Enter (⌘+Enter on a Mac) generates")).to_be_visible()
    expect(page.locator("#t2i-cancel")).to_be_disabled()  # nothing to cancel yet

    prompt = page.locator("#prompt textarea")
    prompt.fill("a red cat")
    prompt.press("Enter")  # Enter and Shift+Enter add a line; neither generates
    prompt.press("Shift+Enter")
    prompt.press_sequentially("on a windowsill")
    expect(prompt).to_have_value("a red cat\n\non a windowsill")
    prompt.press("Control+Enter")

    expect_gallery_image(page)
    expect(page.locator("#t2i-info")).to_contain_text(re.compile(r"1 of 1 image\(s\) · seeds \d+"))
    assert app_width(page) == pytest.approx(width_before, abs=1), "the layout jumped when the result arrived"
    # A square result is shown whole: its box grows to it instead of cutting it at 55% of the window.
    expect_whole_result(page)
    expect(page.locator("#t2i-cancel")).to_be_disabled()  # the job is over
    page.screenshot(path=artifacts_dir / "ui-generate-desktop.png", full_page=True)


@pytest.mark.parametrize("window_width", [800, 1024, 1280, 1920])
def test_wide_windows_use_the_width_and_slider_labels_fit(new_page, window_width):
    page = new_page("/", viewport={"width": window_width, "height": 800})

    # Up to Kubin's 1600 px cap the app spans the window (less a scrollbar's width at most).
    assert app_width(page) >= min(window_width, 1600) - 20
    assert cut_off_labels(page) == []


def test_dark_theme_renders_dark(new_page, artifacts_dir):
    light = new_page("/", color_scheme="light")
    dark = new_page("/?__theme=dark", color_scheme="light")

    assert dark.evaluate("document.body.classList.contains('dark')")
    dark.screenshot(path=artifacts_dir / "ui-dark-theme.png")
    assert screen_luminance(dark) < 80, "the ?__theme=dark page should look dark"
    assert screen_luminance(light) > 170, "the default page (light system theme) should look light"
    label = dark.get_by_text("Prompt", exact=True).first
    text_colour = label.evaluate("e => getComputedStyle(e).color")
    r, g, b = (int(c) for c in re.findall(r"\d+", text_colour)[:3])
    assert 0.2126 * r + 0.7152 * g + 0.0722 * b > 150, f"labels should be light on dark, got {text_colour}"


def test_phone_screen_has_no_sideways_scroll_and_can_generate(new_page, artifacts_dir):
    page = new_page("/", **MOBILE)

    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] + 1, f"page scrolls sideways: scrollWidth {widths[0]} > {widths[1]}"
    assert small_tap_targets(page, "#tab-t2i") == []  # reset buttons, number boxes, send buttons...
    page.locator("#prompt textarea").fill("a blue bird")
    generate = page.locator("#t2i-generate")
    generate.scroll_into_view_if_needed()
    expect(generate).to_be_visible()
    expect(generate).to_be_in_viewport()
    box = generate.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= widths[1] + 1, f"Generate is cut off: {box}"
    generate.tap()

    # The results, where the progress shows, sit far below Generate: they come into view.
    expect(page.locator("#t2i-gallery")).to_be_in_viewport()
    expect_gallery_image(page)
    expect(page.locator("#t2i-info")).to_contain_text(re.compile(r"seeds \d+"))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    expect_whole_result(page)
    page.screenshot(path=artifacts_dir / "ui-generate-phone.png", full_page=True)

    open_tab(page, "Inpaint")  # the image editor's tools
    # The editor draws its toolbar once its tab is shown: seconds later on a busy machine (seen in CI).
    expect(page.locator("#inpaint-editor").get_by_role("button", name="Brush")).to_be_visible(timeout=30_000)
    assert small_tap_targets(page, "#tab-inpaint") == []
    open_tab(page, "Settings")  # its checkboxes get a row each, not two letters of a column
    checkboxes = page.locator("#tab-settings .checkbox-container")
    expect(checkboxes.first).to_be_visible()
    assert small_tap_targets(page, "#tab-settings") == []
    assert min(checkboxes.nth(i).bounding_box()["width"] for i in range(checkboxes.count())) > 250
    page.screenshot(path=artifacts_dir / "ui-settings-phone.png", full_page=True)


def test_progress_names_the_stage_and_cancel_is_active_only_while_a_job_runs(new_page, artifacts_dir):
    page = new_page("/", **DESKTOP)
    page.locator("#prompt textarea").fill("a slow snail")
    set_slider(page, "Steps", 400)
    set_slider(page, "Batch count", 8)  # long enough that a busy machine's browser clicks Cancel in time
    cancel = page.locator("#t2i-cancel")
    expect(cancel).to_be_disabled()

    page.locator("#t2i-generate").click()
    # The decoder's own steps of the first batch, not a sum with the prior's (x/402) or both batches'.
    progress = page.get_by_text(re.compile(r"Batch 1/8 · Decoder \d+/400 · (about \d+ s left|estimating)"))
    expect(progress.first).to_be_visible(timeout=IMAGE_TIMEOUT_MS)
    expect(page.get_by_text(re.compile(r"\d+/(402|3216)"))).to_have_count(0)
    expect(cancel).to_be_enabled()
    page.locator("#t2i-gallery").screenshot(path=artifacts_dir / "ui-progress.png")
    # The reply to the click comes a second late, as on a busy machine: the job has long stopped by then,
    # and its final message must not be replaced by that reply.
    page.route(re.compile(r".*/gradio_api/run/predict.*"), reply_late)
    cancel.click()

    cancelled = re.compile(r"Cancelled after \d of 8 image\(s\)")
    expect(page.locator("#t2i-cancel-status")).to_contain_text("Cancel requested")  # the late reply is in
    expect(page.locator("#t2i-info")).to_contain_text(cancelled, timeout=15_000)
    expect(cancel).to_be_disabled()
    expect(page.get_by_text(re.compile(r"Decoder \d+/\d+"))).to_have_count(0)
    page.wait_for_timeout(500)  # a toast would be up by now
    expect(page.get_by_text(cancelled)).to_have_count(1)  # said once, under the results
    page.screenshot(path=artifacts_dir / "ui-cancelled.png")
