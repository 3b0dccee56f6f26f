"""The bundled extensions on the running server: a prompt style picked through the /txt2img API reaches the
saved image, user styles saved through /styles_save, and the Outputs tab in Chromium (list, parameters,
delete with a confirmation, send to a tab with its prompt)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from browser_helpers import open_tool
from gradio_client import Client
from playwright.sync_api import Page, expect

from kubin.outputs import read_output_metadata
from kubin.params import TASK_LABELS

JOB_TIMEOUT_S = 60
OIL = "oil painting on canvas, visible brush strokes, rich colours, classical composition"
OIL_NEGATIVE = "photograph, 3d render, flat colours, low quality"


def txt2img(client: Client, **changes):
    """/txt2img called by parameter name, tiny and fast; returns the details JSON."""
    args = {
        "model_id": "tiny-kd22", "prompt": "a red cat", "negative_prompt": "", "width": 64, "height": 64,
        "steps": 2, "guidance_scale": 4.0, "prior_steps": 2, "prior_guidance_scale": 4.0, "seed": 42,
        "batch_count": 1, "batch_size": 1, "scheduler": "",
    } | changes  # fmt: skip
    _, _, details = client.submit(**args, api_name="/txt2img").result(timeout=JOB_TIMEOUT_S)
    assert details["state"] == "done", details
    return details


def saved_output(client: Client, prompt: str, seed: int) -> Path:
    (output,) = txt2img(client, prompt=prompt, seed=seed)["outputs"]
    return Path(output["file"])


def saved_meta(details) -> dict:
    (output,) = details["outputs"]
    return read_output_metadata(output["file"])


# --- styles through the API ---------------------------------------------------------------------------
def test_the_txt2img_api_names_the_style_picker_as_an_optional_parameter(api_client):
    params = api_client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/txt2img"]

    (style,) = [p for p in params["parameters"] if p["parameter_name"] == "ext_styles_style"]
    assert style["parameter_has_default"] and style["parameter_default"] == "(no style)"
    assert "Oil painting" in style["type"]["enum"]


def test_txt2img_with_a_style_saves_the_styled_prompt(api_client):
    details = txt2img(api_client, negative_prompt="blurry", ext_styles_style="Oil painting")

    meta = saved_meta(details)
    assert meta["params"]["prompt"] == f"a red cat, {OIL}"
    assert meta["params"]["negative_prompt"] == f"blurry, {OIL_NEGATIVE}"
    assert meta["extensions"] == {"styles": {"style": "Oil painting"}}
    assert details["params"]["prompt"] == f"a red cat, {OIL}", "the result's info shows what was generated"


def test_txt2img_without_a_style_keeps_the_prompt(api_client):
    meta = saved_meta(txt2img(api_client, prompt="a plain cat"))

    assert meta["params"]["prompt"] == "a plain cat"
    assert meta["extensions"] == {"styles": {"style": "(no style)"}}


@pytest.fixture
def moody(api_client, kubin_server):
    """Saves the user style "Moody UI" through /styles_save; deletes it again after the test."""
    reply = api_client.predict("Moody UI", "moody {prompt} in fog", "sunny", "", api_name="/styles_save")
    yield reply
    cleaner = Client(kubin_server.url, verbose=False, analytics_enabled=False)
    cleaner.predict("Moody UI", "", api_name="/styles_delete")
    cleaner.close()


def test_a_style_saved_through_the_api_is_written_and_usable_by_name(api_client, kubin_server, moody):
    status, listing = moody[0], moody[1]
    assert status == "Saved the style 'Moody UI'."
    rows = {row[0]: row for row in listing["data"]}
    assert rows["Moody UI"] == ["Moody UI", "moody {prompt} in fog", "sunny", "yours"]
    saved = yaml.safe_load(kubin_server.user_config.read_text(encoding="utf-8"))
    assert {"name": "Moody UI", "prompt": "moody {prompt} in fog", "negative_prompt": "sunny"} in saved[
        "extensions"
    ]["settings"]["styles"]["user_styles"]
    assert saved["server"]["host"] == "127.0.0.1", "hand-written keys survive"

    meta = saved_meta(txt2img(api_client, ext_styles_style="Moody UI"))

    assert meta["params"]["prompt"] == "moody a red cat in fog"
    assert meta["params"]["negative_prompt"] == "sunny"


def test_a_style_saved_through_the_api_is_usable_from_a_new_session(kubin_server, moody, tmp_path):
    fresh = Client(kubin_server.url, verbose=False, download_files=tmp_path, analytics_enabled=False)

    try:
        meta = saved_meta(txt2img(fresh, ext_styles_style="Moody UI"))
    finally:
        fresh.close()

    assert meta["params"]["prompt"] == "moody a red cat in fog"


def test_styles_save_refuses_a_template_without_the_prompt_and_delete_refuses_shipped(
    api_client, kubin_server
):
    before = kubin_server.user_config.read_text(encoding="utf-8")

    status = api_client.predict("Broken", "oil painting", "", "", api_name="/styles_save")[0]
    assert status.startswith("⚠ ") and "must contain {prompt}" in status
    status = api_client.predict("Oil painting", "", api_name="/styles_delete")[0]
    assert status == "⚠ 'Oil painting' is a shipped style; you can override it with one of your own."

    assert kubin_server.user_config.read_text(encoding="utf-8") == before


# --- the Outputs tab in Chromium ----------------------------------------------------------------------
def pick(page: Page, elem_id: str, choice: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=choice, exact=True).click()
    expect(page.locator(f"#{elem_id} input")).to_have_value(choice)


def show_newest_t2i(page: Page, date: str) -> None:
    """Open the Outputs tab and pick text-to-image on `date`."""
    open_tool(page, "Outputs")
    pick(page, "browser-task", "Text to image")
    pick(page, "browser-date", date)


def select_first(page: Page, expected_path: str) -> None:
    """Click the first (newest) output in the gallery and wait until it is the selected one."""
    first = page.locator("#browser-gallery button.thumbnail-item").first
    expect(first).to_be_visible(timeout=15_000)
    first.click()
    expect(page.locator("#browser-selected textarea")).to_have_value(expected_path, timeout=10_000)


@pytest.mark.browser
def test_the_outputs_tab_lists_new_outputs_under_task_names_without_a_refresh(new_page, api_client):
    older = saved_output(api_client, "an older lighthouse", seed=775)
    path = saved_output(api_client, "a lighthouse in a storm", seed=776)
    page = new_page("/")

    open_tool(page, "Outputs")  # no Refresh: what the folder holds now, the latest output's task first

    expect(page.locator("#browser-task input")).to_have_value("Text to image")
    expect(page.locator("#browser-date input")).to_have_value(path.parent.name)
    thumbs = page.locator("#browser-gallery button.thumbnail-item img")
    expect(thumbs.first).to_have_attribute("src", re.compile(re.escape(path.name)), timeout=15_000)
    expect(thumbs.nth(1)).to_have_attribute("src", re.compile(re.escape(older.name)))
    page.locator("#browser-task input").click()
    names = [n.splitlines()[-1].strip() for n in page.get_by_role("option").all_inner_texts()]  # after a ✓
    assert "Text to image" in names and not set(names) & set(TASK_LABELS), names
    page.keyboard.press("Escape")

    newer = saved_output(api_client, "a lighthouse at dawn", seed=779)  # made while the tab is open
    open_tool(page, "Styles")
    open_tool(page, "Outputs")  # coming back to the tab lists it

    expect(thumbs.first).to_have_attribute("src", re.compile(re.escape(newer.name)), timeout=15_000)


@pytest.mark.browser
def test_the_outputs_tab_shows_an_outputs_parameters_and_deletes_it_after_asking(
    new_page, api_client, artifacts_dir
):
    path = saved_output(api_client, "a lighthouse in a storm", seed=777)
    page = new_page("/")
    show_newest_t2i(page, path.parent.name)

    select_first(page, str(path))

    params = page.locator("#browser-params")
    expect(params).to_contain_text("a lighthouse in a storm")
    expect(params).to_contain_text("777")
    page.screenshot(path=str(artifacts_dir / "ui-ext-outputs.png"), full_page=True)

    page.locator("#browser-delete").click()
    expect(page.locator("#browser-status")).to_contain_text(f"Delete {path.name} for good?")
    expect(page.locator("#browser-confirm")).to_be_visible()
    assert path.exists(), "nothing is deleted before the confirmation"
    page.locator("#browser-keep").click()
    expect(page.locator("#browser-status")).to_contain_text("Kept.")
    expect(page.locator("#browser-confirm")).to_be_hidden()
    assert path.exists()

    page.locator("#browser-delete").click()
    page.get_by_role("button", name="Yes, delete it").click()

    expect(page.locator("#browser-status")).to_contain_text(f"Deleted {path.name}.")
    expect(page.locator("#browser-selected textarea")).to_have_value("")
    expect(page.locator("#browser-confirm")).to_be_hidden()
    assert not path.exists()


@pytest.mark.browser
def test_an_output_sent_from_the_outputs_tab_lands_in_image_to_image(new_page, api_client):
    path = saved_output(api_client, "a teapot on a shelf", seed=778)
    page = new_page("/")
    show_newest_t2i(page, path.parent.name)
    select_first(page, str(path))

    page.locator("#browser-send-i2i").click()

    expect(page.get_by_role("tab", name="Image to image", exact=True)).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.locator("#i2i-prompt textarea")).to_have_value("a teapot on a shelf")  # its prompt comes too
    expect(page.locator("#i2i-init-image img").first).to_be_visible(timeout=15_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#i2i-init-image img')].some(i => i.complete && i.naturalWidth > 0)"
    )
    assert path.exists(), "sending keeps the output"


@pytest.mark.browser
def test_selecting_in_a_listing_shown_before_a_new_output_selects_the_clicked_output(new_page, api_client):
    shown = saved_output(api_client, "a quiet harbour", seed=781)
    page = new_page("/")
    show_newest_t2i(page, shown.parent.name)
    first = page.locator("#browser-gallery button.thumbnail-item img").first
    expect(first).to_have_attribute("src", re.compile(re.escape(shown.name)), timeout=15_000)

    newer = saved_output(api_client, "a busy harbour", seed=782)  # saved while the listing is on screen
    select_first(page, str(shown))

    assert newer.exists() and shown.exists()


# --- the Styles tab in Chromium -----------------------------------------------------------------------
@pytest.mark.browser
def test_the_styles_tab_lists_the_shipped_styles_and_searches_them(new_page):
    page = new_page("/")
    open_tool(page, "Styles")
    expect(page.locator("#styles-table")).to_contain_text("Oil painting")

    page.locator("#styles-search textarea").fill("brush strokes")

    rows = page.locator("#styles-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Oil painting")
    expect(rows.first).to_contain_text("shipped")


@pytest.mark.browser
def test_clicking_a_style_puts_it_into_the_editor(new_page):
    page = new_page("/")
    open_tool(page, "Styles")
    page.locator("#styles-search textarea").fill("brush strokes")
    expect(page.locator("#styles-table tbody tr")).to_have_count(1)

    page.locator("#styles-table .body-cell.first-column").filter(has_text="Oil painting").click()

    expect(page.locator("#styles-name textarea")).to_have_value("Oil painting", timeout=10_000)
    expect(page.locator("#styles-prompt textarea")).to_have_value(f"{{prompt}}, {OIL}")
    expect(page.locator("#styles-negative textarea")).to_have_value(OIL_NEGATIVE)
