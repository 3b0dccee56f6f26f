"""The tool-model buttons of the generation tabs, as a user meets them (the shared server runs the tiny tool
models): Estimate depth in the ControlNet box turns a photo into the depth map shown in its place."""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser_helpers import open_tab, open_tool
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


def test_describe_fills_the_prompt_and_enhance_expands_it_into_the_metadata(new_page, kubin_server, photo):
    from kubin.outputs import read_output_metadata

    page = new_page("/", viewport={"width": 1366, "height": 900})
    open_tab(page, "Image to image")
    page.locator("#i2i-init-image input[type=file]").set_input_files(photo)
    expect(page.locator("#i2i-init-image img")).to_be_visible()
    prompt = page.locator("#i2i-prompt textarea")

    page.locator("#i2i-describe").click()

    expect(prompt).not_to_have_value("", timeout=60_000)
    described = prompt.input_value()
    assert set(described) <= set("abcdefghijklmnopqrstuvwxyz ")  # the tiny caption model's words

    page.locator("#i2i-enhance").click()

    expect(prompt).not_to_have_value(described, timeout=60_000)
    enhanced = prompt.input_value()
    before = kubin_server.saved_images("i2i")
    page.locator("#i2i-generate").click()
    expect(page.locator("#i2i-info")).to_contain_text(re.compile(r"seeds? \d+"), timeout=120_000)
    made = kubin_server.saved_images("i2i") - before
    assert len(made) == 1
    meta = read_output_metadata(made.pop())
    assert meta["params"]["prompt"] == enhanced
    assert meta["prompt_enhancement"] == {
        "model": "tiny-enhance", "original": described, "enhanced": enhanced, "edited": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    "viewport", [{"width": 1366, "height": 900}, {"width": 390, "height": 844}], ids=["desktop", "phone"]
)
def test_the_captions_tab_captions_a_folder_and_says_what_it_skipped(
    new_page, tmp_path, photo, viewport, artifacts_dir
):
    folder = tmp_path / "training"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(photo.read_bytes())
    (folder / "b.txt").write_text("mine\n")
    (folder / "c.png").write_bytes(b"not a picture")
    page = new_page("/", viewport=viewport)
    open_tool(page, "Captions")

    page.locator("#captions-folder textarea").fill(str(folder))
    page.locator("#captions-detail").get_by_label("tags").check()
    expect(page.locator("#captions-model input")).to_have_value("tiny-caption · the caption model")
    page.locator("#captions-run").click()

    summary = page.locator("#captions-summary")
    expect(summary).to_contain_text(
        "1 caption(s) written (tags, by tiny-caption), 1 skipped (their .txt exists), 1 unreadable.",
        timeout=60_000,
    )
    expect(summary).to_contain_text("c.png")
    assert (folder / "a.txt").read_text().strip() and (folder / "b.txt").read_text() == "mine\n"
    page.screenshot(path=artifacts_dir / f"captions-{viewport['width']}.png", full_page=True)


@pytest.mark.parametrize(
    "viewport", [{"width": 1366, "height": 900}, {"width": 390, "height": 844}], ids=["desktop", "phone"]
)
def test_describe_under_the_mix_images_and_the_3d_picture_writes_the_prompt(
    new_page, photo, viewport, artifacts_dir
):
    page = new_page("/", viewport=viewport)
    open_tab(page, "Mix")
    page.locator("#mix-prompt-1 textarea").fill("a lighthouse")
    page.locator("#mix-image-2 input[type=file]").set_input_files(photo)
    expect(page.locator("#mix-image-2 img")).to_be_visible()
    page.locator("#mix-image-2-describe-mode").click()
    page.get_by_role("option", name="tags", exact=True).click()
    button = page.locator("#mix-image-2-describe")
    box = button.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]  # wholly on screen

    button.click()

    # Prompt 1 is taken: the tags go into the first empty prompt, Prompt 2.
    second = page.locator("#mix-prompt-2 textarea")
    expect(second).not_to_have_value("", timeout=60_000)
    assert set(second.input_value()) <= set("abcdefghijklmnopqrstuvwxyz ,")  # the tiny caption model's tags
    expect(page.locator("#mix-prompt-1 textarea")).to_have_value("a lighthouse")
    button.scroll_into_view_if_needed()
    page.screenshot(path=artifacts_dir / f"describe-mix-{viewport['width']}.png")

    open_tab(page, "3D")
    expect(page.locator("#mesh-describe")).to_be_hidden()  # text mode: no picture to describe
    page.locator("#mesh-mode").get_by_label("Image to 3D").check()
    page.locator("#mesh-init-image input[type=file]").set_input_files(photo)
    expect(page.locator("#mesh-init-image img")).to_be_visible()
    page.screenshot(path=artifacts_dir / f"describe-3d-{viewport['width']}.png")

    page.locator("#mesh-describe").click()

    # Image to prompt: the description is the prompt of text to 3D, shown to edit.
    prompt = page.locator("#mesh-prompt textarea")
    expect(prompt).to_be_visible(timeout=60_000)
    expect(prompt).not_to_have_value("", timeout=60_000)
    expect(page.locator("#mesh-generate-t2mesh")).to_be_visible()
