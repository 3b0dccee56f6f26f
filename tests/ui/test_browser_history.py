"""The History tool in Chromium: a running job shows its progress there, Cancel stops it, and the row then
shows its final state and the thumbnails of what it saved; Re-run queues it again; on a phone the table scrolls inside its box."""

from __future__ import annotations

import re
import time

from browser_helpers import open_tool
from playwright.sync_api import expect

API = "/kubin/api/v1"
SLOW_MS = 30_000  # a click that waits for the server on a busy machine
DESKTOP = {"viewport": {"width": 1366, "height": 900}}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}
LONG = {"prompt": "panel fox", "steps": 200, "prior_steps": 2, "batch_count": 50, "width": 64, "height": 64}


def test_the_history_panel_shows_a_jobs_progress_and_its_result(new_page, http, artifacts_dir):
    job = http.post(f"{API}/tasks/t2i", params={"wait": False}, json=LONG).json()
    deadline = time.monotonic() + 120
    while not http.get(f"{API}/jobs/{job['id']}").json()["results"]:  # one output saved, more to come
        assert time.monotonic() < deadline, "the job saved nothing"
        time.sleep(0.05)

    page = new_page("/", **DESKTOP)
    open_tool(page, "History")
    page.locator("#history-filter textarea, #history-filter input").first.fill("panel fox")
    page.locator("#history-filter textarea, #history-filter input").first.press("Enter")
    row = page.locator("#history-table tr", has_text="panel fox")
    expect(row).to_have_count(1, timeout=SLOW_MS)
    expect(row.locator(".history-state")).to_contain_text("running")
    # Its stage: the batch and the phase under way, e.g. "Batch 3/50 · Decoder 120/200".
    expect(row.locator(".history-state")).to_contain_text(re.compile(r"Batch \d+/50 · (Prior|Decoder) \d+/"))
    expect(row).to_contain_text("t2i · API")  # queued through the REST API
    page.screenshot(path=artifacts_dir / "ui-history-running-desktop.png")

    page.locator("#history-cancel").click()
    expect(page.locator("#history-said")).to_contain_text("cancelled", timeout=SLOW_MS)
    expect(row.locator(".history-state")).to_contain_text("cancelled", timeout=SLOW_MS)
    thumb = row.locator(".history-thumbs img").first
    expect(thumb).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=thumb.element_handle())
    page.screenshot(path=artifacts_dir / "ui-history-done-desktop.png")

    page.locator("#history-rerun").click()  # the same job again, with its seed: listed first
    expect(page.locator("#history-said")).to_contain_text("Queued again", timeout=SLOW_MS)
    expect(row).to_have_count(2, timeout=SLOW_MS)
    expect(row.first.locator(".history-state")).to_contain_text(re.compile("queued|running"))
    page.locator("#history-cancel").click()  # the picker holds the new one
    expect(row.first.locator(".history-state")).to_contain_text("cancelled", timeout=SLOW_MS)

    phone = new_page("/", **PHONE)
    open_tool(phone, "History")
    prow = phone.locator("#history-table tr", has_text="panel fox")
    expect(prow).to_have_count(2, timeout=SLOW_MS)
    expect(prow.last.locator(".history-state")).to_contain_text("cancelled", timeout=SLOW_MS)
    http.post(f"{API}/tasks/t2i", params={"wait": False}, json=LONG | {"batch_count": 1, "steps": 2})
    expect(prow).to_have_count(3, timeout=SLOW_MS)  # a new job shows without a click on Refresh
    expect(prow.first.locator(".history-state")).to_contain_text("done", timeout=SLOW_MS)
    box = phone.locator("#kubin-history").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 + 1, "the panel fits the phone's width"
    phone.screenshot(path=artifacts_dir / "ui-history-phone.png")
