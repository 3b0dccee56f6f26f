"""Kandinsky 6 in the video tabs as a user sees them in Chromium: the Sound and Expand prompt switches appear
for a model that makes sound (and only then), the result plays in the gallery with its soundtrack, and the
expanded prompt is shown under it, on a desktop and on a phone."""

from __future__ import annotations

import re

import pytest
from browser_helpers import open_tab
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

VIDEO_TIMEOUT_MS = 90_000

# The browser decodes the gallery video's own soundtrack (Web Audio reads the AAC track of the mp4) and
# plays the video for a moment: what it decoded of the sound, and the video's length.
SOUND_CHECK = """async () => {
  const v = document.querySelector('#t2v-gallery video');
  const data = await (await fetch(v.currentSrc || v.src)).arrayBuffer();
  const sound = await new AudioContext().decodeAudioData(data);
  v.muted = true;
  await v.play();
  await new Promise(r => setTimeout(r, 700));
  v.pause();
  return {duration: v.duration, seconds: sound.duration, channels: sound.numberOfChannels,
          decoded: v.webkitAudioDecodedByteCount ?? null};
}"""


def choose_model(page, elem_id: str, model_id: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.fill(model_id)
    page.get_by_role("option", name=re.compile(f"^{re.escape(model_id)} ")).click()


@pytest.mark.parametrize("viewport", [(1366, 900), (390, 844)], ids=["desktop", "phone"])
def test_a_kandinsky_6_video_plays_with_its_sound_and_shows_its_expanded_prompt(
    new_page, artifacts_dir, viewport
):
    page = new_page("/", viewport={"width": viewport[0], "height": viewport[1]})
    open_tab(page, "Text to video")
    sound, expand = page.locator("#t2v-sample-audio"), page.locator("#t2v-expand-prompt")
    expect(sound).to_be_hidden()  # Kandinsky 5 makes no sound
    expect(expand).to_be_hidden()

    choose_model(page, "t2v-model", "tiny-kd6")
    expect(sound).to_be_visible()
    expect(sound.locator("input")).to_be_checked()  # on by default
    expect(expand.locator("input")).not_to_be_checked()
    expand.locator("input").check()
    page.locator("#t2v-prompt textarea").fill("a drummer on a rooftop")
    page.locator("#t2v-frames input[type=number]").fill("17")
    page.locator("#t2v-steps input[type=number]").fill("2")
    page.locator("#t2v-generate").click()

    expect(page.locator("#t2v-gallery video").first).to_be_attached(timeout=VIDEO_TIMEOUT_MS)
    info = page.locator("#t2v-info")
    expect(info).to_contain_text("With sound", timeout=VIDEO_TIMEOUT_MS)
    expect(info).to_contain_text("Expanded prompt")
    expect(info).to_contain_text(".wav")
    heard = page.evaluate(SOUND_CHECK)
    assert heard["duration"] > 1.5 and abs(heard["seconds"] - 17 / 8) < 0.1, heard  # 17 frames at 8 fps
    assert heard["channels"] == 1
    assert heard["decoded"] > 0, heard  # Chromium played the sound track (it counts the bytes it decoded)
    page.locator("#t2v-gallery video").first.scroll_into_view_if_needed()
    device = "phone" if viewport[0] < 500 else "desktop"
    page.screenshot(path=artifacts_dir / f"ui-t2v-sound-{device}.png", full_page=True)

    # Image to video offers the same switches for the same model.
    open_tab(page, "Image to video")
    choose_model(page, "i2v-model", "tiny-kd6")
    expect(page.locator("#i2v-sample-audio")).to_be_visible()
    expect(page.locator("#i2v-expand-prompt")).to_be_visible()
    page.screenshot(path=artifacts_dir / f"ui-i2v-sound-{device}.png", full_page=True)


def test_a_video_sent_to_video_upscale_comes_back_larger_with_its_sound(new_page, artifacts_dir):
    page = new_page("/", viewport={"width": 1366, "height": 900})
    open_tab(page, "Text to video")
    choose_model(page, "t2v-model", "tiny-kd6")
    page.locator("#t2v-prompt textarea").fill("a bell rings")
    page.locator("#t2v-steps input[type=number]").fill("1")
    page.locator("#t2v-generate").click()
    expect(page.locator("#t2v-info")).to_contain_text("With sound", timeout=VIDEO_TIMEOUT_MS)

    page.locator("#t2v-send-vsr").click()

    expect(page.get_by_role("tab", name="Tools", exact=True)).to_have_attribute("aria-selected", "true")
    tool = page.locator("#kubin-tool-tabs").get_by_role("tab", name="Video upscale", exact=True)
    expect(tool).to_have_attribute("aria-selected", "true")
    expect(page.locator("#vsr-init-video video")).to_be_attached(timeout=15_000)
    expect(page.locator("#vsr-model input")).to_have_value(re.compile(r"^tiny-kd6-sr "))
    page.locator("#vsr-scale").get_by_label("2", exact=True).check()
    page.locator("#vsr-tile-overlap input[type=number]").fill(
        "0"
    )  # a 64x64 video in 16x16 tiles: 4x4 of them
    page.locator("#vsr-generate").click()

    info = page.locator("#vsr-info")
    expect(info).to_contain_text("17 frames at 8 fps, 128x128", timeout=VIDEO_TIMEOUT_MS * 2)
    expect(info).to_contain_text("With sound")
    page.wait_for_function(
        "() => { const v = document.querySelector('#vsr-gallery video'); return v && v.duration > 1.5; }",
        timeout=VIDEO_TIMEOUT_MS,
    )
    page.screenshot(path=artifacts_dir / "ui-vsr-desktop.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#vsr-generate")).to_be_visible()
    page.screenshot(path=artifacts_dir / "ui-vsr-phone.png", full_page=True)
