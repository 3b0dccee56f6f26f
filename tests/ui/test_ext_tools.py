"""The bundled tool extensions on the running server, through their Gradio API as a script would call them:
Upscale (a tiny Real-ESRGAN file in a models folder chosen in the tab), Segment (no SAM weights offline: the
clear sentence) and Remove background (a tiny custom ONNX model), plus their send-to buttons."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
from browser_helpers import open_tool
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from playwright.sync_api import expect


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = np.full((48, 40, 3), 20, dtype=np.uint8)
    image[12:36, 10:30] = (235, 235, 235)
    path = tmp_path_factory.mktemp("uploads") / "photo.png"
    Image.fromarray(image, "RGB").save(path)
    return path


def test_every_gallery_offers_the_tools_as_send_to_targets(kubin_server):
    config = httpx.get(f"{kubin_server.url}/config", timeout=10).json()
    labels = [c.get("props", {}).get("value") for c in config["components"]]
    for label in ("→ Upscale", "→ Segment", "→ Remove background"):
        assert labels.count(label) >= 5, f"{label} under every image gallery"


def test_upscale_with_a_checkpoint_from_the_models_folder(api_client, kubin_server, photo, tmp_path):
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    folder = tmp_path / "upscalers"
    folder.mkdir()
    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=1, scale=4)
    torch.save({"params_ema": net.state_dict()}, folder / "tiny_x4.pth")

    listing, shown_folder = api_client.predict(str(folder), None, api_name="/upscaler_folder")
    assert shown_folder == str(folder)
    assert "tiny_x4.pth" in [c[0] if isinstance(c, (list, tuple)) else c for c in listing["choices"]]

    result, info = api_client.predict(handle_file(str(photo)), "tiny_x4.pth", 16, api_name="/upscale")

    assert Image.open(result).size == (160, 192)
    assert "40x48 → 160x192 (x4" in info
    saved = list((kubin_server.output_dir / "upscale").glob("*/*.png"))
    assert saved and Image.open(saved[-1]).size == (160, 192)


def test_segment_without_sam_weights_offline_says_what_to_fetch(api_client, photo):
    with pytest.raises(AppError) as raised:
        api_client.predict(handle_file(str(photo)), "hub: SAM ViT-B", "20,24", "", 4, api_name="/segment")
    message = str(raised.value)
    assert "sam_vit_b_01ec64.pth" in message and "ybelkada/segment-anything" in message
    assert "HF_HUB_OFFLINE" in message


@pytest.mark.browser
def test_clicks_on_the_segment_image_become_include_and_exclude_points(new_page, photo):
    page = new_page("/")
    open_tool(page, "Segment")
    page.locator("#segment-image input[type=file]").set_input_files(str(photo))
    picture = page.locator("#segment-image img").first
    picture.wait_for()
    box = picture.bounding_box()

    picture.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    points = page.locator("#segment-points textarea")
    expect(points).not_to_have_value("")
    page.locator("#segment-click-mode").get_by_role("radio", name="Exclude").check()
    picture.click(position={"x": 2, "y": 2})
    expect(points).to_have_value(re.compile(r"\n\d+,\d+,0$"))

    first, second = points.input_value().splitlines()
    x, y = (int(v) for v in first.split(","))
    assert abs(x - 20) <= 3 and abs(y - 24) <= 3, "image pixels, not screen pixels (the photo is 40x48)"
    assert [int(v) for v in second.split(",")][:2] <= [3, 3]


def test_remove_background_with_a_custom_onnx_model(api_client, kubin_server, photo, tmp_path):
    import torch

    folder = tmp_path / "rembg"
    folder.mkdir()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 3, padding=1), torch.nn.Sigmoid())
    with torch.no_grad():  # bright is subject
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net.eval(), torch.zeros(1, 3, 320, 320), str(folder / "tiny.onnx"), dynamo=False)
    api_client.predict(str(folder), None, api_name="/rembg_folder")

    result, info = api_client.predict(
        handle_file(str(photo)), "custom ONNX file", "tiny.onnx", False, False, api_name="/rembg"
    )

    cutout = Image.open(result)
    assert cutout.mode == "RGBA" and cutout.size == (40, 48)
    assert cutout.getpixel((20, 24))[3] > 200 and cutout.getpixel((1, 1))[3] < 50
    assert "Cut-out saved" in info
    assert list((kubin_server.output_dir / "rembg").glob("*/*.png"))


@pytest.mark.browser
@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_upscale_a_whole_folder_from_the_tab(new_page, api_client, artifacts_dir, tmp_path, screen):
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    models = tmp_path / "upscalers"
    models.mkdir()
    torch.manual_seed(0)
    torch.save({"params_ema": ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict()},
               models / "tiny_x2.pth")  # fmt: skip
    api_client.predict(str(models), None, api_name="/upscaler_folder")
    pictures = tmp_path / f"scans-{screen}"
    pictures.mkdir()
    for name in ("page1.png", "page2.png"):
        Image.new("RGB", (24, 16), (200, 120, 40)).save(pictures / name)
    (pictures / "index.html").write_text("<p>not a picture</p>")

    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
    page = new_page("/", **(phone if screen == "phone" else {"viewport": {"width": 1366, "height": 900}}))
    open_tool(page, "Upscale")
    page.locator("#upscaler-refresh").click()  # the folder was chosen after the page was built
    page.locator("#upscaler-model input").click()
    page.get_by_role("option", name="tiny_x2.pth", exact=True).click()
    page.locator("#upscaler-folder-box").get_by_text("Whole folder").click()
    page.locator("#upscaler-folder-input textarea, #upscaler-folder-input input").first.fill(str(pictures))
    page.locator("#upscaler-folder-run").click()

    report = page.locator("#upscaler-folder-report")
    expect(report).to_contain_text("2 of 2 image(s)", timeout=60_000)
    expect(report).to_contain_text("index.html: not an image Pillow can read")
    expect(page.locator("#upscaler-folder-gallery .caption-label")).to_have_count(2, timeout=60_000)
    assert page.locator("#upscaler-folder-gallery .caption-label").all_inner_texts() == [
        "page1.png",
        "page2.png",
    ]
    output = Path(report.inner_text().split("→")[1].strip().split()[0].strip("`"))
    assert [Image.open(output / n).size for n in ("page1.png", "page2.png")] == [(48, 32), (48, 32)]
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
        "no sideways scroll"
    )
    page.locator("#upscaler-folder-box").scroll_into_view_if_needed()
    page.screenshot(path=artifacts_dir / f"upscale-folder-{screen}.png", full_page=True)
