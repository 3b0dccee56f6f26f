"""The Settings tab as a user sees it in Chromium, on a server started without a user config file: empty
defaults stay empty and save, a page opened after a save shows what was saved, and the "file does not exist
yet" warning goes once the file is written. Its own server: saving changes the output folder."""

from __future__ import annotations

import pytest
import yaml
from browser_helpers import open_tab
from cli_helpers import kubin_server
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1366, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DEFAULT_LABELS = ["Width", "Height", "Steps", "Guidance scale", "Prior steps", "Prior guidance scale"]
NOT_YET = "does not exist yet"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("kubin-settings")
    env = {"KUBIN_CACHE_DIR": str(root / "kubin-cache"), "HF_HOME": str(root / "hf-home")}
    with kubin_server(root, "--model", "tiny-kd22", "--output-dir", str(root / "output"), config=None,
                      env=env, timeout=60) as running:  # fmt: skip
        yield running


@pytest.fixture
def open_settings(browser, server):
    contexts = []

    def open_page(options: dict) -> Page:
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(server.url)
        page.wait_for_selector("#prompt textarea")
        open_tab(page, "Settings")
        return page

    yield open_page
    for context in contexts:
        context.close()


def saved(server) -> dict:
    return yaml.safe_load(server.user_config.read_text(encoding="utf-8"))


def default_box(page: Page, label: str):
    """One of the "Text to image defaults" boxes, found by its label as a user finds it."""
    return page.locator("#tab-settings").get_by_label(label, exact=True)


def save(page: Page) -> None:
    page.locator("#settings-save").click()
    expect(page.locator("#settings-status")).to_contain_text("✓ Saved to", timeout=15_000)


def test_a_page_opened_after_a_save_shows_what_was_saved_and_no_warning(open_settings, server, tmp_path):
    # The first test of the module: nothing has been saved yet.
    first = open_settings(DESKTOP)
    expect(first.get_by_text(NOT_YET)).to_have_count(2)  # in the header and in the Settings tab

    first.locator("#tab-settings").get_by_label("Output folder", exact=True).fill(str(tmp_path / "kept"))
    default_box(first, "Steps").fill("7")
    save(first)

    expect(first.get_by_text(NOT_YET)).to_have_count(0)  # gone from this page at once
    assert (tmp_path / "kept" / "kubin-history.sqlite3").is_file(), "the job history moves with the folder"
    second = open_settings(DESKTOP)  # a reload: a new page
    expect(second.locator("#tab-settings").get_by_label("Output folder", exact=True)).to_have_value(
        str(tmp_path / "kept")
    )
    expect(default_box(second, "Steps")).to_have_value("7")
    expect(second.get_by_text(NOT_YET)).to_have_count(0)

    # Saving from the new page keeps what was saved; clearing a default removes it from the file.
    default_box(second, "Steps").fill("")
    save(second)
    assert saved(server)["output_dir"] == str(tmp_path / "kept")
    assert saved(server)["ui"]["defaults"]["t2i"] == {}


@pytest.mark.parametrize("screen", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_empty_defaults_stay_empty_and_save(open_settings, server, tmp_path, screen):
    page = open_settings(screen)
    for label in DEFAULT_LABELS:
        expect(default_box(page, label)).to_have_value("")

    page.locator("#tab-settings").get_by_label("Output folder", exact=True).fill(str(tmp_path / "out"))
    save(page)

    expect(page.get_by_test_id("toast-body")).to_have_count(0)
    assert saved(server)["output_dir"] == str(tmp_path / "out")
    assert saved(server)["ui"]["defaults"]["t2i"] == {}
    assert "Traceback" not in server.log()
    for label in DEFAULT_LABELS:
        expect(default_box(page, label)).to_have_value("")
