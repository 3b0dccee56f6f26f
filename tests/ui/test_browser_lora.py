"""The LoRA picker in Chromium: each adapter chosen gets its own weight slider under the picker; moving one
rewrites that adapter's "name:weight" (what the job reads), removing an adapter takes its slider away; on a
phone the sliders stay within the screen."""

from __future__ import annotations

import re

import pytest
from lora_helpers import ATTENTION, kd22_decoder_lora, save_lora
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def two_adapters(kubin_server):
    """ink and glow in the shared server's LoRA folder, taken away after the test (other files list it)."""
    import httpx
    from diffusers import UNet2DConditionModel

    from kubin.models.tiny import tiny_model_folder

    unet = UNet2DConditionModel.from_pretrained(tiny_model_folder("tiny-kd22") / "decoder" / "unet")
    paths = [kd22_decoder_lora(kubin_server.lora_dir / "ink.safetensors"),
             save_lora(unet, kubin_server.lora_dir / "glow.safetensors", ATTENTION, 2)]  # fmt: skip
    yield paths
    for path in paths:
        path.unlink()
    httpx.post(kubin_server.url + "/sdapi/v1/refresh-loras", timeout=60)


def choose(page: Page, name: str) -> None:
    """Pick an adapter from the open list; the field loses focus after, which closes the list."""
    field = page.locator("#t2i-loras input")
    field.click()  # focusing the field opens the list
    option = page.get_by_role("option", name=f"{name} (decoder UNet, rank 4)")
    expect(option).to_be_visible(timeout=60_000)  # after a refresh: once the new choices have come
    option.dispatch_event("mousedown")  # the list moves while the sliders' row grows: no pointer click
    field.evaluate("field => field.blur()")


def chips(page: Page):
    return page.locator("#t2i-loras .token")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_each_adapter_chosen_gets_a_weight_slider_that_sets_its_weight(
    new_page, two_adapters, viewport, artifacts_dir
):
    page = new_page("/", viewport=viewport)
    page.locator("#t2i-loras-refresh").click()  # the files came after the page was built
    weight = [page.locator(f"#t2i-lora-weight-{i}") for i in range(3)]
    expect(weight[0]).to_be_hidden()
    choose(page, "ink")
    expect(weight[0]).to_be_visible(timeout=60_000)  # the page has answered the first choice
    choose(page, "glow")
    expect(weight[1]).to_be_visible(timeout=60_000)
    expect(weight[0]).to_contain_text("ink weight")
    expect(weight[1]).to_contain_text("glow weight")
    expect(weight[2]).to_be_hidden()
    number = weight[1].locator("input[type=number]")
    number.fill("0.5")
    number.press("Enter")
    # ink:1 is a listed choice (shown by its label); glow:0.5 is glow at its new weight
    expect(chips(page)).to_have_text(
        [re.compile(r"^ink \(decoder"), re.compile(r"^glow:0.5\s*$")], timeout=60_000
    )
    for slider in weight[:2]:  # wholly on the screen
        box = slider.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    name = "desktop" if viewport == DESKTOP else "phone"
    page.locator("#t2i-lora-weights").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / f"lora-weights-{name}.png"))
    chips(page).first.locator(".token-remove").click()  # take ink away: glow's slider moves up
    expect(chips(page)).to_have_text([re.compile(r"^glow:0.5\s*$")], timeout=60_000)
    expect(weight[0]).to_contain_text("glow weight")
    expect(weight[0].locator("input[type=number]")).to_have_value("0.5")
    expect(weight[1]).to_be_hidden()
