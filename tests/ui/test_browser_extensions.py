"""Extension tabs in the page: the bundled example's tab works, and the Extensions tab lists it."""

import pytest

pytestmark = pytest.mark.browser


def test_the_example_extension_adds_a_working_tab_and_is_listed(new_page, artifacts_dir):
    page = new_page("/")

    page.get_by_role("tab", name="Hello").click()
    assert page.locator("#hello-greeting").inner_text().strip() == "Hello from an extension!"
    page.locator("#hello-refresh").click()
    page.wait_for_function(
        "() => document.querySelector('#hello-count')?.innerText.includes('image(s) made since Kubin started')"
    )

    page.get_by_role("tab", name="Extensions").click()
    listing = page.locator("#extensions-list").inner_text()
    assert "Hello" in listing and "hello" in listing and "ok" in listing
    page.screenshot(path=str(artifacts_dir / "ui-extensions.png"), full_page=True)
