"""Helpers the browser tests share (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

TAB_IDS = {"Text to image": "t2i", "Image to image": "i2i", "Mix": "mix", "Inpaint": "inpaint",
           "Outpaint": "outpaint", "Text to video": "t2v", "Image to video": "i2v", "3D": "mesh", "Settings": "settings"}  # fmt: skip


def open_tab(page: Page, label: str) -> None:
    """Click the tab's button; on a narrow screen it may sit in the tab bar's "More tabs" menu."""
    button = page.get_by_role("tab", name=label, exact=True)
    if not button.is_visible():
        page.get_by_role("button", name="More tabs").click()
        button = page.locator(".overflow-dropdown button").filter(has_text=re.compile(f"^{label}$"))
    button.click()
    expect(page.locator(f"#tab-{TAB_IDS[label]}")).to_be_visible()
