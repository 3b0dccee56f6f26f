"""Helpers the browser tests share (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

# The top row, in order; the tool extensions' tabs sit inside Tools.
TOP_TABS = ["Text to image", "Image to image", "Mix", "Inpaint", "Outpaint", "Text to video", "Image to video",
            "3D", "Training", "Tools", "Settings", "Extensions"]  # fmt: skip
TOOL_IDS = {"Outputs": "ext-browser", "Captions": "ext-captions", "Hello": "ext-hello", "Remove background": "ext-rembg",
            "Segment": "ext-segment", "Styles": "ext-styles", "Upscale": "ext-upscaler", "Video upscale": "vsr",
            "History": "history"}  # fmt: skip
TAB_IDS = {"Text to image": "t2i", "Image to image": "i2i", "Mix": "mix", "Inpaint": "inpaint",
           "Outpaint": "outpaint", "Text to video": "t2v", "Image to video": "i2v", "3D": "mesh", "Training": "training",
           "Settings": "settings"}  # fmt: skip


def open_tab(page: Page, label: str) -> None:
    """Click a top-row tab (the row wraps on a narrow screen: every tab stays in sight)."""
    page.get_by_role("tab", name=label, exact=True).click()
    expect(page.locator(f"#tab-{TAB_IDS[label]}")).to_be_visible()


def open_tool(page: Page, label: str) -> None:
    """Open the Tools tab, then the tool's tab inside it."""
    page.get_by_role("tab", name="Tools", exact=True).click()
    page.locator("#kubin-tool-tabs").get_by_role("tab", name=label, exact=True).click()
    expect(page.locator(f"#tab-{TOOL_IDS[label]}")).to_be_visible()
