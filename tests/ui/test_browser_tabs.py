"""The tab rows as a user sees them in Chromium, on a laptop and on a phone: the top row keeps to the task
tabs, 3D, Tools, Settings and Extensions, every tab in sight and in a stable order; the tools sit in the
Tools tab, and a gallery's "→ Upscale" opens the right one. A picked style shows the prompt it sends. No
label needs an emoji font."""

from __future__ import annotations

import re

import pytest
from browser_helpers import TOP_TABS
from playwright.sync_api import Page, expect

from kubin.outputs import read_output_metadata

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1366, "height": 900}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
TOOLS = [
    "Outputs",
    "Captions",
    "Hello",
    "Remove background",
    "Segment",
    "Styles",
    "Upscale",
    "History",  # Kubin's own tools (the job history, Kandinsky 6 video super-resolution), after the extensions'
    "Video upscale",
]  # hello: on in the test config
OIL = "oil painting on canvas, visible brush strokes, rich colours, classical composition"
OIL_NEGATIVE = "photograph, 3d render, flat colours, low quality"
# Characters a browser draws from an emoji font (an empty box where none is installed): pictographs, the
# emoji variation selector, and the symbols shown as emoji by default.
EMOJI = re.compile(
    "[\U0001f000-\U0001faff\ufe0f\u231a\u231b\u23e9-\u23ec\u23f0\u23f3\u25fd\u25fe\u2614\u2615\u2648-\u2653"
    "\u267f\u2693\u26a1\u26aa\u26ab\u26bd\u26be\u26c4\u26c5\u26ce\u26d4\u26ea\u26f2\u26f3\u26f5\u26fa\u26fd"
    "\u2705\u270a\u270b\u2728\u274c\u274e\u2753-\u2755\u2757\u2795-\u2797\u27b0\u27bf\u2b1b\u2b1c\u2b50\u2b55]"
)


def tab_row(page: Page, tabs_id: str) -> list[dict]:
    """The tab buttons of the gr.Tabs `tabs_id` (not of tabs nested in it), in the order they stand."""
    return page.evaluate(
        """id => [...document.querySelectorAll(`#${id} > .tab-wrapper [role=tablist] > button[role=tab]`)]
            .map(b => {
                const r = b.getBoundingClientRect();
                return {label: b.innerText.trim(), left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                        shown: b.checkVisibility(), selected: b.getAttribute('aria-selected') === 'true'};
            })""",
        tabs_id,
    )


def out_of_sight(row: list[dict], width: int) -> list[str]:
    return [t["label"] for t in row if not t["shown"] or t["left"] < 0 or t["right"] > width + 0.5]


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_every_tab_is_in_sight_in_a_stable_order_and_the_tools_sit_in_tools(new_page, artifacts_dir, screen):
    options = DESKTOP if screen == "desktop" else PHONE
    width = options["viewport"]["width"]
    page = new_page("/", **options)

    top = tab_row(page, "kubin-tabs")
    assert [t["label"] for t in top] == TOP_TABS
    assert out_of_sight(top, width) == []
    expect(page.get_by_role("button", name="More tabs")).to_have_count(0)
    height = max(t["bottom"] for t in top) - min(t["top"] for t in top)
    assert height < options["viewport"]["height"] / 4, f"the tab rows take {height:.0f} px of the screen"
    page.screenshot(path=artifacts_dir / f"ui-tabs-top-{screen}.png")

    page.get_by_role("tab", name="Extensions", exact=True).click()  # the last one
    expect(page.locator("#extensions-list")).to_be_visible()
    assert [(t["label"], t["selected"]) for t in tab_row(page, "kubin-tabs")] == [
        (label, label == "Extensions") for label in TOP_TABS
    ], "the row keeps its order"
    page.get_by_role("tab", name="Tools", exact=True).click()

    tools = tab_row(page, "kubin-tool-tabs")
    assert [t["label"] for t in tools] == TOOLS
    assert out_of_sight(tools, width) == []
    expect(page.locator("#tab-ext-browser")).to_be_visible()  # the first tool opens with the tab
    page.screenshot(path=artifacts_dir / f"ui-tabs-tools-{screen}.png", full_page=True)
    for label in (
        "History",
        "Video upscale",
    ):  # a selected tool's tab is drawn once (History was drawn twice)
        page.locator("#kubin-tool-tabs").get_by_role("tab", name=label, exact=True).click()
        assert [(t["label"], t["selected"]) for t in tab_row(page, "kubin-tool-tabs")] == [
            (tool, tool == label) for tool in TOOLS
        ]
    # Labels, buttons and lists of the tabs seen (a text to image tab, Extensions, Tools).
    text = page.locator(".gradio-container").text_content()
    assert EMOJI.findall(text) == []


def test_a_style_shows_the_prompt_it_sends_and_a_result_goes_to_the_upscale_tool(new_page, kubin_server):
    before = kubin_server.saved_images()
    page = new_page("/", **DESKTOP)
    page.locator("#prompt textarea").fill("a red fox")
    page.locator("#negative-prompt textarea").fill("blurry")
    page.locator("#t2i-ext-styles").get_by_text("Style", exact=True).first.click()  # open the panel
    sent = page.locator("#t2i-style-prompt textarea")
    expect(sent).to_be_hidden()  # no style: the prompt goes as typed

    page.locator("#t2i-style input").click()
    page.get_by_role("option", name="Oil painting", exact=True).click()

    expect(sent).to_have_value(f"a red fox, {OIL}")
    expect(page.locator("#t2i-style-negative textarea")).to_have_value(f"blurry, {OIL_NEGATIVE}")
    page.locator("#prompt textarea").fill("a red fox in snow")
    expect(sent).to_have_value(f"a red fox in snow, {OIL}")

    page.locator("#t2i-generate").click()
    expect(page.locator("#t2i-gallery img").first).to_be_visible(timeout=60_000)
    (made,) = kubin_server.saved_images() - before
    assert read_output_metadata(made)["params"]["prompt"] == f"a red fox in snow, {OIL}"

    page.locator("#t2i-send-ext-upscale").click()

    expect(page.get_by_role("tab", name="Tools", exact=True)).to_have_attribute("aria-selected", "true")
    expect(page.locator("#kubin-tool-tabs").get_by_role("tab", name="Upscale", exact=True)).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.locator("#tab-ext-upscaler")).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#upscaler-image img')].some(i => i.complete && i.naturalWidth > 0)"
    )
