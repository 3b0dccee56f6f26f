"""The REST API's pure logic: credentials, safe output paths, decoding uploaded images, the listen
warning, mapping errors to HTTP statuses, A1111 sampler names and infotext parsing."""

from __future__ import annotations

import base64
import io
import os

import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.testclient import TestClient
from PIL import Image

from kubin.api.a1111 import parse_infotext, pick_sampler
from kubin.api.security import (
    TooLarge,
    credentials_match,
    decode_image,
    error_status,
    limited_route,
    listen_warning,
    load_credentials,
    parse_credentials,
    safe_output_path,
)
from kubin.errors import (
    ConfigError,
    InvalidParams,
    JobCancelled,
    KubinError,
    OutOfMemory,
    UnknownModel,
    UnsupportedTask,
    WeightsMissing,
)


def png_b64(size=(8, 8)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# --- credentials ---------------------------------------------------------------------------------
def test_credentials_come_from_the_flag_and_the_file(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("# a comment\nbob:hunter2\n\ncarol:pa:ss\n", encoding="utf-8")
    assert load_credentials("ada:one,eve:two", str(users)) == [
        ("ada", "one"), ("eve", "two"), ("bob", "hunter2"), ("carol", "pa:ss"),
    ]  # fmt: skip
    assert load_credentials(None, None) == [] and load_credentials("", "") == []


@pytest.mark.parametrize("text", ["nopassword", ":pw", "user:"])
def test_malformed_credentials_are_a_clear_error(text):
    with pytest.raises(ConfigError, match="user:password"):
        parse_credentials(text, "--auth")


def test_an_unreadable_or_empty_auth_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="Could not read the auth file"):
        load_credentials(None, str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n")
    with pytest.raises(ConfigError, match="holds no user:password"):
        load_credentials(None, str(empty))


def test_credentials_match_only_the_exact_pair():
    known = [("ada", "one"), ("bob", "two")]
    assert credentials_match(known, "bob", "two")
    assert not credentials_match(known, "bob", "one")
    assert not credentials_match(known, "ada", "one ")
    assert not credentials_match([], "ada", "one")


# --- files ---------------------------------------------------------------------------------------
@pytest.fixture
def output_tree(tmp_path):
    root = tmp_path / "output"
    (root / "t2i" / "2026-01-01").mkdir(parents=True)
    (root / "t2i" / "2026-01-01" / "00001-5.png").write_bytes(b"png")
    (root / "t2i" / "2026-01-01" / ".tmp-x.png").write_bytes(b"partial")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "t2i" / "out.png")
    os.symlink(root / "t2i" / "2026-01-01" / "00001-5.png", root / "t2i" / "in.png")
    return root


def test_safe_output_path_finds_files_inside_the_folder(output_tree):
    assert safe_output_path(output_tree, "t2i/2026-01-01/00001-5.png").read_bytes() == b"png"
    assert safe_output_path(output_tree, "t2i/in.png").read_bytes() == b"png"  # a link that stays inside


@pytest.mark.parametrize(
    "relative",
    [
        "", "..", "../secret.txt", "t2i/../../secret.txt", "/etc/passwd", "t2i/out.png",
        "t2i/2026-01-01/.tmp-x.png", "t2i", "..\\secret.txt",
        "%2e%2e/secret.txt", "t2i/2026-01-01/00001-5.png\x00", "C:/Windows/win.ini",
    ],
)  # fmt: skip
def test_safe_output_path_refuses_everything_else_with_404(output_tree, relative):
    with pytest.raises(HTTPException) as caught:
        safe_output_path(output_tree, relative)
    assert caught.value.status_code == 404


# --- uploads -------------------------------------------------------------------------------------
def test_decode_image_takes_base64_and_data_urls(tmp_path):
    for value in (png_b64(), "data:image/png;base64," + png_b64(), png_b64().rstrip("=")):
        path = decode_image(value, "init_images[0]", tmp_path / "uploads", 10_000)
        assert Image.open(path).size == (8, 8)


@pytest.mark.parametrize(
    ("value", "words"),
    [("not base64!", "not a base64"), ("", "empty"), (base64.b64encode(b"text").decode(), "not an image")],
)
def test_decode_image_refuses_what_is_not_an_image(tmp_path, value, words):
    with pytest.raises(InvalidParams, match=words):
        decode_image(value, "init_images[0]", tmp_path, 10_000)


def test_decode_image_refuses_too_many_pixels_before_decoding_them(tmp_path):
    with pytest.raises(TooLarge, match="200x100 = 20000 pixels"):
        decode_image(png_b64((200, 100)), "mask", tmp_path, 10_000)
    assert list(tmp_path.iterdir()) == []


# --- warnings and errors -------------------------------------------------------------------------
def test_listening_beyond_this_machine_without_auth_warns():
    assert listen_warning("127.0.0.1", False) is None
    assert listen_warning("localhost", False) is None
    assert listen_warning("0.0.0.0", True) is None
    assert "all network interfaces" in listen_warning("0.0.0.0", False)
    assert "192.168.1.5" in listen_warning("192.168.1.5", False)
    assert "public link" in listen_warning("127.0.0.1", False, share=True)
    assert listen_warning("127.0.0.1", True, share=True) is None


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidParams("x"), 422), (TooLarge("x"), 413), (UnsupportedTask("x"), 422), (UnknownModel("x"), 422),
        (WeightsMissing("x"), 503), (OutOfMemory("x"), 507), (JobCancelled("x"), 409), (ConfigError("x"), 400),
        (KubinError("The engine is shutting down; no new jobs are accepted."), 503), (KubinError("bug"), 500),
    ],
)  # fmt: skip
def test_each_user_error_has_its_status(error, status):
    assert error_status(error) == status


