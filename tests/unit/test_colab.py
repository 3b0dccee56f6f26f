"""Colab: the notebook is a valid notebook whose cells use the README's own commands and our real CLI
flags, and --colab picks Drive folders when Drive is mounted."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import nbformat
import pytest

from kubin.cli import build_parser, load_settings
from kubin.runtime import colab
from kubin.runtime.colab import colab_defaults, on_colab

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "kubin_colab.ipynb"


def code_cells() -> list[str]:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    return [c.source for c in notebook.cells if c.cell_type == "code"]


def form_values(cells: list[str]) -> dict[str, str]:
    """The notebook's form fields (NAME = "value"  # @param ...) with their default values."""
    values = {}
    for source in cells:
        for name, value in re.findall(r'^(\w+) = "([^"]*)"\s+# @param', source, re.M):
            values[name] = value
    return values


def test_the_notebook_is_valid_nbformat_json():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert json.loads(NOTEBOOK.read_text(encoding="utf-8"))["nbformat"] == 4
    assert notebook.metadata["accelerator"] == "GPU"


def test_the_install_cell_runs_the_readmes_install_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    install = next(line.strip() for block in blocks for line in block.splitlines() if "install" in line)
    assert install == "./install.sh"
    assert any(source.strip() == f"!{install}" for source in code_cells())


def test_the_launch_cell_is_a_command_line_our_cli_accepts():
    cells = code_cells()
    values = form_values(cells)
    (line,) = [ln for source in cells for ln in source.splitlines() if ln.startswith("!./start.sh")]
    command = line[1:].replace("$auth", "")
    for name, value in values.items():
        command = command.replace(f'"${name}"', shlex.quote(value))

    words = shlex.split(command)
    assert words[0] == "./start.sh"  # start.sh passes its arguments to `python -m kubin`
    args = build_parser().parse_args(words[1:])

    assert args.command is None  # it starts the web UI
    assert (args.colab, args.share) == (True, True)
    assert args.model == values["MODEL"] == "kd50-t2v-lite-sft-5s"
    assert args.memory_preset == values["PRESET"]
    # With a password the same line gets --auth, which the CLI takes too.
    assert build_parser().parse_args([*words[1:], "--auth", "me:secret"]).auth == "me:secret"


@pytest.mark.parametrize(
    "env, expected",
    [({"COLAB_RELEASE_TAG": "release-colab_20261120"}, True), ({"COLAB_GPU": "1"}, True), ({}, False)],
)
def test_colab_is_recognised_by_its_environment(env, expected):
    assert on_colab(env) is expected


def test_with_drive_mounted_outputs_and_caches_go_to_drive(tmp_path):
    drive = tmp_path / "MyDrive"
    drive.mkdir()

    found = colab_defaults(drive, environ={})

    assert found.config["output_dir"] == str(drive / "kubin" / "output")
    assert found.environ == {
        "HF_HOME": str(drive / "kubin" / "hf-cache"),
        "KUBIN_CACHE_DIR": str(drive / "kubin" / "kubin-cache"),
    }
    assert found.config["server.share"] is True and found.config["memory.preset"] == "lowvram"


def test_a_cache_the_user_chose_is_kept(tmp_path):
    drive = tmp_path / "MyDrive"
    drive.mkdir()

    found = colab_defaults(drive, environ={"HF_HOME": "/content/my-hf"})

    assert "HF_HOME" not in found.environ


def test_without_drive_the_outputs_stay_in_the_session_and_the_user_is_told(tmp_path):
    found = colab_defaults(tmp_path / "not-mounted", environ={})

    assert "output_dir" not in found.config and found.environ == {}
    assert "not mounted" in found.notes[0]


def test_colab_defaults_sit_below_the_users_flags(tmp_path, monkeypatch):
    drive = tmp_path / "MyDrive"
    drive.mkdir()
    monkeypatch.setattr(colab, "DRIVE_ROOT", drive)
    for name in ("HF_HOME", "KUBIN_CACHE_DIR"):  # load_settings exports the Drive caches
        monkeypatch.setenv(name, str(tmp_path / name))
    config = tmp_path / "user.yaml"
    config.write_text("", encoding="utf-8")

    on = load_settings(build_parser().parse_args(["--colab", "--config", str(config)]))
    flags = load_settings(
        build_parser().parse_args(["--colab", "--config", str(config), "--output-dir", "mine", "--lowvram"])
    )
    off = load_settings(build_parser().parse_args(["--no-colab", "--config", str(config)]))

    assert on.get("output_dir") == str(drive / "kubin" / "output") and on.get("server.share") is True
    assert flags.get("output_dir") == "mine"
    assert off.get("output_dir") == "output" and not off.get("server.share")
