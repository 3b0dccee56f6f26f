"""Safe defaults over real HTTP, each on its own server: --auth protects the UI and the API alike
(HTTP Basic, or a logged-in UI session), --listen without auth warns, --no-api removes the API,
and request bodies and images over the limits are refused with a clear 413."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cli_helpers import RunningServer, free_port, start_server, stop_server
from PIL import Image

START_TIMEOUT_S = 60
USER, PASSWORD = "ada", "s3cret:with-colon"
FILE_USER, FILE_PASSWORD = "bob", "hunter2"


def start(root: Path, *flags: str, config: str = "") -> RunningServer:
    """`python -m kubin --model tiny-kd22 FLAGS` on a free port with a Kubin cache of its own."""
    return start_server(
        root, "--model", "tiny-kd22", "--output-dir", str(root / "output"), *flags,
        config=config, env={"KUBIN_CACHE_DIR": str(root / "kubin-cache")}, timeout=START_TIMEOUT_S,
    )  # fmt: skip


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """--listen with --auth and --auth-file, and small upload limits from the user config."""
    root = tmp_path_factory.mktemp("kubin-auth")
    auth_file = root / "users.txt"
    auth_file.write_text(f"# users\n{FILE_USER}:{FILE_PASSWORD}\n", encoding="utf-8")
    server = start(
        root, "--listen", "--auth", f"{USER}:{PASSWORD}", "--auth-file", str(auth_file),
        config="server:\n  max_upload_mb: 1\n  max_upload_pixels: 1000000\n",
    )  # fmt: skip
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """--listen without auth and --no-api."""
    server = start(tmp_path_factory.mktemp("kubin-open"), "--listen", "--no-api")
    yield server
    stop_server(server)


def b64_png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


API_CALLS = [
    ("GET", "/sdapi/v1/sd-models", None),
    ("GET", "/sdapi/v1/options", None),
    ("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "tiny-kd22"}),
    ("GET", "/sdapi/v1/samplers", None),
    ("GET", "/sdapi/v1/progress", None),
    ("POST", "/sdapi/v1/interrupt", None),
    ("POST", "/sdapi/v1/txt2img", {"prompt": "x", "steps": 1}),
    ("POST", "/sdapi/v1/img2img", {"init_images": []}),
    ("POST", "/sdapi/v1/png-info", {"image": ""}),
    ("GET", "/kubin/api/v1/models", None),
    ("GET", "/kubin/api/v1/jobs", None),
    ("POST", "/kubin/api/v1/tasks/t2i", {"steps": 1}),
    ("GET", "/kubin/api/v1/outputs/t2i/x.png", None),
    ("GET", "/docs", None),
    ("GET", "/kubin/api/openapi.json", None),
]


@pytest.mark.parametrize(("method", "path", "body"), API_CALLS)
def test_with_auth_every_api_route_needs_credentials(auth_server, method, path, body):
    with httpx.Client(base_url=auth_server.url, timeout=60) as client:
        anonymous = client.request(method, path, json=body)
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert anonymous.headers["www-authenticate"].startswith("Basic")
        wrong = client.request(method, path, json=body, auth=(USER, "wrong"))
        assert wrong.status_code == 401
        for user, password in ((USER, PASSWORD), (FILE_USER, FILE_PASSWORD)):
            allowed = client.request(method, path, json=body, auth=(user, password))
            assert allowed.status_code != 401, (path, allowed.text)


def test_with_auth_the_ui_needs_a_login_and_a_logged_in_session_may_use_the_api(auth_server):
    with httpx.Client(base_url=auth_server.url, timeout=60) as browser:
        assert browser.get("/gradio_api/info").status_code == 401
        assert browser.get("/config").status_code == 401
        assert browser.post("/login", data={"username": USER, "password": "nope"}).status_code == 400
        assert browser.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 200
        assert browser.get("/config").status_code == 200
        assert browser.get("/sdapi/v1/options").status_code == 200  # the session cookie, no Basic header
    assert "without a password" not in auth_server.log(), "no warning: auth is set"
    assert "http://0.0.0.0:" in auth_server.log()


def test_with_auth_generation_works_for_a_logged_in_client(auth_server):
    with httpx.Client(base_url=auth_server.url, timeout=60, auth=(USER, PASSWORD)) as client:
        reply = client.post("/sdapi/v1/txt2img", json={"prompt": "private", "steps": 2})
        assert reply.status_code == 200 and len(reply.json()["images"]) == 1


def test_a_body_over_the_upload_limit_is_a_413(auth_server):
    big = {"init_images": ["A" * (2 * 1024 * 1024)]}
    with httpx.Client(base_url=auth_server.url, timeout=60, auth=(USER, PASSWORD)) as client:
        reply = client.post("/sdapi/v1/img2img", json=big)
        assert reply.status_code == 413 and "1 MB" in reply.json()["detail"]

        def chunks():  # no Content-Length: the server counts while it reads
            for _ in range(40):
                yield b"A" * 65536

        chunked = client.post(
            "/kubin/api/v1/tasks/t2i", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413


def test_ui_uploads_over_the_limit_are_refused_too(auth_server):
    with httpx.Client(base_url=auth_server.url, timeout=60) as browser:
        browser.post("/login", data={"username": USER, "password": PASSWORD})
        small = browser.post("/gradio_api/upload", files={"files": ("a.png", b"x" * 1000, "image/png")})
        assert small.status_code == 200, small.text
        big = browser.post(
            "/gradio_api/upload", files={"files": ("b.png", b"x" * (2 * 1024 * 1024), "image/png")}
        )
        assert big.status_code == 413


def test_an_image_over_the_pixel_limit_is_a_413_naming_its_size(auth_server):
    huge = b64_png(Image.new("RGB", (1500, 1000)))  # compresses to a few KB but is 1.5 MP
    with httpx.Client(base_url=auth_server.url, timeout=60, auth=(USER, PASSWORD)) as client:
        reply = client.post("/sdapi/v1/img2img", json={"init_images": [huge]})
        assert reply.status_code == 413
        assert "1500x1000" in reply.json()["detail"] and "1000000" in reply.json()["detail"]


def test_listen_without_auth_warns_and_no_api_removes_the_api(open_server):
    log = open_server.log()
    assert "warning: Kubin listens on all network interfaces" in log and "--auth" in log
    with httpx.Client(base_url=open_server.url, timeout=60) as client:
        assert client.get("/").status_code == 200, "the UI is still there"
        for path in ("/sdapi/v1/options", "/kubin/api/v1/models", "/docs"):
            assert client.get(path).status_code == 404, path


def test_a_bad_auth_file_stops_the_start_with_a_clear_message(tmp_path):
    missing = tmp_path / "missing.txt"
    done = subprocess.run(
        [sys.executable, "-m", "kubin", "--model", "tiny-kd22", "--port", str(free_port()),
         "--output-dir", str(tmp_path / "out"), "--auth-file", str(missing)],
        capture_output=True, text=True, timeout=60,
        env=os.environ | {"HF_HUB_OFFLINE": "1", "KUBIN_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert done.returncode == 2
    assert f"Could not read the auth file {missing}" in done.stderr
    assert "Traceback" not in done.stderr
