"""`kubin generate --server URL`: the command line queues its job on a running Kubin (no model loaded
here), prints the outputs as JSON lines, sends local input images, fetches the outputs with --download,
and the server's history lists the job as the command line's."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from cli_helpers import kubin_generate
from PIL import Image

SMALL = ["--width", "64", "--height", "64", "--steps", "2", "--prior-steps", "2"]


def lines(done) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_a_job_runs_on_the_server_and_its_history_lists_it_as_the_cli(kubin_server, http, tmp_path):
    done = kubin_generate(
        tmp_path, "--server", kubin_server.url, "--prompt", "cli on server", *SMALL, "--seed", "9"
    )
    assert done.returncode == 0, done.stderr
    (out,) = lines(done)
    path = Path(out["path"])
    assert path.is_relative_to(kubin_server.output_dir) and path.is_file()
    assert (out["seed"], out["width"], out["model"]) == (9, 64, "tiny-kd22")
    assert http.get(out["url"].removeprefix(kubin_server.url)).status_code == 200
    assert "Loaded tiny-kd22" not in done.stderr, "nothing is loaded on the command line's side"
    entry = http.get("/kubin/api/v1/history", params={"q": "cli on server"}).json()["items"][0]
    assert (entry["owner"], entry["state"]) == ("cli", "done")


def test_a_local_init_image_travels_and_download_copies_the_outputs_here(kubin_server, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(photo)
    done = kubin_generate(
        tmp_path, "--server", kubin_server.url, "--task", "i2i", "--prompt", "cli i2i", "--init-image", str(photo),
        "--strength", "0.5", "--steps", "2", "--prior-steps", "2", "--batch-count", "2", "--download", str(tmp_path / "got"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outs = lines(done)
    assert len(outs) == 2
    for out in outs:
        copy = Path(out["path"])
        assert copy.parent == tmp_path / "got" and copy.read_bytes() == Path(out["server_path"]).read_bytes()
        meta = json.loads(Image.open(copy).text["kubin"])
        assert meta["task"] == "i2i" and meta["params"]["prompt"] == "cli i2i"


def test_an_unreachable_server_and_a_refused_request_are_one_clear_sentence(kubin_server, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    gone = kubin_generate(tmp_path, "--server", closed, "--prompt", "x", *SMALL)
    assert gone.returncode == 2
    assert f"Could not reach the Kubin server at {closed}" in gone.stderr
    refused = kubin_generate(tmp_path, "--server", kubin_server.url, "--prompt", "x", "--width", "65")
    assert refused.returncode == 2
    assert "The Kubin server said:" in refused.stderr and "multiple of" in refused.stderr
    missing = kubin_generate(
        tmp_path, "--server", kubin_server.url, "--task", "i2i", "--init-image", "nope.png"
    )
    assert missing.returncode == 2 and "--init-image: nope.png does not exist" in missing.stderr