def test_routes_turn_user_errors_into_json_and_refuse_big_and_cross_origin_requests():
    router = APIRouter(route_class=limited_route(1024))

    @router.post("/oom")
    def oom(body: dict) -> None:
        raise OutOfMemory("Out of memory: try a smaller size.")

    @router.post("/ok")
    def ok(body: dict) -> dict:
        return body

    app = FastAPI()
    app.include_router(router)
    client = TestClient(app)
    reply = client.post("/oom", json={})
    assert reply.status_code == 507 and reply.json() == {"detail": "Out of memory: try a smaller size."}
    assert client.post("/ok", json={"a": 1}).json() == {"a": 1}
    assert client.post("/ok", json={"a": "x" * 2000}).status_code == 413
    assert client.post("/ok", content=(b"x" * 512 for _ in range(4))).status_code == 413  # chunked
    assert client.post("/ok", json={}, headers={"origin": "http://evil.example"}).status_code == 403
    assert client.post("/ok", json={}, headers={"origin": "null"}).status_code == 403
    assert client.post("/ok", json={}, headers={"origin": "http://testserver"}).status_code == 200
    as_json = {"content-type": "application/json"}
    assert client.post("/ok", content=iter([b'{"a": ', b"2}"]), headers=as_json).json() == {"a": 2}


# --- A1111 names ---------------------------------------------------------------------------------
OFFERED = ("DDPM", "DDIM", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE")


@pytest.mark.parametrize(
    ("name", "scheduler", "expected"),
    [
        (None, None, ""), ("Automatic", None, ""), ("ddim", None, "DDIM"), ("DPM++ 2M", "Karras", "DPM++ 2M Karras"),
        ("DPM++ 2M Karras", "Automatic", "DPM++ 2M Karras"), ("DPM++ 2M", None, "DPM++ 2M"),
    ],
)  # fmt: skip
def test_a1111_sampler_names_map_to_offered_schedulers(name, scheduler, expected):
    choice = pick_sampler(name, scheduler, OFFERED)
    assert (choice.scheduler, choice.exact, choice.notice(expected)) == (expected, True, None)


@pytest.mark.parametrize(
    ("name", "scheduler", "expected"),
    [
        ("Euler a", None, "DDPM"), ("euler", None, "DDIM"), ("LMS", None, "DPM++ 2M"), ("LMS", "Karras", "DPM++ 2M Karras"),
        ("DPM++ 2M SDE Karras", None, "DPM++ SDE"), ("PLMS", None, "DPM++ 2M"), ("UniPC", None, "DPM++ 2M"),
        ("Heun", None, "DPM++ 2M"), ("DPM2", "Karras", "DPM++ 2M Karras"), ("DDIM CFG++", None, "DDIM"),
    ],
)  # fmt: skip
def test_other_a1111_samplers_run_as_the_closest_offered_one_with_a_notice(name, scheduler, expected):
    choice = pick_sampler(name, scheduler, OFFERED)

    assert (choice.scheduler, choice.exact) == (expected, False)
    assert choice.notice(expected) == (
        f"Sampler {name!r} is not available for this model; {expected}, the closest, ran instead."
    )


def test_an_a1111_sampler_with_nothing_close_runs_the_default_with_a_notice():
    choice = pick_sampler("Euler a", None, ("Flow Match Euler",))
    assert (choice.scheduler, choice.exact) == ("", False)
    assert "its default, Flow Match Euler, ran instead" in choice.notice("Flow Match Euler")
    assert pick_sampler("LCM", None, OFFERED).scheduler == ""


def test_an_unknown_sampler_lists_the_offered_ones():
    with pytest.raises(InvalidParams, match="DDPM, DDIM"):
        pick_sampler("Not a sampler", None, OFFERED)
    assert pick_sampler("Not a sampler", None, OFFERED, strict=False).scheduler == ""


def test_infotext_parses_like_a1111():
    text = (
        'a cat, "quoted"\nsecond line\nNegative prompt: dog\n'
        'Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x768, Model: "a, b: c"'
    )
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == 'a cat, "quoted"\nsecond line'
    assert parsed["Negative prompt"] == "dog"
    assert parsed["Steps"] == "20" and parsed["Sampler"] == "DPM++ 2M Karras"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("512", "768")
    assert parsed["Model"] == "a, b: c"
    assert parse_infotext("just a prompt") == {"Prompt": "just a prompt", "Negative prompt": ""}


def test_a_server_others_reach_reads_no_folder_for_a_batch_unless_the_config_lists_it(tmp_path, engine):
    from kubin.api.jobs import ApiState
    from kubin.config import load_config
    from kubin.ui.app import api_folder_roots

    local = load_config(tmp_path / "none.yaml")
    assert api_folder_roots(local) is None  # any folder: only this machine reaches the server
    listening = load_config(tmp_path / "none.yaml", {"server.listen": True})
    assert api_folder_roots(listening) == []
    listed = load_config(
        tmp_path / "none.yaml", {"server.share": True, "api_folder_roots": [str(tmp_path / "ok")]}
    )
    assert api_folder_roots(listed) == [tmp_path / "ok"]

    state = ApiState(engine, "tiny-kd22", tmp_path, 1 << 20, folder_roots=api_folder_roots(listed))
    state.check_folder(str(tmp_path / "ok" / "pictures"), "input_dir")
    with pytest.raises(HTTPException) as refused:
        state.check_folder(str(tmp_path / "ok" / ".." / "secret"), "input_dir")
    assert refused.value.status_code == 403
    assert "reads folders only under api_folder_roots" in refused.value.detail
