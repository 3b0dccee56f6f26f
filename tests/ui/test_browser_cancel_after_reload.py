"""Cancel from a page that was reloaded: the browser that started a job can still stop it (the owner of
its jobs is kept in the browser, not in the page's session)."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

JOBS = "/kubin/api/v1/jobs"
BATCHES = 5


def set_slider(page, label: str, value: int) -> None:
    box = page.locator(f'input[aria-label="number input for {label}"]')
    box.fill(str(value))
    box.press("Tab")
    expect(box).to_have_value(str(value))


@pytest.mark.parametrize(
    "screen",
    [
        {"viewport": {"width": 1366, "height": 900}},
        {"viewport": {"width": 390, "height": 844}, "is_mobile": True},
    ],
    ids=["desktop", "phone"],
)
def test_a_job_started_before_a_reload_can_be_cancelled_after_it(new_page, kubin_server, screen):
    before = kubin_server.saved_images()
    page = new_page("/", **screen)
    page.locator("#prompt textarea").fill("a slow snail")
    set_slider(page, "Steps", 500)
    set_slider(page, "Batch count", BATCHES)
    page.locator("#t2i-generate").click()
    expect(page.get_by_text(re.compile(r"Decoder \d+/500")).first).to_be_visible(timeout=60_000)
    with httpx.Client(base_url=kubin_server.url, timeout=30) as http:
        try:
            (job,) = [j for j in http.get(JOBS).json() if j["state"] == "running"]

            page.reload()
            page.wait_for_selector("#prompt textarea")
            page.wait_for_timeout(500)  # the page's load events have run
            cancel = page.locator("#t2i-cancel")
            cancel.scroll_into_view_if_needed()
            expect(cancel).to_be_enabled()  # the reloaded page knows its job runs
            cancel.click()

            expect(page.locator("#t2i-cancel-status")).to_contain_text("Cancel requested")
            deadline = time.monotonic() + 30
            while job["id"] in [j["id"] for j in http.get(JOBS).json()]:
                assert time.monotonic() < deadline, "the job did not stop"
                time.sleep(0.2)
            assert len(kubin_server.saved_images() - before) < BATCHES, "the job ran to its end"
        finally:  # never leave a long job in the shared server's queue
            for running in http.get(JOBS).json():
                if running["state"] in ("queued", "running"):
                    http.post(f"{JOBS}/{running['id']}/cancel")
