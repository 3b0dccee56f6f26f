"""The job history of a real server: UI and API jobs listed in order with their states over the REST API;
a server killed (SIGKILL) with jobs running and queued keeps its finished jobs with their files at the next
start, lists nothing half-written as done, and offers the queued jobs again."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from cli_helpers import kubin_server as running_server

TIMEOUT_S = 120
API = "/kubin/api/v1"
LONG = {"steps": 500, "prior_steps": 200, "batch_count": 50}
QUICK = {"steps": 2, "prior_steps": 2, "width": 64, "height": 64}


def wait_for(http, job_id: int, condition, what: str) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        job = http.get(f"{API}/jobs/{job_id}").json()
        if condition(job):
            return job
        assert time.monotonic() < deadline, f"job never {what}: {job}"
        time.sleep(0.05)


def history(http, **query) -> dict:
    reply = http.get(f"{API}/history", params=query)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_history_lists_ui_and_api_jobs_in_order_with_their_states(http, api_client):
    from test_api_txt2img import txt2img_args  # the UI's /txt2img inputs, kept with the UI's tests

    blocker = http.post(
        f"{API}/tasks/t2i", params={"wait": False}, json=LONG | {"prompt": "hist blocker"}
    ).json()
    wait_for(http, blocker["id"], lambda j: j["state"] == "running" and j["step"] > 0, "started")
    ui_job = api_client.submit(*txt2img_args(prompt="hist from the ui", steps=2), api_name="/txt2img")
    deadline = time.monotonic() + TIMEOUT_S
    while history(http, q="hist from the ui")["total"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    listed = {e["prompt"]: e for e in history(http, q="hist ")["items"]}
    assert listed["hist blocker"]["state"] == "running"
    assert listed["hist blocker"]["progress"]["step"] > 0, "a running job shows its progress"
    assert listed["hist from the ui"]["state"] == "queued"
    assert listed["hist blocker"]["owner"] == "api" and listed["hist from the ui"]["owner"] not in ("", "api")

    http.post(f"{API}/jobs/{blocker['id']}/cancel")
    ui_job.result(timeout=TIMEOUT_S)
    http.post(f"{API}/tasks/t2i", json=QUICK | {"prompt": "hist last"})
    page = history(http, q="hist ")
    assert [(e["prompt"], e["state"]) for e in page["items"]] == [
        ("hist last", "done"),
        ("hist from the ui", "done"),
        ("hist blocker", "cancelled"),
    ], "newest first, each with its final state"
    done = page["items"][1]
    assert len(done["urls"]) == 1 and http.get(done["urls"][0]).status_code == 200
    assert done["thumbnail_urls"][0] == done["urls"][0]
    assert history(http, q="hist ", state="cancelled")["total"] == 1
    paged = history(http, q="hist ", limit=1, offset=1)
    assert paged["total"] == 3 and [e["prompt"] for e in paged["items"]] == ["hist from the ui"]
    assert http.get(f"{API}/history", params={"state": "nonsense"}).status_code == 422


@pytest.mark.slow  # two server starts: about 30 s on a 2-core CPU
def test_a_killed_server_keeps_its_finished_jobs_and_offers_its_queued_ones_again(tmp_path):
    import httpx

    output_dir = tmp_path / "output"
    args = ("--model", "tiny-kd22", "--output-dir", str(output_dir))
    with (
        running_server(tmp_path, *args) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as http,
    ):
        finished = http.post(f"{API}/tasks/t2i", json=QUICK | {"prompt": "finished before"}).json()
        assert finished["state"] == "done"
        running = http.post(
            f"{API}/tasks/t2i", params={"wait": False}, json=LONG | {"prompt": "running"}
        ).json()
        for n in range(2):
            http.post(f"{API}/tasks/t2i", params={"wait": False}, json=QUICK | {"prompt": f"queued {n}"})
        wait_for(http, running["id"], lambda j: len(j["results"]) >= 1, "saved an output")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)

    with (
        running_server(tmp_path, *args) as server,
        httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as http,
    ):
        entries = {e["prompt"]: e for e in history(http)["items"]}
        assert entries["finished before"]["state"] == "done"
        assert [Path(p).name for p in entries["finished before"]["outputs"]] == [
            Path(r["path"]).name for r in finished["results"]
        ]
        killed = entries["running"]
        assert killed["state"] == "interrupted" and not killed["offered_for_requeue"]
        assert killed["outputs"] and all(
            url and http.get(url).status_code == 200 for url in killed["urls"]
        ), "what it saved before the kill is listed, and whole"
        assert not any(Path(p).name.startswith(".") for e in entries.values() for p in e["outputs"])
        offered = history(http, state="offered")["items"]
        assert sorted(e["prompt"] for e in offered) == ["queued 0", "queued 1"]
        assert all(e["state"] == "interrupted" for e in offered)

        again = http.post(f"{API}/history/{offered[0]['id']}/requeue").json()
        job = wait_for(http, again["id"], lambda j: j["state"] == "done", "finished")
        assert len(job["results"]) == 1
        assert history(http, state="offered")["total"] == 1
        assert history(http, q=offered[0]["prompt"], state="done")["total"] == 1
