"""LoRA through both REST APIs of the shared server: /sdapi/v1/loras lists the folder in A1111's shape,
a <lora:name:weight> tag in an A1111 prompt and `loras` in a native request apply the same adapter, and
the saved PNG says which (A1111's `Lora hashes`)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from lora_helpers import kd22_decoder_lora
from PIL import Image

BODY = {"steps": 2, "width": 64, "height": 64, "seed": 5}


def image_of(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(int)


@pytest.fixture
def lora_file(http, kubin_server):
    """ink.safetensors in the server's LoRA folder (scanned again); taken away after the test."""
    path = kd22_decoder_lora(kubin_server.lora_dir / "ink.safetensors")
    assert http.post("/sdapi/v1/refresh-loras").status_code == 200
    yield path
    path.unlink()
    http.post("/sdapi/v1/refresh-loras")


def test_both_apis_list_and_apply_a_lora_and_the_png_records_it(http, lora_file):
    from kubin.models.lora import file_hash

    listed = http.get("/sdapi/v1/loras").json()
    assert listed == [
        {"name": "ink", "alias": "ink", "path": str(lora_file), "metadata": listed[0]["metadata"]}
    ]
    assert listed[0]["metadata"]["modelspec.trigger_phrase"] == "inkstyle"
    native = http.get("/kubin/api/v1/loras").json()
    assert [(f["name"], f["family"], f["part"], f["rank"]) for f in native] == [("ink", "kd22", "decoder", 4)]

    plain = http.post("/sdapi/v1/txt2img", json={**BODY, "prompt": "a red cat"}).json()
    tagged = http.post("/sdapi/v1/txt2img", json={**BODY, "prompt": "a red cat <lora:ink:0.8>"}).json()
    assert np.abs(image_of(plain["images"][0]) - image_of(tagged["images"][0])).mean() > 1
    infotext = json.loads(tagged["info"])["infotexts"][0]
    assert infotext.startswith("a red cat\n") and f'Lora hashes: "ink: {file_hash(lora_file)}"' in infotext

    job = http.post("/kubin/api/v1/tasks/t2i", json={**BODY, "prompt": "a red cat",
                                                     "loras": [{"name": "ink", "weight": 0.8}]}).json()  # fmt: skip
    assert job["state"] == "done", job
    with Image.open(job["results"][0]["path"]) as made:
        same = np.asarray(made.convert("RGB")).astype(int)
    assert np.array_equal(same, image_of(tagged["images"][0]))

    other = http.post("/kubin/api/v1/tasks/t2i", json={**BODY, "loras": ["nothere"]})
    assert other.status_code == 422 and "No LoRA named 'nothere'" in other.text


def test_the_tab_takes_loras_and_restoring_its_png_selects_them_again(api_client, lora_file, kubin_server):
    from gradio_client import handle_file

    tiny = {"model_id": "tiny-kd22", "prompt": "a red cat", "width": 64, "height": 64, "steps": 2,
            "prior_steps": 2, "seed": 5}  # fmt: skip
    details = api_client.predict(**tiny, loras=["ink:0.8"], api_name="/txt2img")[2]
    made = details["outputs"][0]["file"]
    assert details["params"]["loras"] == ["ink:0.8"]
    *updates, status = api_client.predict(handle_file(made), api_name="/t2i_restore")
    assert ["ink:0.8"] in [update.get("value") for update in updates]
    assert "Restored the parameters" in status and "Not on this machine" not in status
    lora_file.rename(lora_file.with_suffix(".away"))  # the adapter is gone from this machine
    try:
        status = api_client.predict(handle_file(made), api_name="/t2i_restore")[-1]
    finally:
        lora_file.with_suffix(".away").rename(lora_file)
    assert status.endswith("Not on this machine (add them to the LoRA folder): ink.")
