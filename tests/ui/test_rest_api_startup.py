"""The REST API exists as soon as the server does: from the first moment the port accepts a connection,
/sdapi/v1 answers (a client polling for the server never meets a 404 from a route that comes later)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time

from cli_helpers import free_port

START_TIMEOUT_S = 60


def status_of(port: int, path: str) -> int | None:
    """The HTTP status of GET path, or None while nothing listens on the port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except ConnectionRefusedError:
        return None
    finally:
        connection.close()


def test_the_api_answers_from_the_moment_the_port_does(tmp_path):
    port = free_port()
    config = tmp_path / "user.yaml"
    config.write_text("")
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "KUBIN_CACHE_DIR": str(tmp_path / "cache"),
        "GRADIO_TEMP_DIR": str(tmp_path / "gradio-tmp"),
    }
    command = [
        sys.executable,
        "-m",
        "kubin",
        "--model",
        "tiny-kd22",
        "--port",
        str(port),
        "--config",
        str(config),
    ]
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        answers: list[
            tuple[int, int]
        ] = []  # (API status, page status) from the first moment the port answers
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(answers) < 30:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server never answered"
            api = status_of(port, "/sdapi/v1/sd-models")
            if api is not None:
                answers.append((api, status_of(port, "/")))
    finally:
        process.terminate()
        process.wait(timeout=15)

    assert answers[0][0] == 200, f"the port answered before the API was there: {answers[:5]}"
    assert {api for api, _ in answers} == {200}, answers
    assert answers[-1][1] == 200
