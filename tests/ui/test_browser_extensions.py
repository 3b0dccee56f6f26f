"""Extension tabs in the page: the bundled example's tab works, and the Extensions tab lists it."""

import re

import pytest

pytestmark = pytest.mark.browser


def click_tab(page, label: str) -> None:
    """With the bundled extensions' tabs, the last ones sit in the tab bar's "More tabs" menu."""
    button = page.get_by_role("tab", name=label, exact=True)
    if not button.is_visible():
        page.get_by_role("button", name="More tabs").click()
        button = page.locator(".overflow-dropdown button").filter(has_text=re.compile(f"^{label}$"))
    button.click()


def test_the_example_extension_adds_a_working_tab_and_is_listed(new_page, artifacts_dir):
    page = new_page("/")

    click_tab(page, "Hello")
    assert page.locator("#hello-greeting").inner_text().strip() == "Hello from an extension!"
    page.locator("#hello-refresh").click()
    page.wait_for_function(
        "() => document.querySelector('#hello-count')?.innerText.includes('image(s) made since Kubin started')"
    )

    click_tab(page, "Extensions")
    listing = page.locator("#extensions-list").inner_text()
    assert "Hello" in listing and "hello" in listing and "ok" in listing
    page.screenshot(path=str(artifacts_dir / "ui-extensions.png"), full_page=True)
