"""Configuration: defaults, then the user's file, then command-line flags; a broken file never stops Kubin."""

import os

from kubin.config import DEFAULT_CONFIG, load_config, save_user_settings
from kubin.models.registry import MODELS

DEFAULTS = """\
model: kd22
device: auto
output_dir: output
server:
  host: 127.0.0.1
  port: 7860
"""


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_user_file_overrides_defaults_and_flags_override_both(tmp_path):
    defaults = write(tmp_path / "default.yaml", DEFAULTS)
    user = write(tmp_path / "user.yaml", "model: tiny-kd22\nserver:\n  port: 9000\n")

    loaded = load_config(
        user, {"server.port": 8000, "device": "cpu", "output_dir": None}, default_path=defaults
    )

    assert loaded.warnings == []
    assert loaded.get("model") == "tiny-kd22"  # user file
    assert loaded.get("server.port") == 8000  # flag beats user file
    assert loaded.get("device") == "cpu"  # flag beats defaults
    assert loaded.get("server.host") == "127.0.0.1"  # defaults fill what the user file leaves out
    assert loaded.get("output_dir") == "output"  # an unset flag changes nothing
    assert loaded.get("server") == {"host": "127.0.0.1", "port": 8000}
    assert loaded.get("no.such.key", "fallback") == "fallback"


def test_shipped_defaults_load_cleanly(tmp_path):
    loaded = load_config(write(tmp_path / "user.yaml", ""))

    assert loaded.warnings == []
    assert loaded.get("model") in MODELS
    # A new install starts with Kandinsky 5.0 Lite text to video.
    assert MODELS[loaded.get("model")].family == "kd50"
    assert MODELS[loaded.get("model")].tasks == ("t2v",)
    assert loaded.get("device") == "auto"
    assert isinstance(loaded.get("server.port"), int)
    assert DEFAULT_CONFIG.is_file()


def test_a_corrupt_user_file_gives_a_warning_and_the_defaults(tmp_path):
    defaults = write(tmp_path / "default.yaml", DEFAULTS)
    user = write(tmp_path / "user.yaml", "model: [tiny-kd22\nserver: {port: 9000\n")

    loaded = load_config(user, default_path=defaults)

    assert loaded.get("model") == "kd22"
    assert loaded.get("server.port") == 7860
    assert len(loaded.warnings) == 1
    assert str(user) in loaded.warnings[0]
    assert "using the defaults instead" in loaded.warnings[0]


def test_a_user_file_that_is_a_list_gives_a_warning_and_the_defaults(tmp_path):
    defaults = write(tmp_path / "default.yaml", DEFAULTS)
    user = write(tmp_path / "user.yaml", "- model\n- tiny-kd22\n")

    loaded = load_config(user, default_path=defaults)

    assert loaded.get("model") == "kd22"
    assert "top level is not a mapping" in loaded.warnings[0]


def test_a_missing_user_file_named_on_the_command_line_is_mentioned(tmp_path):
    defaults = write(tmp_path / "default.yaml", DEFAULTS)

    loaded = load_config(tmp_path / "nope.yaml", default_path=defaults)

    assert loaded.get("model") == "kd22"
    assert "does not exist yet" in loaded.warnings[0]
    assert loaded.user_path == tmp_path / "nope.yaml"


def test_saving_settings_keeps_the_keys_written_by_hand(tmp_path):
    user = write(tmp_path / "user.yaml", "my_note: keep me\nserver:\n  port: 9000\n")

    save_user_settings(user, {"model": "tiny-kd22", "server.host": "0.0.0.0"})

    defaults = write(tmp_path / "default.yaml", DEFAULTS)
    loaded = load_config(user, default_path=defaults)
    assert loaded.warnings == []
    assert loaded.get("my_note") == "keep me"
    assert loaded.get("server") == {"host": "0.0.0.0", "port": 9000}
    assert loaded.get("model") == "tiny-kd22"


def test_saving_settings_creates_the_file_and_its_folder(tmp_path):
    user = tmp_path / "configs" / "user.yaml"

    save_user_settings(user, {"ui.defaults.t2i.steps": 30})

    loaded = load_config(user, default_path=write(tmp_path / "default.yaml", DEFAULTS))
    assert loaded.get("ui.defaults.t2i") == {"steps": 30}


def test_saving_a_section_replaces_it_so_a_cleared_default_is_gone(tmp_path):
    user = write(
        tmp_path / "user.yaml", "ui:\n  defaults:\n    t2i: {steps: 7, width: 512}\n    i2i: {steps: 9}\n"
    )

    save_user_settings(user, {"ui.defaults.t2i": {"width": 512}})

    loaded = load_config(user, default_path=write(tmp_path / "default.yaml", DEFAULTS))
    assert loaded.get("ui.defaults") == {"t2i": {"width": 512}, "i2i": {"steps": 9}}


def test_saving_settings_replaces_the_file_atomically(tmp_path):
    user = write(tmp_path / "user.yaml", "model: kd22\n")
    # A second name for the old file: an in-place rewrite would change what it shows, a rename does not.
    old_copy = tmp_path / "old-link.yaml"
    os.link(user, old_copy)

    save_user_settings(user, {"model": "tiny-kd22"})

    assert old_copy.read_text() == "model: kd22\n"
    assert "tiny-kd22" in user.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old-link.yaml", "user.yaml"]


def test_a_corrupt_user_file_is_kept_as_bad_when_settings_are_saved(tmp_path):
    broken = "model: [tiny-kd22\n"
    user = write(tmp_path / "user.yaml", broken)

    save_user_settings(user, {"device": "cpu"})

    assert (tmp_path / "user.yaml.bad").read_text() == broken
    loaded = load_config(user, default_path=write(tmp_path / "default.yaml", DEFAULTS))
    assert loaded.warnings == []
    assert loaded.get("device") == "cpu"
    assert loaded.get("model") == "kd22"
