"""The X/Y/Z grid panel of the text to image tab, in Chromium: two axes make a 2x3 grid shown first in the
gallery, wholly visible, and restoring the grid's PNG fills the axes again; the panel fits a phone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000


def pick_axis(page: Page, letter: str, name: str, values: str) -> None:
    page.locator(f"#t2i-grid-{letter}-axis input").click()
    page.locator(f'#t2i-grid-{letter}-axis li[role=option][aria-label="{name}"]').click()
    expect(page.locator(f"#t2i-grid-{letter}-axis input")).to_have_value(name)
    page.locator(f"#t2i-grid-{letter}-values textarea, #t2i-grid-{letter}-values input").first.fill(values)


def test_the_grid_panel_makes_a_labelled_2x3_grid_and_a_restore_fills_its_axes(
    new_page, artifacts_dir, tmp_path
):
    page = new_page("/", viewport={"width": 1366, "height": 900})
    page.locator("#prompt textarea").fill("a grid of cats")
    page.locator("#t2i-grid-box").get_by_text("X/Y/Z grid").first.click()
    pick_axis(page, "x", "steps", "1,2")
    pick_axis(page, "y", "seed", "1-3")
    page.locator("#t2i-grid-run").click()

    info = page.locator("#t2i-info")
    expect(info).to_contain_text("X/Y/Z grid (2 x 3)", timeout=TIMEOUT_MS)
    expect(info).to_contain_text("6 of 6 cells")
    labels = page.locator("#t2i-gallery .caption-label")
    expect(labels).to_have_count(7, timeout=TIMEOUT_MS)
    assert labels.first.inner_text() == "X/Y/Z grid"
    assert labels.nth(1).inner_text() == "seed 1"
    page.wait_for_function(
        "() => { const i = document.querySelector('#t2i-gallery img');"
        " return i && i.complete && i.naturalWidth > 128 && i.naturalHeight > 192; }",
        timeout=TIMEOUT_MS,
    )
    page.locator("#t2i-gallery").scroll_into_view_if_needed()
    page.screenshot(path=artifacts_dir / "grid-desktop.png", full_page=True)
    grid_path = Path(page.locator("#t2i-info code").first.inner_text())
    assert grid_path.parent.parent.name == "grids" and grid_path.is_file()
    expect(page.locator("#t2i-cancel")).to_be_disabled()

    # The tab's Cancel stops a long grid: the cells made are kept in a grid, the others left grey. (Cells of
    # 1 and 2 steps made all 100 in 5 s, before a click on a busy machine: these take half a minute.)
    page.locator("#t2i-grid-x-values textarea, #t2i-grid-x-values input").first.fill("20,40")
    page.locator("#t2i-grid-y-values textarea, #t2i-grid-y-values input").first.fill("1-50")
    page.locator("#t2i-grid-run").click()
    expect(info).to_contain_text("X/Y/Z grid: cell", timeout=TIMEOUT_MS)  # a cell is made
    expect(page.locator("#t2i-cancel")).to_be_enabled()
    # The button's own click handler, without waiting for frames: headless Chromium paints in software, and
    # on a loaded 2-core machine a page showing a running job drew a frame every few seconds, so that a
    # pointer click (scroll, stable, hit-test: a frame each) once took over 30 s.
    page.locator("#t2i-cancel").dispatch_event("click")
    expect(info).to_contain_text("X/Y/Z grid (2 x 50)", timeout=TIMEOUT_MS)
    expect(info).to_contain_text("Cells not made are left grey")
    expect(page.locator("#t2i-cancel")).to_be_disabled()

    # A fresh page: the restore fills the axes (and the tab's parameters) from the grid's PNG.
    page = new_page("/", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    restore = tmp_path / "grid.png"
    shutil.copy(grid_path, restore)
    page.locator("#t2i-grid-box").get_by_text("X/Y/Z grid").first.click()
    page.get_by_text("Restore parameters from a Kubin image").first.click()
    page.locator("#t2i-restore-file input[type=file]").set_input_files(str(restore))
    expect(page.locator("#t2i-grid-status")).to_contain_text("Restored the grid's axes", timeout=TIMEOUT_MS)
    expect(page.locator("#t2i-grid-x-axis input")).to_have_value("steps")
    expect(page.locator("#t2i-grid-y-axis input")).to_have_value("seed")
    expect(page.locator("#t2i-grid-y-values textarea, #t2i-grid-y-values input").first).to_have_value("1-3")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
        "no sideways scroll"
    )
    expect(page.locator("#prompt textarea")).to_have_value("a grid of cats")  # the tab's values, restored
    page.locator("#t2i-grid-run").scroll_into_view_if_needed()
    page.screenshot(path=artifacts_dir / "grid-phone.png", full_page=True)


def test_image_to_image_has_the_grid_too_over_its_init_image(new_page, tmp_path):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (30, 160, 90)).save(photo)
    page = new_page("/", viewport={"width": 1366, "height": 900})
    page.get_by_role("tab", name="Image to image", exact=True).click()
    page.locator("#i2i-init-image input[type=file]").set_input_files(str(photo))
    page.locator("#i2i-prompt textarea").fill("a grid of leaves")
    page.locator("#i2i-grid-box").get_by_text("X/Y/Z grid").first.click()
    page.locator("#i2i-grid-x-axis input").click()
    page.locator('#i2i-grid-x-axis li[role=option][aria-label="strength"]').click()
    page.locator("#i2i-grid-x-values textarea, #i2i-grid-x-values input").first.fill("0.3, 0.6")
    page.locator("#i2i-grid-run").click()

    expect(page.locator("#i2i-info")).to_contain_text("2 of 2 cells", timeout=TIMEOUT_MS)
    grid = Path(page.locator("#i2i-info code").first.inner_text())
    from kubin.grid import plan_from_grid
    from kubin.outputs import read_image_metadata

    plan = plan_from_grid(grid)
    assert plan.task == "i2i" and [c.params["strength"] for c in plan.cells()] == [0.3, 0.6]
    for cell in read_image_metadata(grid)["grid"]["cells"]:  # each cell started from the uploaded image
        assert read_image_metadata(cell)["inputs"]["init_image"]
    expect(page.locator("#i2i-prompts-file-box")).to_be_attached()
