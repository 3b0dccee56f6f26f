"""The AUTOMATIC1111-compatible REST API over real HTTP, as A1111 clients call it: txt2img, img2img
(with a mask: inpainting), models, options, samplers, progress, interrupt, png-info; error codes;
concurrent clients sharing the one queue; a client that disconnects."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

TIMEOUT_S = 120


def b64_png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def txt2img(http, **fields) -> dict:
    body = {"prompt": "a red cat", "steps": 2, "width": 64, "height": 64, "seed": 42} | fields
    reply = http.post("/sdapi/v1/txt2img", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_txt2img_answers_like_a1111_with_the_saved_pngs(http, kubin_server):
    reply = txt2img(http, prompt="a lighthouse", negative_prompt="fog", seed=7, batch_size=2, cfg_scale=5)
    assert set(reply) == {"images", "parameters", "info"}
    info = json.loads(reply["info"])
    assert info["seed"] == 7 and info["all_seeds"] == [7, 8]
    assert info["prompt"] == "a lighthouse" and info["negative_prompt"] == "fog"
    assert (info["width"], info["height"], info["steps"], info["cfg_scale"]) == (64, 64, 2, 5.0)
    assert info["batch_size"] == 2 and info["n_iter"] == 1 and info["sd_model_name"] == "tiny-kd22"
    assert info["sampler_name"] and len(info["job_timestamp"]) == 14
    assert reply["parameters"]["prompt"] == "a lighthouse" and reply["parameters"]["cfg_scale"] == 5
    assert len(reply["images"]) == 2 and len(info["infotexts"]) == 2
    for b64, infotext, file in zip(reply["images"], info["infotexts"], info["files"], strict=True):
        saved = Path(file)
        assert saved.is_relative_to(kubin_server.output_dir) and saved.is_file()
        assert base64.b64decode(b64) == saved.read_bytes(), "the response carries the saved PNG itself"
        image = decode(b64)
        assert image.size == (64, 64)
        assert image.text["parameters"] == infotext and infotext.startswith(
            "a lighthouse\nNegative prompt: fog"
        )


def test_fields_without_meaning_for_kandinsky_are_ignored_and_unknown_ones_rejected(http):
    reply = txt2img(http, restore_faces=True, enable_hr=True, hr_scale=2, styles=[], tiling=False, n_iter=1)
    assert {"restore_faces", "enable_hr", "hr_scale"} <= set(json.loads(reply["info"])["ignored_fields"])

    bad = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "not_a_field": 1})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "not_a_field"]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"width": 100}, "multiple of 64"),
        ({"steps": 0}, "Steps"),
        ({"sampler_name": "Not a sampler"}, "DPM++ 2M"),
        ({"prompt": "x" * 2_000_000}, "Prompt is 2,000,000 characters long; the limit is 10,000"),
        ({"negative_prompt": "x" * 10_001}, "Negative prompt is 10,001 characters long"),
        ({"batch_size": 99}, "Batch size"),
        ({"override_settings": {"sd_model_checkpoint": "no-such-model"}}, "Unknown model"),
    ],
)
def test_bad_input_is_a_422_with_one_clear_sentence(http, fields, words):
    reply = http.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2} | fields)
    assert reply.status_code == 422, reply.text
    assert words in reply.json()["detail"]
    assert "Traceback" not in reply.text


def test_missing_weights_are_a_503_naming_the_model(http):
    reply = http.post(
        "/sdapi/v1/txt2img", json={"prompt": "x", "override_settings": {"sd_model_checkpoint": "kd22"}}
    )
    assert reply.status_code == 503
    assert "kubin download kd22" in reply.json()["detail"]


def test_a1111_sampler_names_map_to_the_models_schedulers(http):
    names = [s["name"] for s in http.get("/sdapi/v1/samplers").json()]
    assert "DDIM" in names and "DPM++ 2M Karras" in names
    info = json.loads(txt2img(http, sampler_name="dpm++ 2m", scheduler="Karras")["info"])
    assert info["sampler_name"] == "DPM++ 2M Karras"


def test_an_unchanged_a1111_client_sending_euler_a_gets_images_and_is_told_what_ran(http):
    reply = http.post(
        "/sdapi/v1/txt2img", json={"prompt": "a red cat", "steps": 2, "sampler_name": "Euler a"}
    )

    assert reply.status_code == 200, reply.text
    info = json.loads(reply.json()["info"])
    assert info["sampler_name"] in [s["name"] for s in http.get("/sdapi/v1/samplers").json()]
    assert (
        f"Sampler 'Euler a' is not available for this model; {info['sampler_name']}, the closest"
        in info["notices"][0]
    )


def test_an_a1111_sampler_with_no_counterpart_runs_the_models_default_with_a_notice(http):
    info = json.loads(txt2img(http, sampler_name="LCM")["info"])

    assert (
        info["notices"][0]
        == f"Sampler 'LCM' is not available for this model; its default, {info['sampler_name']}, ran instead."
    )


def test_img2img_and_inpainting_with_a_mask(http):
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    reply = http.post(
        "/sdapi/v1/img2img",
        json={"init_images": [b64_png(init)], "prompt": "a blue cat", "denoising_strength": 0.5, "steps": 4},
    )
    assert reply.status_code == 200, reply.text
    info = json.loads(reply.json()["info"])
    assert info["task"] == "i2i" and info["denoising_strength"] == 0.5
    assert reply.json()["parameters"]["init_images"] is None  # as A1111 without include_init_images

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    reply = http.post(
        "/sdapi/v1/img2img",
        json={"init_images": [b64_png(init)], "mask": b64_png(mask), "mask_blur": 0, "steps": 2,
              "inpainting_fill": 1, "inpaint_full_res": False},
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    info = json.loads(reply.json()["info"])
    assert info["task"] == "inpaint" and info["is_using_inpainting_conditioning"]
    result = decode(reply.json()["images"][0]).convert("RGB")
    assert result.getpixel((60, 32)) == (200, 30, 30), "the black part of the mask is kept"

    inverted = http.post(
        "/sdapi/v1/img2img",
        json={"init_images": [b64_png(init)], "mask": b64_png(mask), "inpainting_mask_invert": 1,
              "mask_blur": 0, "steps": 2},
    )  # fmt: skip
    assert decode(inverted.json()["images"][0]).convert("RGB").getpixel((2, 32)) == (200, 30, 30)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"init_images": []}, 422, "init_images is empty"),
        ({"init_images": ["not base64!"]}, 422, "base64"),
        ({"init_images": [base64.b64encode(b"hello").decode()]}, 422, "not an image"),
        ({"init_images": ["/etc/passwd"]}, 422, "server paths"),
    ],
)
def test_img2img_refuses_bad_images_clearly(http, body, status, words):
    reply = http.post("/sdapi/v1/img2img", json=body)
    assert reply.status_code == status, reply.text
    assert words in reply.json()["detail"]


def test_models_and_options_select_the_model_by_checkpoint(http):
    titles = [m["title"] for m in http.get("/sdapi/v1/sd-models").json()]
    assert {"tiny-kd22", "tiny-kd21", "kd22"} <= set(titles)
    assert http.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny-kd22"
    try:
        assert (
            http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-kd21 [abc123]"}).status_code
            == 200
        )
        assert http.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny-kd21"
        info = json.loads(txt2img(http, steps=2)["info"])
        assert info["sd_model_name"] == "tiny-kd21"
        unknown = http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
        assert unknown.status_code == 422 and "Unknown model 'nope'" in unknown.json()["detail"]
        odd = http.post("/sdapi/v1/options", json={"no_such_option": 1, "sd_vae": "x"})
        assert odd.status_code == 422 and "no_such_option" in odd.json()["detail"]
    finally:
        http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-kd22"})


def test_what_a1111_clients_list_at_start_answers(http):
    assert {"name": "karras", "label": "Karras"}.items() <= http.get("/sdapi/v1/schedulers").json()[1].items()
    for path in ("/sdapi/v1/upscalers", "/sdapi/v1/sd-vae", "/sdapi/v1/loras", "/sdapi/v1/prompt-styles"):
        assert http.get(path).json() == [], path
    assert http.get("/sdapi/v1/embeddings").json() == {"loaded": {}, "skipped": {}}
    assert http.post("/sdapi/v1/refresh-checkpoints").status_code == 200


def test_a_web_page_on_another_site_cannot_drive_the_api(http):
    evil = {"origin": "http://evil.example"}
    changed = http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-kd21"}, headers=evil)
    assert changed.status_code == 403 and "Cross-origin" in changed.json()["detail"]
    assert http.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny-kd22"
    assert http.post("/sdapi/v1/txt2img", content=b"{}", headers=evil).status_code == 403
    same = {"origin": str(http.base_url).rstrip("/")}
    assert (
        http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-kd22"}, headers=same).status_code
        == 200
    )


def test_png_info_reads_the_parameters_back(http):
    reply = txt2img(http, prompt="an owl", negative_prompt="rain", seed=99)
    info = http.post("/sdapi/v1/png-info", json={"image": reply["images"][0]})
    assert info.status_code == 200
    body = info.json()
    assert body["info"].startswith("an owl\nNegative prompt: rain")
    assert body["parameters"]["Prompt"] == "an owl" and body["parameters"]["Seed"] == "99"
    assert (body["parameters"]["Size-1"], body["parameters"]["Size-2"]) == ("64", "64")
    assert "kubin" in body["items"]
    no_text = http.post("/sdapi/v1/png-info", json={"image": b64_png(Image.new("RGB", (8, 8)))})
    assert no_text.status_code == 200 and no_text.json()["info"] == ""


def test_progress_then_interrupt_returns_the_images_saved_so_far(http, kubin_server):
    replies = []

    def generate() -> None:
        with httpx.Client(base_url=kubin_server.url, timeout=TIMEOUT_S) as client:
            replies.append(txt2img(client, steps=4, n_iter=60, prompt="interrupt me"))

    worker = threading.Thread(target=generate, daemon=True)
    worker.start()
    deadline = time.monotonic() + TIMEOUT_S
    while True:  # until the first image is saved: it comes back as current_image
        progress = http.get("/sdapi/v1/progress", params={"skip_current_image": False}).json()
        if progress["current_image"] and progress["state"]["sampling_step"] > 0:
            break
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    assert 0 < progress["progress"] < 1
    assert progress["state"]["job_count"] >= 1 and progress["state"]["sampling_steps"] == 60 * (4 + 2)
    assert progress["eta_relative"] > 0 and progress["textinfo"].startswith("Step ")
    assert decode(progress["current_image"]).text["parameters"].startswith("interrupt me")
    skipped = http.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()
    assert skipped["current_image"] is None
    assert http.post("/sdapi/v1/interrupt").status_code == 200
    worker.join(TIMEOUT_S)
    info = json.loads(replies[0]["info"])
    assert info["interrupted"] is True and 1 <= len(replies[0]["images"]) < 60
    assert all(Path(f).is_file() for f in info["files"])
    idle = http.get("/sdapi/v1/progress").json()
    assert idle["state"]["job_count"] == 0 and idle["progress"] == 0


def test_twenty_requests_from_four_threads_all_complete_in_arrival_order(kubin_server):
    replies: list[dict] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=kubin_server.url, timeout=TIMEOUT_S) as http:
            for i in range(5):
                reply = txt2img(http, prompt=f"thread {n} request {i}", seed=n * 100 + i)
                with lock:
                    replies.append(json.loads(reply["info"]))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S * 2)
    assert len(replies) == 20
    by_job = sorted(replies, key=lambda info: info["job_id"])
    files = [Path(info["files"][0]) for info in by_job]
    assert all(f.is_file() for f in files)
    assert len(set(files)) == 20
    # Jobs ran in the order they arrived (job ids): their files were numbered in that order.
    counters = [int(f.name.split("-")[0]) for f in files]
    if len({f.parent for f in files}) == 1:  # not across midnight
        assert counters == sorted(counters)
    for n in range(4):  # each client's own requests, one after another, kept their order
        mine = [info["job_id"] for info in replies if info["prompt"].startswith(f"thread {n} ")]
        assert mine == sorted(mine) and len(mine) == 5


def test_a_client_that_disconnects_loses_nothing_and_blocks_no_one(kubin_server):
    prompt = f"disconnected {time.time()}"
    with httpx.Client(base_url=kubin_server.url, timeout=httpx.Timeout(TIMEOUT_S, read=0.3)) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            # Enough steps (2 x 60, tens of ms each) to outlast the 0.3 s the client waits.
            impatient.post("/sdapi/v1/txt2img", json={"prompt": prompt, "steps": 60, "n_iter": 2, "seed": 5})
    with httpx.Client(base_url=kubin_server.url, timeout=TIMEOUT_S) as other:
        assert (
            json.loads(txt2img(other, prompt="after the disconnect")["info"])["prompt"]
            == "after the disconnect"
        )
    saved = [
        p
        for p in kubin_server.saved_images("t2i")
        if Image.open(p).text.get("parameters", "").startswith(prompt)
    ]
    assert len(saved) == 2, "both images of the abandoned request are saved"


def test_txt2img_takes_a_prompt_template_and_tells_each_images_prompt(http, kubin_server):
    template = "a {red|green|blue} __colors__ kite"
    reply = txt2img(http, prompt=template, seed=50, batch_size=2, n_iter=2)

    info = json.loads(reply["info"])
    made = {f"a {a} {b} kite" for a in ("red", "green", "blue") for b in ("red", "green", "blue")}
    assert info["prompt"] == template and len(info["all_prompts"]) == 4 and set(info["all_prompts"]) <= made
    assert len(set(info["all_prompts"])) > 1, "each image's seed picks its own prompt"
    assert info["extra_generation_params"] == {"Template": template}
    for prompt, infotext in zip(info["all_prompts"], info["infotexts"], strict=True):
        assert infotext.startswith(f"{prompt}\n") and f"Template: {template}," in infotext
