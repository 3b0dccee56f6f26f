"""A Kubin server whose jobs run on a Ray Serve cluster (a local Ray instance, one CPU replica, tiny-kd22):
jobs from the UI's API, the REST API and the command line run on the replica and are saved here; the
cluster's status in the API, `kubin cluster status` and the Settings panel; the cluster going away (the
page and the API say so, the server stays up) and coming back (the server reconnects)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cli_helpers import child_env, start_server, stop_server
from playwright.sync_api import expect

from kubin.cluster.local import start_local_ray
from kubin.outputs import read_image_metadata

pytestmark = [pytest.mark.server, pytest.mark.slow]

CONFIG = "cluster:\n  replica_cpus: 0.5\n"
T2I = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2}


@pytest.fixture(scope="module")
def ray_head():
    head = start_local_ray(num_cpus=2)
    yield head
    head.stop()


@pytest.fixture(scope="module")
def server(ray_head, tmp_path_factory):
    root = tmp_path_factory.mktemp("kubin-cluster")
    running = start_server(
        root, "--model", "tiny-kd22", "--output-dir", str(root / "output"), "--cluster", ray_head.address,
        "--cluster-replicas", "1", config=CONFIG, timeout=300,
    )  # fmt: skip
    running.root = root
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def cluster_status(http) -> tuple[int, dict]:
    answer = http.get("/kubin/api/v1/cluster")
    return answer.status_code, answer.json()


def test_api_ui_and_cli_jobs_run_on_the_replica_and_are_saved_here(server, http, ray_head):
    from gradio_client import Client

    api_job = http.post("/kubin/api/v1/tasks/t2i", json=T2I | {"seed": 5})
    assert api_job.status_code == 200, api_job.text
    client = Client(server.url, verbose=False, download_files=server.root / "downloads")
    try:  # the tab's own endpoint, as the page calls it
        args = ["tiny-kd22", "a ui cat", "", 64, 64, 2, 4.0, 2, 4.0, 6, 1, 1, ""]
        gallery, _info, details = client.submit(*args, api_name="/txt2img").result(timeout=120)
    finally:
        client.close()
    assert details["state"] == "done" and len(gallery) == 1
    cli = subprocess.run(
        [sys.executable, "-m", "kubin", "generate", "--model", "tiny-kd22", "--cluster", ray_head.address,
         "--cluster-replicas", "1", "--config", str(server.user_config), "--output-dir", str(server.root / "cli"),
         "--prompt", "a cli cat", "--width", "64", "--height", "64", "--steps", "2", "--prior-steps", "2",
         "--seed", "7"],
        env=child_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-2000:]

    saved = sorted((server.root / "output" / "t2i").rglob("*.png"))
    assert [read_image_metadata(p)["params"]["prompt"] for p in saved] == ["a red cat", "a ui cat"]
    cli_output = Path(json.loads(cli.stdout.splitlines()[-1])["path"])
    assert read_image_metadata(cli_output)["seed"] == 7
    code, status = cluster_status(http)
    assert code == 200 and status["available"], status
    (replica,) = status["replicas"]
    # The CLI found the server's deployment (same options) and used it: three jobs, one model load.
    assert replica["jobs"] == 3 and replica["loads"] == 1 and replica["models"] == ["tiny-kd22"]
    assert replica["device"] == "cpu" and status["queue"] == {"queued": 0, "running": 0}


def test_cluster_status_on_the_command_line_and_in_settings(server, http, browser, ray_head):
    assert http.post("/kubin/api/v1/tasks/t2i", json=T2I).status_code == 200  # a model on the replica
    answer = subprocess.run(
        [sys.executable, "-m", "kubin", "cluster", "status", "--server", server.url],
        env=child_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert "available" in answer.stdout and "Replicas: 1" in answer.stdout and "tiny-kd22" in answer.stdout
    # Or the cluster itself (this deploys nothing): the same replica.
    direct = subprocess.run(
        [sys.executable, "-m", "kubin", "cluster", "status", "--cluster", ray_head.address, "--json"],
        env=child_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert direct.returncode == 0, direct.stderr[-2000:]
    status = json.loads(direct.stdout)
    assert status["available"] and [r["models"] for r in status["replicas"]] == [["tiny-kd22"]]

    for viewport in ({"width": 1366, "height": 900}, {"width": 390, "height": 844}):
        context = browser.new_context(viewport=viewport)
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)  # generous: a busy machine renders the page slowly
            page.goto(server.url)
            page.get_by_role("tab", name="Settings", exact=True).click()
            panel = page.locator("#settings-cluster")
            expect(panel).to_contain_text("available · 1 replica(s)", timeout=60_000)
            expect(panel.locator("table")).to_contain_text("tiny-kd22")
            expect(panel.locator("table")).to_contain_text("cpu")
            expect(page.locator("#kubin-cluster-warning")).not_to_contain_text("⚠")
        finally:
            context.close()


def test_the_cluster_going_away_is_said_on_the_page_and_api_and_the_server_reconnects(
    server, http, ray_head, browser
):
    address = ray_head.address
    ray_head.stop()
    deadline = time.monotonic() + 60
    while (answer := cluster_status(http))[0] != 503 and time.monotonic() < deadline:
        time.sleep(1)
    code, status = answer
    assert code == 503 and "not reachable" in status["detail"], status
    job = http.post("/kubin/api/v1/tasks/t2i", json=T2I)
    assert job.status_code == 503 and "not reachable" in job.json()["detail"]
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(server.url)
        expect(page.locator("#kubin-cluster-warning")).to_contain_text("is not reachable", timeout=60_000)
    finally:
        context.close()
    assert server.process.poll() is None  # the front end is still serving

    back = start_local_ray(num_cpus=2, port=int(address.rsplit(":", 1)[1]))
    try:
        # At once, while the server is still reconnecting: the job waits for the cluster rather than a 503.
        job = http.post("/kubin/api/v1/tasks/t2i", json=T2I, timeout=240)
        assert job.status_code == 200 and job.json()["state"] == "done", job.text + server.log(4000)
        code, status = cluster_status(http)
        assert code == 200 and status["available"] and len(status["replicas"]) == 1, status
    finally:
        back.stop()
