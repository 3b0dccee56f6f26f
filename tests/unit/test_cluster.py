"""The engine on a real local Ray Serve cluster (2 CPU replicas, tiny models): jobs from several clients,
model affinity through Serve's multiplexing, cancel reaching the replica, a replica killed mid-job, and a
configuration that cannot work. One Ray instance serves the whole file (it takes ~30 s to start here)."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from cli_helpers import kubin_generate
from lora_helpers import kd22_decoder_lora
from PIL import Image

from kubin.cluster import ClusterSettings
from kubin.cluster.client import Cluster
from kubin.engine import CANCELLED, DONE, Engine, Job
from kubin.errors import ClusterUnavailable, WeightsMissing
from kubin.models.lora import LoraLibrary, file_hash
from kubin.models.manager import ModelManager
from kubin.outputs import read_image_metadata, read_video_metadata, video_info

pytestmark = pytest.mark.slow

KD22 = {"width": 64, "height": 64, "steps": 2, "prior_steps": 2}
KD30 = {"width": 64, "height": 64, "steps": 2}
WORKER = {"device": "cpu", "dtype": "fp32", "sources": {}, "memory": {}}


@pytest.fixture(scope="module")
def cluster():
    """--cluster local: a Ray instance started here for the cluster, stopped with it."""
    settings = ClusterSettings("local", replicas=2, replica_cpus=0.5, max_models_per_replica=1, local_cpus=2)
    cluster = Cluster(settings, WORKER).start()
    yield cluster
    cluster.close()
    assert not cluster.local.alive()


@pytest.fixture
def engine(cluster, tmp_path):
    engine = Engine(ModelManager("cpu", "fp32"), tmp_path / "output", cluster=cluster)
    yield engine
    engine.cluster = None  # the module's cluster outlives this engine
    engine.close(wait=True)


def replica_report(cluster, replica: str) -> dict:
    return next(r for r in cluster.status()["replicas"] if r["replica"] == replica)


def test_two_models_land_on_two_replicas_and_their_second_runs_load_nothing(engine, cluster):
    first = {m: engine.run(Job("t2i", m, {"prompt": "a cat", **v}, owner=m)) for m, v in
             (("tiny-kd22", KD22), ("tiny-kd30", KD30))}  # fmt: skip
    second = {m: engine.run(Job("t2i", m, {"prompt": "a dog", **v}, owner=m)) for m, v in
              (("tiny-kd22", KD22), ("tiny-kd30", KD30))}  # fmt: skip

    assert all(h.state == DONE for h in [*first.values(), *second.values()])
    assert first["tiny-kd22"].worker["replica"] != first["tiny-kd30"].worker["replica"]
    for model in first:
        assert first[model].worker["loaded"] is True
        assert second[model].worker["loaded"] is False  # the job went where its model is
        assert second[model].worker["replica"] == first[model].worker["replica"]
    status = cluster.status()
    assert status["available"] and len(status["replicas"]) == 2
    assert sorted(m for r in status["replicas"] for m in r["models"]) == ["tiny-kd22", "tiny-kd30"]


def test_twenty_jobs_from_four_clients_are_each_saved_once_with_their_parameters_in_client_order(engine):
    handles = {client: [] for client in "abcd"}
    for n in range(5):
        for client in handles:
            job = Job("t2i", "tiny-kd22", {"prompt": f"{client} {n}", "seed": n, **KD22}, owner=client)
            handles[client].append(engine.submit(job))
    for client_handles in handles.values():
        for handle in client_handles:
            assert handle.wait(120)

    files = sorted((engine.output_dir / "t2i").rglob("*.png"))
    assert len(files) == 20
    saved = {read_image_metadata(f)["params"]["prompt"]: f for f in files}
    assert sorted(saved) == sorted(f"{c} {n}" for c in "abcd" for n in range(5))
    for client, client_handles in handles.items():
        assert [h.state for h in client_handles] == [DONE] * 5
        assert [h.results[0].path for h in client_handles] == [saved[f"{client} {n}"] for n in range(5)]
        # The files' counters grow in the order the client queued its jobs.
        counters = [int(saved[f"{client} {n}"].name.split("-")[0]) for n in range(5)]
        assert counters == sorted(counters)
        meta = read_image_metadata(client_handles[2].results[0].path)
        assert meta["seed"] == 2 and meta["model"] == "tiny-kd22" and meta["runtime"]["device"] == "cpu"


def test_a_replica_makes_the_same_pixels_as_the_local_engine(engine, tmp_path):
    job = Job("t2i", "tiny-kd22", {"prompt": "a red cat", "seed": 7, **KD22})
    remote = engine.run(job).results[0].path
    local_engine = Engine(ModelManager("cpu", "fp32"), tmp_path / "local")
    try:
        local = local_engine.run(job).results[0].path
    finally:
        local_engine.close(wait=True)
    with Image.open(remote) as a, Image.open(local) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_video_made_on_a_replica_is_saved_here_as_mp4_with_its_preview_and_parameters(engine):
    job = Job("t2v", "tiny-kd50-t2v", {"prompt": "a kite", "steps": 2, "seed": 3, "frames": 17, "fps": 8})
    handle = engine.run(job)

    assert handle.state == DONE, handle.error
    [result] = handle.results
    assert result.path.suffix == ".mp4" and result.preview == result.path.with_suffix(".webp")
    assert video_info(result.path)["frames"] == 17
    meta = read_video_metadata(result.path)
    assert (meta["params"]["prompt"], meta["seed"], meta["model"]) == ("a kite", 3, "tiny-kd50-t2v")


def test_a_lora_job_runs_on_a_replica_with_the_local_engines_pixels_and_records_its_adapter(
    engine, cluster, tmp_path
):
    folder = tmp_path / "lora"
    kd22_decoder_lora(folder / "ink.safetensors")  # a file on the front end: its bytes travel to the replica
    engine.loras = LoraLibrary(folder)
    local_engine = Engine(ModelManager("cpu", "fp32"), tmp_path / "local", loras=LoraLibrary(folder))

    def job(loras):
        return Job("t2i", "tiny-kd22", {"prompt": "a red cat", "seed": 7, **KD22, "loras": loras})

    def pixels(handle):
        assert handle.state == DONE, handle.error
        with Image.open(handle.results[0].path) as image:
            return np.asarray(image.convert("RGB"))

    weights = (1, 0.5, 0)  # 0: a job without the adapter after jobs with it
    try:
        remote = {w: pixels(engine.run(job([f"ink:{w}"] if w else []))) for w in weights}
        local = {w: pixels(local_engine.run(job([f"ink:{w}"] if w else []))) for w in weights}
    finally:
        local_engine.close(wait=True)
    for weight in weights:  # the local engine's adapter code: the same pixels; none gives the base model's
        assert np.array_equal(remote[weight], local[weight]), weight
    assert not np.array_equal(remote[1], remote[0]) and not np.array_equal(remote[1], remote[0.5])
    first = min((engine.output_dir / "t2i").rglob("*.png"))
    meta = read_image_metadata(first)
    ink = file_hash(folder / "ink.safetensors")
    assert meta["loras"] == [{"name": "ink", "weight": 1.0, "hash": ink}] and meta["params"]["loras"] == [
        "ink:1"
    ]
    cached = {p.name for p in cluster.local.folder.rglob("kubin-lora/*.safetensors")}
    assert cached == {f"{ink}.safetensors"}  # the replica's node got the file once, by its hash

    # cluster.shared_loras: the folder is at the same path on every node (here it is): paths travel, not files.
    kd22_decoder_lora(folder / "glow.safetensors", seed=2)
    settings = cluster.settings
    cluster.settings = replace(settings, shared_loras=True)
    try:
        glow = pixels(engine.run(job(["glow:1"])))
    finally:
        cluster.settings = settings
    assert not np.array_equal(glow, remote[0]) and not np.array_equal(glow, remote[1])
    assert {p.name for p in cluster.local.folder.rglob("kubin-lora/*.safetensors")} == cached


def test_a_user_error_on_a_replica_reads_as_it_does_in_the_local_engine(engine):
    handle = engine.submit(Job("t2i", "kd22", {"prompt": "a cat", "steps": 2, "prior_steps": 2}))
    assert handle.wait(120)

    assert handle.state == "failed" and isinstance(handle.error, WeightsMissing)
    assert "not in the Hugging Face cache" in str(handle.error) and "kubin download kd22" in str(handle.error)


def test_cancel_reaches_the_replica_which_stops_at_once(engine, cluster):
    steps_seen = []
    handle = engine.submit(
        Job("t2i", "tiny-kd22", {"prompt": "slow", **KD22, "steps": 500, "batch_count": 4}, owner="c")
    )
    for event in handle.events(timeout=120):
        if event.kind == "progress":
            steps_seen.append(event.step)
            if len(steps_seen) == 5:
                engine.cancel(handle)
    assert handle.state == CANCELLED
    replica = handle.worker["replica"]
    deadline = time.monotonic() + 20
    while (report := replica_report(cluster, replica))["busy"] is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert report["busy"] is None, "the replica still runs the cancelled job"
    # 2008 steps in all; a tiny step takes milliseconds, so a few may pass while the cancel travels.
    assert report["steps"] < steps_seen[4] + 100, f"the replica ran {report['steps']} steps, cancelled at 5"


def test_a_replica_killed_mid_job_has_the_rest_of_the_job_run_again_on_another(engine):
    killed = threading.Event()
    handle = engine.submit(Job("t2i", "tiny-kd22", {"prompt": "x", **KD22, "steps": 400, "batch_count": 3}))

    def kill_on_first_output(event):
        if event.kind == "result" and not killed.is_set():
            killed.set()
            os.kill(handle.worker["pid"], signal.SIGKILL)

    handle.subscribe(kill_on_first_output)
    assert handle.wait(300)

    assert killed.is_set()
    assert handle.state == DONE, handle.error
    assert sorted(r.index for r in handle.results) == [0, 1, 2]
    assert len(list((engine.output_dir / "t2i").rglob("*.png"))) == 3  # each saved once
    assert any("run again on another replica" in n for n in handle.notices)


def test_a_job_whose_replica_is_lost_twice_fails_with_a_clear_message_and_keeps_what_it_saved(engine):
    pids = []
    handle = engine.submit(Job("t2i", "tiny-kd22", {"prompt": "y", **KD22, "steps": 400, "batch_count": 3}))

    def kill_each_replica_at_its_first_output(event):
        if event.kind == "result" and handle.worker["pid"] not in pids:
            pids.append(handle.worker["pid"])
            os.kill(handle.worker["pid"], signal.SIGKILL)

    handle.subscribe(kill_each_replica_at_its_first_output)
    assert handle.wait(300)

    assert len(pids) == 2
    assert handle.state == "failed"
    assert "the replica running it was lost twice" in str(handle.error)
    assert "2 of 3 output(s) were saved" in str(handle.error)
    assert len(list((engine.output_dir / "t2i").rglob("*.png"))) == 2


def test_a_cluster_slow_to_answer_for_a_while_is_not_declared_lost_and_keeps_running_jobs(
    engine, cluster, caplog
):
    # A busy machine: the driver answers nothing for longer than one status timeout (its process stopped),
    # then carries on. One silence is a strike, not a lost cluster whose jobs would be refused with a 503.
    driver = cluster._process.pid
    os.kill(driver, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 60
        while "did not answer" not in caplog.text and cluster.problem is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.kill(driver, signal.SIGCONT)
    assert cluster.problem is None, cluster.problem
    assert "did not answer (no answer within 10 s); asking again" in caplog.text
    handle = engine.run(Job("t2i", "tiny-kd22", {"prompt": "still here", **KD22}))
    assert handle.state == DONE, handle.error
    assert cluster.problem is None and cluster._process.pid == driver  # the same driver: never disconnected


def test_a_configuration_that_cannot_work_is_a_clear_error_at_start(tmp_path):
    with pytest.raises(ClusterUnavailable, match="at least one replica"):
        ClusterSettings.from_config({"address": "local", "replicas": 0})
    with pytest.raises(ClusterUnavailable, match="Nothing answers at the Ray cluster address 127.0.0.1:9"):
        Cluster(ClusterSettings("127.0.0.1:9"), WORKER).start()
    # The same from the command line: one error line and exit code 2, before anything runs.
    for flags, said in (
        (["--cluster", "127.0.0.1:9"], "error: Nothing answers at the Ray cluster address 127.0.0.1:9"),
        (
            ["--cluster", "local", "--cluster-replicas", "0"],
            "error: cluster.replicas is 0: the cluster needs",
        ),
        (["--cluster", "nowhere"], "error: cluster.address 'nowhere' is none of local, auto"),
        (["--cluster", "ray://127.0.0.1:10001"], "Ray Client (ray://) cannot stream Serve responses"),
    ):
        run = kubin_generate(tmp_path, "--model", "tiny-kd22", "--prompt", "a cat", *flags)
        assert (run.returncode, run.stdout) == (2, ""), run.stderr
        assert said in run.stderr
