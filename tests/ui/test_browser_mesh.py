"""The 3D tab as a user sees it in Chromium: the object made with tiny-shap-e is drawn in the 3D viewer,
on a desktop and on a phone-sized screen, and the progress says when the turntable renders. One generation
(tens of seconds here) serves every check."""

from __future__ import annotations

import io
import re

import pytest
from browser_helpers import open_tab
from PIL import Image
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

MESH_TIMEOUT_MS = 180_000
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


# Keeps every progress line the 3D tab shows (in window.kubinProgress), however briefly it shows.
RECORD_PROGRESS = """() => {
    window.kubinProgress = [];
    new MutationObserver(() => {
        for (const line of document.querySelectorAll('#tab-mesh .progress-level')) {
            if (!window.kubinProgress.includes(line.innerText)) window.kubinProgress.push(line.innerText);
        }
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def drawn_fraction(page: Page) -> float:
    """The share of the viewer canvas's pixels that differ from its background (its corner pixel)."""
    canvas = page.locator("#mesh-viewer canvas").first
    with Image.open(io.BytesIO(canvas.screenshot())) as shot:
        rgb = shot.convert("RGB")
    background = rgb.getpixel((1, 1))
    pixels = list(rgb.getdata())
    differs = sum(1 for p in pixels if max(abs(a - b) for a, b in zip(p, background, strict=True)) > 24)
    return differs / len(pixels)


@pytest.fixture(scope="module")
def mesh_page(browser, kubin_server):
    """A desktop page whose 3D tab has made one object with tiny-shap-e."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(kubin_server.url)
    page.wait_for_selector("#prompt textarea")
    open_tab(page, "3D")
    expect(page.locator("#mesh-model input")).to_have_value(re.compile(r"^tiny-shap-e"))
    page.locator("#mesh-prompt textarea").fill("a red chair")
    page.evaluate(RECORD_PROGRESS)
    page.locator("#mesh-generate-t2mesh").click()
    expect(page.locator("#mesh-info")).to_contain_text("1 of 1 3D object(s)", timeout=MESH_TIMEOUT_MS)
    yield page
    context.close()


def test_the_progress_says_when_the_turntable_renders_and_cancel_waits_for_a_job(mesh_page):
    lines = mesh_page.evaluate("window.kubinProgress")

    # Not "Step 4/6" frozen while the preview renders: the phase under way, and the denoising steps alone.
    assert any(line.startswith("Rendering the turntable…") for line in lines), lines
    assert any(line.startswith("Building the mesh…") for line in lines), lines
    assert not any(re.search(r"\d+/6\b", line) for line in lines), lines
    expect(mesh_page.locator("#mesh-cancel")).to_be_disabled()


def test_the_viewer_draws_the_object_on_a_desktop(mesh_page, artifacts_dir):
    canvas = mesh_page.locator("#mesh-viewer canvas").first
    expect(canvas).to_be_visible(timeout=15_000)
    mesh_page.wait_for_timeout(1500)  # the viewer loads the .glb and draws a frame
    mesh_page.locator("#mesh-viewer").screenshot(path=artifacts_dir / "ui-mesh-viewer-desktop.png")

    assert drawn_fraction(mesh_page) > 0.005, "the 3D viewer shows only its background"


def test_the_viewer_draws_the_object_on_a_phone(mesh_page, artifacts_dir):
    mesh_page.set_viewport_size(PHONE)
    canvas = mesh_page.locator("#mesh-viewer canvas").first
    canvas.scroll_into_view_if_needed()
    expect(canvas).to_be_in_viewport()
    mesh_page.wait_for_timeout(1500)
    mesh_page.locator("#mesh-viewer").screenshot(path=artifacts_dir / "ui-mesh-viewer-phone.png")

    box = canvas.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 1, f"the viewer is cut off: {box}"
    assert drawn_fraction(mesh_page) > 0.005, "the 3D viewer shows only its background"
