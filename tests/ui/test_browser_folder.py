"""Batch from folder in the image to image tab, in Chromium: a folder path runs each image with the tab's
values, the gallery gathers the outputs named as the images, and the panel lists the files skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import open_tab
from PIL import Image
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_a_folder_runs_each_image_into_the_gallery_and_lists_what_it_skipped(
    new_page, artifacts_dir, tmp_path, screen
):
    pictures = tmp_path / f"garden-{screen}"
    pictures.mkdir()
    for i, name in enumerate(["rose.png", "tulip.png"]):
        Image.new("RGB", (64, 64), (200, 40 * i, 90)).save(pictures / name)
    (pictures / "notes.txt").write_text("water on Sundays")

    page = new_page("/", **(PHONE if screen == "phone" else {"viewport": {"width": 1366, "height": 900}}))
    open_tab(page, "Image to image")
    page.locator("#i2i-prompt textarea").fill("a watercolour flower")
    for name, value in (("steps", "2"), ("prior-steps", "2")):
        field = page.locator(f"#i2i-{name} input[type=number]")
        field.fill(value)
        field.press("Enter")
    box = page.locator("#i2i-folder-box")
    box.get_by_text("Batch from folder").click()
    page.locator("#i2i-folder-input textarea, #i2i-folder-input input").first.fill(str(pictures))
    page.locator("#i2i-folder-run").click()

    report = page.locator("#i2i-folder-report")
    expect(report).to_contain_text("2 image(s)", timeout=TIMEOUT_MS)
    expect(report).to_contain_text("notes.txt: not an image Pillow can read")
    expect(page.locator("#i2i-info")).to_contain_text("Folder: image 2 of 2 (tulip.png) · 2 image(s) so far",
                                                      timeout=TIMEOUT_MS)  # fmt: skip
    expect(page.locator("#i2i-gallery .caption-label")).to_have_count(2, timeout=TIMEOUT_MS)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
        "no sideways scroll"
    )
    output = Path(report.inner_text().split("→")[1].strip().split()[0].strip("`"))
    assert sorted(p.name for p in output.iterdir()) == ["rose.png", "tulip.png"]
    box.scroll_into_view_if_needed()
    page.screenshot(path=artifacts_dir / f"folder-batch-{screen}.png", full_page=True)
