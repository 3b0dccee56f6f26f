"""Extension tabs in the page: the bundled example's tab (switched on in the test server's config) works, in
the Tools tab, and the Extensions tab lists it."""

import pytest
from browser_helpers import open_tool

pytestmark = pytest.mark.browser


def test_the_example_extension_adds_a_working_tab_and_is_listed(new_page, artifacts_dir):
    page = new_page("/")

    open_tool(page, "Hello")
    assert page.locator("#hello-greeting").inner_text().strip() == "Hello from an extension!"
    page.locator("#hello-refresh").click()
    page.wait_for_function(
        "() => document.querySelector('#hello-count')?.innerText.includes('image(s) made since Kubin started')"
    )

    page.get_by_role("tab", name="Extensions", exact=True).click()
    listing = page.locator("#extensions-list").inner_text()
    assert "Hello" in listing and "hello" in listing and "ok" in listing
    page.screenshot(path=str(artifacts_dir / "ui-extensions.png"), full_page=True)
