"""Kubin's own REST API (/kubin/api/v1) over real HTTP: every task with the engine's parameters, jobs
to follow and cancel (queued and running), saved outputs, docs, and no way out of the output folder
through any endpoint."""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from http.client import HTTPConnection
from pathlib import Path

import httpx
import pytest
from PIL import Image

TIMEOUT_S = 120
API = "/kubin/api/v1"


def b64_png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def run(http, task: str, **params) -> dict:
    reply = http.post(f"{API}/tasks/{task}", json=params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def wait_for(http, job_id: int, condition, what: str) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        job = http.get(f"{API}/jobs/{job_id}").json()
        if condition(job):
            return job
        assert time.monotonic() < deadline, f"job never {what}: {job}"
        time.sleep(0.05)


def test_models_and_tasks_describe_what_can_be_asked(http):
    models = {m["id"]: m for m in http.get(f"{API}/models").json()}
    assert models["tiny-kd22"]["current"] and "inpaint" in models["tiny-kd22"]["tasks"]
    assert "DDIM" in models["tiny-kd22"]["schedulers"]
    tasks = http.get(f"{API}/tasks").json()
    assert {"t2i", "i2i", "mix", "inpaint", "outpaint", "t2v", "i2v", "t2mesh", "i2mesh"} <= set(tasks)
    steps = tasks["t2i"]["params"]["steps"]
    assert (steps["type"], steps["minimum"], steps["maximum"]) == ("int", 1, 500)
    assert tasks["mix"]["params"]["images"]["kind"] == "image"
    assert http.get(f"{API}/tasks/outpaint").json()["params"]["expand"]["type"] == "list"


def test_every_image_task_runs_and_its_outputs_download(http, kubin_server):
    init = b64_png(Image.new("RGB", (64, 64), (10, 120, 200)))
    mask_image = Image.new("L", (64, 64), 0)
    mask_image.paste(255, (16, 16, 48, 48))
    first = run(http, "t2i", prompt="a fox", seed=11, steps=2, batch_size=2)
    assert first["state"] == "done" and first["seeds"] == [11, 12] and first["position"] == 0
    jobs = {
        "t2i": first,
        "i2i": run(http, "i2i", prompt="a fox", init_image=init, strength=0.5, steps=4),
        "mix": run(http, "mix", images=[init], prompts=["a fox"], weights=[0.5, 0.5], steps=2),
        "inpaint": run(http, "inpaint", prompt="a hat", init_image=init, mask=b64_png(mask_image), steps=2),
        "outpaint": run(http, "outpaint", prompt="sea", init_image=init, expand=[64, 0, 0, 0], steps=2),
        # An earlier output, by the url the API gave for it, is a valid input image.
        "chained": run(http, "i2i", prompt="again", init_image=first["results"][0]["url"], steps=2),
    }
    for name, job in jobs.items():
        assert job["state"] == "done" and job["error"] is None, name
        for result in job["results"]:
            assert Path(result["path"]).is_relative_to(kubin_server.output_dir)
            download = http.get(result["url"])
            assert download.status_code == 200 and download.content == Path(result["path"]).read_bytes()
    assert jobs["outpaint"]["results"][0]["width"] == 128
    assert jobs["chained"]["results"][0]["task"] == "i2i"


@pytest.mark.parametrize(
    ("task", "body", "status", "words"),
    [
        ("t2i", {"nope": 1}, 422, "nope"),
        ("t2i", {"steps": 9999}, 422, "Steps must be between 1 and 500"),
        ("t2i", {"steps": "many"}, 422, "steps"),
        ("t2i", {"model": "no-such-model"}, 422, "Unknown model"),
        ("t2v", {"prompt": "x"}, 422, "cannot do t2v"),
        ("mix", {"prompts": ["a"], "weights": [1]}, 422, "at least 2"),
        ("i2i", {"init_image": ""}, 422, "Init image is missing"),
        ("t2i", {"prompt": "x" * 2_000_000}, 422, "Prompt is 2,000,000 characters long; the limit is 10,000"),
        ("t2i", {"negative_prompt": "x" * 10_001}, 422, "Negative prompt is 10,001 characters long"),
        ("t2i", {"model": "kd22", "steps": 1, "prior_steps": 2}, 503, "kubin download kd22"),
    ],
)
def test_errors_are_4xx_or_503_json_never_a_traceback(http, task, body, status, words):
    reply = http.post(f"{API}/tasks/{task}", json=body)
    assert reply.status_code == status, reply.text
    assert words in str(reply.json()["detail"])
    assert "Traceback" not in reply.text


def test_cancel_a_queued_and_a_running_job(http, kubin_server):
    long = {"prompt": "a long job", "steps": 500, "prior_steps": 200, "batch_count": 50}
    running = http.post(f"{API}/tasks/t2i", params={"wait": False}, json=long)
    assert running.status_code == 202
    running_id = running.json()["id"]
    queued = http.post(f"{API}/tasks/t2i", params={"wait": False}, json=long | {"prompt": "queued"}).json()
    assert queued["state"] == "queued" and queued["position"] >= 1
    wait_for(http, running_id, lambda j: j["state"] == "running" and j["step"] > 0, "started")

    listed = [j["id"] for j in http.get(f"{API}/jobs").json()]
    assert listed[:2] == [running_id, queued["id"]], "the queue lists the running job, then the queued one"

    dropped = http.post(f"{API}/jobs/{queued['id']}/cancel").json()
    assert dropped["state"] == "cancelled" and dropped["results"] == [] and dropped["step"] == 0

    stopped = http.delete(f"{API}/jobs/{running_id}").json()
    assert stopped["state"] == "cancelled" and "saved" in stopped["error"]
    assert len(stopped["results"]) < 50
    assert all(Path(r["path"]).is_file() for r in stopped["results"])
    assert http.get(f"{API}/jobs").json() == []
    assert http.get(f"{API}/jobs/999999").status_code == 404


def test_the_ui_and_the_api_share_one_queue(http, api_client):
    from test_api_txt2img import txt2img_args  # the UI's /txt2img inputs, kept with the UI's tests

    long = {"prompt": "the api goes first", "steps": 500, "prior_steps": 200, "batch_count": 50}
    api_job = http.post(f"{API}/tasks/t2i", params={"wait": False}, json=long).json()
    wait_for(http, api_job["id"], lambda j: j["state"] == "running", "started")
    ui_job = api_client.submit(*txt2img_args(prompt="the ui waits its turn", steps=2), api_name="/txt2img")
    deadline = time.monotonic() + TIMEOUT_S
    while len(queue := http.get(f"{API}/jobs").json()) < 2:
        assert time.monotonic() < deadline, queue
        time.sleep(0.05)
    assert [j["id"] for j in queue][0] == api_job["id"]
    assert queue[1]["state"] == "queued" and queue[1]["position"] == 1, "the UI's job waits behind the API's"
    http.post(f"{API}/jobs/{api_job['id']}/cancel")
    gallery, _, details = ui_job.result(timeout=TIMEOUT_S)[:3]
    assert details["state"] == "done" and len(gallery) == 1


def test_many_waiting_clients_do_not_block_the_server(http, kubin_server):
    """More clients waiting than the server has worker threads (40): the server still answers at once."""
    long = {"prompt": "block the queue", "steps": 500, "prior_steps": 200, "batch_count": 50}
    first = http.post(f"{API}/tasks/t2i", params={"wait": False}, json=long).json()
    waiting = 45

    def waiter(i: int) -> None:
        with httpx.Client(base_url=kubin_server.url, timeout=TIMEOUT_S) as client:
            client.post(f"{API}/tasks/t2i", json={"prompt": f"waiter {i}", "steps": 1, "prior_steps": 2})

    threads = [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(waiting)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(http.get(f"{API}/jobs").json()) < waiting + 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        started = time.monotonic()
        assert http.get("/sdapi/v1/progress").status_code == 200
        assert http.get("/").status_code == 200, "the UI page too"
        assert time.monotonic() - started < 5
    finally:
        for job in reversed(http.get(f"{API}/jobs").json()):
            http.post(f"{API}/jobs/{job['id']}/cancel")
        for t in threads:
            t.join(TIMEOUT_S)
    assert http.get(f"{API}/jobs/{first['id']}").json()["state"] == "cancelled"


@pytest.mark.parametrize("task", ["t2v", "i2v"])
def test_video_tasks_return_the_video_and_its_preview(http, task):
    first_frame = {"init_image": b64_png(Image.new("RGB", (64, 64), (0, 90, 160)))} if task == "i2v" else {}
    job = run(http, task, model=f"tiny-kd50-{task}", prompt="waves", steps=2, **first_frame)
    (result,) = job["results"]
    assert result["frames"] >= 1 and result["fps"] > 0 and result["url"].endswith(".mp4")
    video = http.get(result["url"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    assert http.get(result["preview_url"]).status_code == 200


def test_text_to_3d_returns_the_mesh(http):
    job = run(http, "t2mesh", model="tiny-shap-e", prompt="a chair", steps=2)
    (result,) = job["results"]
    assert job["state"] == "done" and result["url"]
    mesh = http.get(result["url"])
    assert mesh.status_code == 200 and len(mesh.content) > 0


def test_wait_false_then_follow_the_job_to_its_end(http):
    started = http.post(f"{API}/tasks/t2i", params={"wait": False}, json={"prompt": "follow me", "steps": 2})
    assert started.status_code == 202
    job = http.get(f"{API}/jobs/{started.json()['id']}", params={"wait": 60}).json()
    assert job["state"] == "done" and len(job["results"]) == 1


def test_docs_and_openapi_list_both_apis(http):
    docs = http.get("/docs")
    assert docs.status_code == 200
    # Readable offline too: every route and its fields in plain HTML, besides the Swagger UI.
    assert (
        "POST /sdapi/v1/txt2img" in docs.text
        and "cfg_scale" in docs.text
        and "denoising_strength" in docs.text
    )
    paths = http.get("/kubin/api/openapi.json").json()["paths"]
    for path in (
        "/sdapi/v1/txt2img",
        "/sdapi/v1/img2img",
        "/sdapi/v1/progress",
        f"{API}/tasks/t2v",
        f"{API}/jobs",
    ):
        assert path in paths
    assert not any("install" in p for p in paths), "no API route installs anything"


def test_no_ui_endpoint_installs_extension_requirements(api_client):
    endpoints = api_client.view_api(print_info=False, return_format="dict")
    names = list(endpoints["named_endpoints"]) + list(endpoints["unnamed_endpoints"])
    assert names and not any("install" in str(name).lower() for name in names)


# --- nothing outside the output folder is served -------------------------------------------------
SECRET = "kubin-secret-outside-the-output-folder"


def raw_get(server, path: str) -> tuple[int, str]:
    """GET with the path sent exactly as written (HTTP clients would remove the dot segments)."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path)
        reply = connection.getresponse()
        return reply.status, reply.read().decode("utf-8", "replace")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def outside_file(kubin_server):
    """A file next to the output folder, and a symlink inside the output folder that points at it."""
    secret = kubin_server.output_dir.parent / "secret.txt"
    secret.write_text(SECRET)
    (kubin_server.output_dir / "probe").mkdir(parents=True, exist_ok=True)
    link = kubin_server.output_dir / "probe" / "link.png"
    os.symlink(secret, link)
    yield secret
    link.unlink()
    secret.unlink()


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "t2i/../../secret.txt",
        "%2e%2e/secret.txt",
        "%2e%2e%2fsecret.txt",
        "..%2fsecret.txt",
        "%252e%252e%252fsecret.txt",
        "..%5csecret.txt",
        "probe/link.png",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "{secret}",
        "//etc/passwd",
        ".tmp-x.png",
    ],
)
def test_outputs_route_never_leaves_the_output_folder(kubin_server, outside_file, path):
    path = path.replace("{secret}", str(outside_file).lstrip("/"))
    status, text = raw_get(kubin_server, f"{API}/outputs/{path}")
    assert status in (400, 404), (path, status)
    assert SECRET not in text


@pytest.mark.parametrize(
    "path",
    ["{secret}", "{out}/../secret.txt", "{out}/probe/link.png", "{out}/%2e%2e/secret.txt", "/etc/passwd"],
)
def test_gradio_file_route_serves_nothing_outside_the_output_folder(kubin_server, outside_file, path):
    path = path.replace("{secret}", str(outside_file)).replace("{out}", str(kubin_server.output_dir))
    status, text = raw_get(kubin_server, f"/gradio_api/file={path}")
    assert status in (400, 403, 404), (path, status)
    assert SECRET not in text and "root:" not in text


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../../../../../etc/passwd",
        "/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/assets/../../../../../../etc/passwd",
        "/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/gradio_api/file=..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/gradio_api/file=%2fetc%2fpasswd",
        "/svelte/../../../../../../etc/passwd",
        "/../../../../etc/passwd",
    ],
)
def test_no_other_route_serves_files_from_outside_either(kubin_server, outside_file, path):
    status, text = raw_get(kubin_server, path)
    assert status in (400, 403, 404, 405), (path, status)
    assert "root:" not in text and SECRET not in text


def test_image_fields_never_read_server_paths(http, outside_file):
    for value in (
        str(outside_file),
        "file:///etc/passwd",
        f"{API}/outputs/../secret.txt",
        f"{API}/outputs/probe/link.png",
    ):
        reply = http.post(f"{API}/tasks/i2i", json={"init_image": value, "steps": 2})
        assert reply.status_code == 422, (value, reply.text)
        assert SECRET not in reply.text


def test_prompt_templates_expand_per_image_and_a_prompts_file_queues_one_job_per_line(http, kubin_server):
    from kubin.outputs import read_image_metadata

    template = "a __colors__ {cat|dog}"
    job = run(http, "t2i", prompt=template, seed=30, steps=2, prior_steps=2, batch_size=2)
    made = {f"a {c} {a}" for c in ("red", "green", "blue") for a in ("cat", "dog")}
    for result in job["results"]:
        assert result["prompt_template"] == template and result["prompt"] in made
        saved = read_image_metadata(result["path"])
        assert (saved["prompt"], saved["prompt_template"]) == (result["prompt"], template)
        assert saved["params"]["prompt"] == template

    reply = http.post(
        f"{API}/tasks/t2i/prompts-file",
        json={
            "text": "a red cat\n# not a prompt\n\na {big|small} __colors__ dog\n",
            "params": {"steps": 2, "seed": 9},
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["lines"] == [1, 4]
    first, second = (job["results"] for job in body["jobs"])
    assert read_image_metadata(first[0]["path"])["params"]["prompt"] == "a red cat" and first[0]["seed"] == 9
    assert second[0]["prompt_template"] == "a {big|small} __colors__ dog"
    assert second[0]["prompt"] in {
        f"a {s} {c} dog" for s in ("big", "small") for c in ("red", "green", "blue")
    }

    csv = http.post(
        f"{API}/tasks/t2i/prompts-file",
        json={"format": "csv", "text": "prompt,steps\na cat,2\na dog,2\n", "params": {"prior_steps": 2}},
        params={"wait": False},
    )
    assert csv.status_code == 202 and len(csv.json()["jobs"]) == 2
    for job in csv.json()["jobs"]:
        wait_for(http, job["id"], lambda j: j["state"] == "done", "finished")

    missing = http.post(f"{API}/tasks/t2i", json={"prompt": "a __animals__ at night", "steps": 2})
    assert missing.status_code == 422
    assert (
        f"__animals__ has no file: put animals.txt (one value per line) in the wildcards folder {kubin_server.wildcards_dir}"
        in missing.json()["detail"]
    )
    bad_column = http.post(
        f"{API}/tasks/t2i/prompts-file", json={"format": "csv", "text": "prompt,stepz\na cat,2\n"}
    )
    assert (
        bad_column.status_code == 422
        and "column 2 ('stepz') is not a parameter" in bad_column.json()["detail"]
    )
