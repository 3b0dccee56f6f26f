"""The launch flags of the REST API and its safety: --listen, --auth, --auth-file, --api/--no-api map to
the server settings, and the defaults are safe (this machine only, API on, no auth)."""

from __future__ import annotations

from kubin.cli import build_parser, load_settings


def settings_for(*argv: str, tmp_path):
    return load_settings(build_parser().parse_args([*argv, "--config", str(tmp_path / "none.yaml")]))


def test_defaults_bind_this_machine_only_with_the_api_on(tmp_path):
    settings = settings_for(tmp_path=tmp_path)
    assert settings.get("server.host") == "127.0.0.1"
    assert settings.get("server.listen") is False
    assert settings.get("server.api") is True
    assert not settings.get("server.auth") and not settings.get("server.auth_file")
    assert settings.get("server.max_upload_mb") > 0 and settings.get("server.max_upload_pixels") > 0


def test_flags_map_to_the_server_settings(tmp_path):
    settings = settings_for(
        "--listen", "--auth", "ada:pw", "--auth-file", "users.txt", "--no-api", tmp_path=tmp_path
    )
    assert settings.get("server.listen") is True
    assert settings.get("server.auth") == "ada:pw"
    assert settings.get("server.auth_file") == "users.txt"
    assert settings.get("server.api") is False
    assert settings_for("--api", tmp_path=tmp_path).get("server.api") is True
