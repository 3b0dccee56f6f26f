"""The tool models over real HTTP (the shared server runs tiny-depth, tiny-caption and tiny-enhance): A1111's
/sdapi/v1/interrogate in its own shape, Kubin's /kubin/api/v1/tools/*, and a task that estimates the depth of
a hint photo."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

API = "/kubin/api/v1"


def b64_png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def photo() -> str:
    return b64_png(Image.fromarray((np.random.default_rng(5).random((40, 72, 3)) * 255).astype(np.uint8)))


def test_interrogate_answers_in_a1111s_shape_and_the_native_caption_agrees(http, photo):
    reply = http.post("/sdapi/v1/interrogate", json={"image": photo, "model": "clip"})

    assert reply.status_code == 200, reply.text
    assert list(reply.json()) == ["caption"] and reply.json()["caption"].strip()
    native = http.post(f"{API}/tools/caption", json={"image": photo, "detail": "detailed"}).json()
    assert native == {"caption": reply.json()["caption"], "mode": "detailed", "caption_model": "tiny-caption"}
    tags = http.post(f"{API}/tools/caption", json={"image": photo, "mode": "tags"}).json()
    assert tags["mode"] == "tags" and tags["caption"].strip() and tags["caption"] != native["caption"]
    tagger = http.post("/sdapi/v1/interrogate", json={"image": photo, "model": "deepdanbooru"})
    assert tagger.json() == {"caption": tags["caption"]}  # A1111's tagger: tags

    assert http.post("/sdapi/v1/interrogate", json={"image": "bm90IGFuIGltYWdl"}).status_code == 422
    bad_mode = http.post(f"{API}/tools/caption", json={"image": photo, "mode": "a poem"})
    assert bad_mode.status_code == 422 and "Unknown caption mode 'a poem'" in bad_mode.json()["detail"]


def test_the_depth_route_saves_a_single_channel_map_of_the_photos_size(http, photo):
    reply = http.post(f"{API}/tools/depth", json={"image": photo})

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["width"], body["height"], body["depth_model"]) == (72, 40, "tiny-depth")
    saved = Image.open(io.BytesIO(http.get(body["url"]).content))
    assert saved.mode == "L" and saved.size == (72, 40)


def test_a_task_estimates_the_depth_of_a_hint_photo(http, photo):
    reply = http.post(f"{API}/tasks/t2i", json={"prompt": "a room", "width": 64, "height": 64, "steps": 2,
                                               "prior_steps": 2, "hint_image": photo, "estimate_depth": "always"})  # fmt: skip

    assert reply.status_code == 200, reply.text
    result = reply.json()["results"][0]
    assert result["depth_model"] == "tiny-depth" and result["depth_map"].endswith(".png")
    assert any("estimated its depth map" in n for n in reply.json()["notices"])


def test_the_enhance_route_expands_a_prompt_for_the_model(http):
    reply = http.post(f"{API}/tools/enhance", json={"prompt": "a red cat"})

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["prompt"] == "a red cat" and body["enhanced"] and body["enhanced"] != "a red cat"
    assert (body["model"], body["enhance_model"]) == ("tiny-kd22", "tiny-enhance")


def test_a_tool_model_set_in_settings_applies_at_once_and_missing_weights_name_it(
    api_client, kubin_server, http, photo
):
    def save(caption_model: str) -> str:
        return api_client.predict("tiny-kd22", "auto", "auto", str(kubin_server.output_dir),
                                  wildcards_dir=str(kubin_server.wildcards_dir), caption_model=caption_model,
                                  api_name="/save_settings")  # fmt: skip

    try:
        assert save("someone/missing-captioner").startswith("✓ Saved")
        reply = http.post("/sdapi/v1/interrogate", json={"image": photo})

        assert reply.status_code == 503
        assert "someone/missing-captioner" in reply.json()["detail"]
        assert "kubin download someone/missing-captioner" in reply.json()["detail"]
        assert "caption_model: someone/missing-captioner" in kubin_server.user_config.read_text()
    finally:
        save("tiny-caption")
    assert http.post("/sdapi/v1/interrogate", json={"image": photo}).status_code == 200


def caption_by(http, photo: str, model: str, mode: str = "detailed") -> str:
    reply = http.post(f"{API}/tools/caption", json={"image": photo, "mode": mode, "model": model})
    assert reply.status_code == 200, reply.text
    return reply.json()["caption"]


def test_describe_answers_under_every_input_image_of_the_task_tabs(api_client, http, tmp_path, photo):
    from gradio_client import handle_file

    path = tmp_path / "photo.png"
    path.write_bytes(base64.b64decode(photo))
    picture = handle_file(str(path))
    editor = {"background": picture, "layers": [], "composite": picture}

    said = {
        tab: api_client.predict(editor if tab == "inpaint" else picture, api_name=f"/{tab}_describe")
        for tab in ("i2i", "inpaint", "outpaint", "i2v")
    }

    assert said["i2i"] == said["inpaint"] == said["outpaint"] and said["i2i"].strip()  # the same words
    # Image to video starts on a Kandinsky 5 model here, whose own encoder describes the picture.
    assert said["i2v"] == caption_by(http, photo, "tiny-kd50-i2v")


def test_a_kandinsky_5_model_captions_with_its_own_encoder_in_describe_and_the_api(
    api_client, http, tmp_path, photo
):
    from gradio_client import handle_file

    path = tmp_path / "photo.png"
    path.write_bytes(base64.b64decode(photo))

    described = api_client.predict(handle_file(str(path)), "tiny-kd50-i2i", api_name="/i2i_describe")
    native = http.post(
        f"{API}/tools/caption", json={"image": photo, "detail": "detailed", "model": "tiny-kd50-i2i"}
    )
    florence = http.post(f"{API}/tools/caption", json={"image": photo, "detail": "detailed"}).json()
    tags = api_client.predict(handle_file(str(path)), "tiny-kd50-i2i", "tags", api_name="/i2i_describe")

    assert native.status_code == 200, native.text
    assert native.json()["caption_model"] == "tiny-kd50-i2i" and florence["caption_model"] == "tiny-caption"
    assert described == native.json()["caption"] != florence["caption"]
    assert tags == caption_by(http, photo, "tiny-kd50-i2i", "tags") != described  # the mode reaches it
