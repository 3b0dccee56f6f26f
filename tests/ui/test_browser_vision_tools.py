"""The tool-model buttons of the generation tabs, as a user meets them (the shared server runs the tiny tool
models): Estimate depth in the ControlNet box turns a photo into the depth map shown in its place."""

from __future__ import annotations

import numpy as np
import pytest
from browser_helpers import open_tab
from PIL import Image
from playwright.sync_api import expect


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("vision") / "street.png"
    Image.fromarray((np.random.default_rng(0).random((40, 72, 3)) * 255).astype(np.uint8)).resize(
        (288, 160)
    ).save(path)
    return path


@pytest.mark.parametrize(
    "viewport", [{"width": 1366, "height": 900}, {"width": 390, "height": 844}], ids=["desktop", "phone"]
)
def test_estimate_depth_shows_the_map_in_place_of_the_photo(
    new_page, kubin_server, photo, viewport, artifacts_dir
):
    page = new_page("/", viewport=viewport)
    open_tab(page, "Image to image")
    page.locator("#tab-i2i").get_by_text("ControlNet (depth)").click()
    page.locator("#i2i-hint-image input[type=file]").set_input_files(photo)
    shown = page.locator("#i2i-hint-image img")
    expect(shown).to_be_visible()
    before = shown.get_attribute("src")

    page.locator("#i2i-estimate-depth-run").click()

    status = page.locator("#i2i-estimate-depth-status")
    expect(status).to_contain_text("Depth map from tiny-depth, 288x160", timeout=60_000)
    expect(shown).not_to_have_attribute("src", before)
    saved = kubin_server.output_dir / "depth"
    maps = sorted(saved.rglob("*.png"))
    assert maps and Image.open(maps[-1]).mode == "L" and Image.open(maps[-1]).size == (288, 160)
    box = page.locator("#i2i-estimate-depth-run").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]  # wholly on screen
    page.screenshot(path=artifacts_dir / f"estimate-depth-{viewport['width']}.png")
