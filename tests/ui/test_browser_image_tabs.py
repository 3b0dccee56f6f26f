"""The image tabs as a user sees them in Chromium: painting a mask in the inpaint editor, sending a result
to another tab, every tab on a phone-sized screen, and sliders that fit their boxes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser_helpers import TAB_IDS, open_tab
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

IMAGE_TIMEOUT_MS = 60_000
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}


def expect_image_in(page: Page, selector: str) -> None:
    """At least one image shown in the gallery (or image box) `selector`, loaded (not a broken link)."""
    expect(page.locator(f"{selector} img").first).to_be_visible(timeout=IMAGE_TIMEOUT_MS)
    page.wait_for_function(
        "sel => [...document.querySelectorAll(sel + ' img')].some(i => i.complete && i.naturalWidth > 0)",
        arg=selector,
        timeout=IMAGE_TIMEOUT_MS,
    )


def scrolls_sideways(page: Page) -> str | None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    return f"scrollWidth {widths[0]} > {widths[1]}" if widths[0] > widths[1] + 1 else None


def clipped_sliders(page: Page) -> list[str]:
    """Slider parts (end labels like "1024", the track itself) that are visible but cut off by the box
    around them, as "<slider id or label>: <part>"."""
    return page.evaluate(
        """() => [...document.querySelectorAll(
                '[data-testid=min-value], [data-testid=max-value], input[type=range]')]
            .filter(part => {
                const r = part.getBoundingClientRect();
                if (r.width === 0 || !part.checkVisibility()) return false;  // hidden tab or narrow screen
                let box = part.parentElement;
                while (box && getComputedStyle(box).overflowX === 'visible') box = box.parentElement;
                const b = box.getBoundingClientRect();
                return r.right > b.right + 0.5 || r.left < b.left - 0.5;
            })
            .map(part => {
                const block = part.closest('.block');
                return (block.id || block.querySelector('label').innerText) + ': '
                    + (part.type === 'range' ? 'track' : part.textContent);
            })"""
    )


def test_inpaint_paint_a_mask_on_the_uploaded_image_and_generate(
    new_page, kubin_server, artifacts_dir, tmp_path
):
    photo = Image.new("RGB", (256, 192), (30, 120, 200))
    ImageDraw.Draw(photo).rectangle((8, 8, 56, 56), fill=(250, 200, 0))
    photo.save(tmp_path / "photo.png")
    before = kubin_server.saved_images("inpaint")
    page = new_page("/")
    open_tab(page, "Inpaint")

    # An upload before the editor has set up its canvas is lost (Gradio), and no user can be that quick.
    expect(page.locator("#inpaint-editor canvas").first).to_be_attached()
    page.locator("#inpaint-editor input[type=file]").set_input_files(tmp_path / "photo.png")
    # Once the picture is on the canvas the editor switches to its brush by itself.
    brush = page.locator("#inpaint-editor button[aria-label=Brush]")
    expect(brush).to_have_class(re.compile("highlight"), timeout=15_000)
    canvas = page.locator("#inpaint-editor canvas").first
    box = canvas.bounding_box()
    # A stroke across the middle of the canvas, where the picture always is, right of its centre: in the
    # picture's pixels about (128, 118) to (192, 118), with the brush's width around it.
    y = box["y"] + box["height"] * 0.6
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.75, y, steps=4)  # each step redraws the canvas: slow
    page.mouse.up()
    page.locator("#inpaint-prompt textarea").fill("a round hole")
    page.screenshot(path=artifacts_dir / "ui-inpaint-mask-drawn.png")

    page.locator("#inpaint-generate").click()

    expect_image_in(page, "#inpaint-gallery")
    expect(page.locator("#inpaint-info")).to_contain_text(re.compile(r"1 of 1 image\(s\) · seeds \d+"))
    page.locator("#inpaint-gallery").scroll_into_view_if_needed()
    page.screenshot(path=artifacts_dir / "ui-inpaint-result.png")
    (saved,) = kubin_server.saved_images("inpaint") - before
    with Image.open(saved) as result:
        assert result.size == (256, 192), "the result keeps the uploaded picture's size"
        after = np.asarray(result.convert("RGB"), dtype=np.int16)
    original = np.asarray(photo, dtype=np.int16)
    changed = np.abs(after - original).sum(axis=2) > 0
    assert changed.any(), "nothing was repainted: the drawn stroke did not reach the mask"
    assert not changed[:96, :96].any(), "the top-left corner, far from the stroke, must stay as uploaded"
    ys, xs = np.nonzero(changed)
    assert xs.min() >= 64 and ys.min() >= 64, "repainted pixels should be around the stroke only"


def test_send_a_text_to_image_result_to_image_to_image(new_page, artifacts_dir):
    page = new_page("/")
    page.locator("#prompt textarea").fill("a purple owl at night")
    page.locator("#t2i-generate").click()
    expect_image_in(page, "#t2i-gallery")

    page.locator("#t2i-send-i2i").click()

    expect(page.get_by_role("tab", name="Image to image", exact=True)).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.locator("#tab-i2i")).to_be_visible()
    expect_image_in(page, "#i2i-init-image")  # the sent picture is the init image
    expect(page.locator("#i2i-prompt textarea")).to_have_value("a purple owl at night")
    page.screenshot(path=artifacts_dir / "ui-send-to-i2i.png")
    # And it can be used straight away.
    page.locator("#i2i-generate").click()
    expect_image_in(page, "#i2i-gallery")
    expect(page.locator("#i2i-info")).to_contain_text(re.compile(r"seeds \d+"))


def test_phone_screen_has_no_sideways_scroll_on_any_tab(new_page, artifacts_dir):
    page = new_page("/", **PHONE)

    for label, tab_id in TAB_IDS.items():
        open_tab(page, label)
        assert scrolls_sideways(page) is None, f"the {label} tab scrolls sideways: {scrolls_sideways(page)}"
        if tab_id in ("mix", "inpaint", "outpaint"):
            page.screenshot(path=artifacts_dir / f"ui-phone-{tab_id}.png", full_page=True)


def test_slider_labels_and_tracks_fit_on_every_tab_in_usual_window_sizes(new_page):
    clipped = {}
    for width in (800, 1280):
        page = new_page("/", viewport={"width": width, "height": 800})
        for label, tab_id in TAB_IDS.items():
            open_tab(page, label)
            if found := clipped_sliders(page):
                clipped[f"{tab_id} at {width} px"] = found

    assert clipped == {}
