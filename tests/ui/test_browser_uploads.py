"""A file that is not a readable image is refused as it is uploaded, in every image input of the task tabs
and of the tool tabs: a message names the file (not the server's temp folder) and the input stays empty.
The browser itself turns away files whose type is not an image (x.txt); these are the ones it lets through."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import TOOL_IDS, open_tab, open_tool
from playwright.sync_api import Page, expect

# (tab, input element id, what to do first to show the input)
IMAGE_INPUTS = [
    ("Image to image", "i2i-init-image", None),
    ("Mix", "mix-image-2", None),
    ("Inpaint", "inpaint-mask", "…or upload a mask (white = repaint)"),
    ("Outpaint", "outpaint-init-image", None),
    ("Image to video", "i2v-init-image", None),
    ("3D", "mesh-init-image", "Image to 3D"),
    ("Remove background", "rembg-image", None),
    ("Segment", "segment-image", None),
    ("Upscale", "upscaler-image", None),
]


@pytest.fixture(scope="module")
def not_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Per input, a file the browser takes for an image: a .png that holds text, or an SVG (Kubin reads
    neither); each has its own name, so each message is told apart from the one before."""
    folder = tmp_path_factory.mktemp("not-images")
    files = []
    for number in range(len(IMAGE_INPUTS)):
        if number % 2:
            files.append(folder / f"drawing-{number}.svg")
            files[-1].write_text('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"/>')
        else:
            files.append(folder / f"shopping-list-{number}.png")
            files[-1].write_bytes(b"eggs, milk, bread: a shopping list, not a PNG\n")
    return files


def open_any_tab(page: Page, label: str) -> None:
    """A task tab, or an extension's tool tab (inside Tools)."""
    (open_tool if label in TOOL_IDS else open_tab)(page, label)


def upload_is_refused(page: Page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(path)
    toast = page.locator(".toast-body").filter(has_text=f"{path.name} is not an image (")
    expect(toast).to_be_visible()
    assert "/" not in toast.inner_text().split(path.name, 1)[1], "no server path in the message"
    expect(page.locator(f"#{elem_id} img")).to_have_count(0)  # the input did not keep the file
    toast.locator(".toast-close").click()


def test_every_image_input_refuses_a_file_that_is_not_an_image(new_page, not_images, artifacts_dir):
    page = new_page("/", viewport={"width": 1366, "height": 900})
    for number, (tab, elem_id, reveal) in enumerate(IMAGE_INPUTS):
        open_any_tab(page, tab)
        if reveal == "Image to 3D":
            page.locator("#mesh-mode").get_by_role("radio", name=reveal).check()
        elif reveal:
            page.get_by_text(reveal).click()
        upload_is_refused(page, elem_id, not_images[number])

    # The message as a user sees it, on a desktop screen and on a phone.
    for width, height in ((1366, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        open_tab(page, "Image to image")
        page.locator("#i2i-init-image input[type=file]").set_input_files(not_images[0])
        toast = page.locator(".toast-body").filter(has_text=f"{not_images[0].name} is not an image (")
        expect(toast).to_have_css("opacity", "1")  # it fades in
        box = toast.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, "the whole message is on the screen"
        page.screenshot(path=str(artifacts_dir / f"upload-refused-{width}x{height}.png"))
        toast.locator(".toast-close").click()
        expect(toast).to_have_count(0)
