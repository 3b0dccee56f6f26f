"""Dynamic prompts and a prompts file in the text to image tab, in Chromium: every combination of a template,
each image captioned with the prompt it was made from, and a dropped prompts file queueing a job per line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_helpers import open_tab
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def captions(page: Page, count: int) -> list[str]:
    """The gallery's captions once it shows `count` images."""
    # Counted, not waited to load: a phone's browser loads the images below the screen only when scrolled to.
    expect(page.locator("#t2i-gallery .caption-label")).to_have_count(count, timeout=TIMEOUT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#t2i-gallery img')].some(i => i.complete && i.naturalWidth > 0)",
        timeout=TIMEOUT_MS,
    )
    return page.locator("#t2i-gallery .caption-label").all_inner_texts()


def shot(page: Page, artifacts_dir: Path, name: str) -> None:
    page.screenshot(path=artifacts_dir / f"prompts-{name}", full_page=True)


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_a_template_makes_every_combination_and_a_prompts_file_a_job_per_line(
    new_page, artifacts_dir, tmp_path, screen
):
    page = new_page("/", **(PHONE if screen == "phone" else {"viewport": {"width": 1366, "height": 900}}))
    page.locator("#prompt textarea").fill("a {red|blue} __colors__ cat")
    page.locator("#prompt-mode input").click()
    page.get_by_role("option", name="combinatorial", exact=True).click()
    expect(page.locator("#prompt-mode input")).to_have_value("combinatorial")
    page.locator("#t2i-generate").click()

    made = captions(page, 6)
    assert [re.sub(r"^seed \d+ · ", "", c) for c in made] == [
        f"a {a} {b} cat" for a in ("red", "blue") for b in ("blue", "green", "red")
    ]
    expect(page.locator("#t2i-info")).to_contain_text("6 of 6 image(s)")
    shot(page, artifacts_dir, f"combinations-{screen}.png")
    page.locator("#t2i-send-i2i").click()  # the first image, with the prompt it was made from
    expect(page.locator("#i2i-prompt textarea")).to_have_value("a red blue cat")
    open_tab(page, "Text to image")

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# three jobs\na cat\na {big|small} dog\n\nan __colors__ bird\n", encoding="utf-8")
    page.locator("#t2i-prompts-file-box").get_by_text("Prompts from file").click()
    page.locator("#t2i-prompts-file input[type=file]").set_input_files(str(prompts))

    info = page.locator("#t2i-info")
    expect(info).to_contain_text("Prompts file: job 3 of 3 (line 5) · 6 image(s) so far", timeout=TIMEOUT_MS)
    # Each line's combinations (the mode is the tab's): 1 + 2 + 3 images, captioned with their prompts.
    made = [re.sub(r"^seed \d+ · ", "", c) for c in captions(page, 6)]
    assert made[0].startswith("seed "), "a line without a template is captioned with its seed alone"
    assert made[1:] == ["a big dog", "a small dog", "an blue bird", "an green bird", "an red bird"]
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), (
        "no sideways scroll"
    )
    page.locator("#t2i-prompts-file-box").scroll_into_view_if_needed()
    shot(page, artifacts_dir, f"prompts-file-{screen}.png")
