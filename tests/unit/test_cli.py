"""The command line as a script sees it: `python -m kubin ...` in a subprocess, offline, with a private cache."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

GENERATE = ["--task", "t2i", "--prompt", "a red cat", "--width", "64", "--height", "64", "--steps", "2"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "user.yaml").write_text("")  # keep a developer's configs/kubin.user.yaml out of the tests
    return folder


def kubin(workdir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # conftest set KUBIN_CACHE_DIR and an empty HF_HOME
    return subprocess.run(
        [sys.executable, "-m", "kubin", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def generate(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return kubin(workdir, "generate", "--config", str(workdir / "user.yaml"), *args)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def tiny_image(workdir) -> dict:
    """One image made headless from tiny-kd22 with seed 42, as a user would make it."""
    out = workdir / "out-tiny"
    done = generate(workdir, "--model", "tiny-kd22", *GENERATE, "--seed", "42", "--output-dir", str(out))
    assert done.returncode == 0, done.stderr
    [line] = json_lines(done.stdout)
    return line


def test_generate_prints_one_json_line_per_image_with_path_and_seed(workdir, tiny_image):
    assert tiny_image["seed"] == 42
    assert tiny_image["model"] == "tiny-kd22"
    assert tiny_image["task"] == "t2i"
    path = Path(tiny_image["path"])
    assert path.is_file()
    assert path.is_relative_to(workdir / "out-tiny" / "t2i")
    assert path.name == "00001-42.png"
    with Image.open(path) as image:
        assert image.size == (64, 64)


def test_batch_count_two_prints_two_lines(workdir):
    out = workdir / "out-batch"
    done = generate(
        workdir,
        "--model",
        "tiny-kd22",
        *GENERATE,
        "--seed",
        "7",
        "--batch-count",
        "2",
        "--output-dir",
        str(out),
    )

    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    assert [line["seed"] for line in lines] == [7, 8]
    assert [line["index"] for line in lines] == [0, 1]
    assert all(Path(line["path"]).is_file() for line in lines)


def test_a_saved_model_folder_gives_the_same_pixels_with_the_same_command(workdir, tiny_image):
    folder = workdir / "my-tiny"
    saved = kubin(workdir, "save", "tiny-kd22", str(folder), "--config", str(workdir / "user.yaml"))
    assert saved.returncode == 0, saved.stderr
    assert json.loads(saved.stdout) == {"model": "tiny-kd22", "folder": str(folder)}

    out = workdir / "out-folder"
    done = generate(workdir, "--model", str(folder), *GENERATE, "--seed", "42", "--output-dir", str(out))

    assert done.returncode == 0, done.stderr
    [line] = json_lines(done.stdout)
    assert np.array_equal(pixels(line["path"]), pixels(tiny_image["path"]))


def test_a_bad_width_exits_2_with_one_error_line_and_no_traceback(workdir):
    done = generate(
        workdir, "--model", "tiny-kd22", "--prompt", "x", "--width", "100", "--output-dir", str(workdir / "o")
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert (
        "error: Width must be a multiple of 64 (got 100); the nearest are 64 and 128."
        in done.stderr.splitlines()
    )
    assert "Traceback" not in done.stderr
    assert not (workdir / "o").exists()


def test_an_unknown_model_exits_2_naming_the_known_ones(workdir):
    done = generate(workdir, "--model", "kd99", "--prompt", "x")

    assert done.returncode == 2
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "Unknown model 'kd99'" in error and "tiny-kd22" in error
    assert "Traceback" not in done.stderr


def test_a_non_numeric_value_is_refused_by_the_parser(workdir):
    done = generate(workdir, "--model", "tiny-kd22", "--steps", "many")

    assert done.returncode == 2
    assert "--steps: invalid int value: 'many'" in done.stderr


def test_models_lists_each_model_with_family_and_tasks(workdir):
    done = kubin(workdir, "models")

    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()}
    assert rows["tiny-kd22"][1:4] == ["kd22", "diffusers", "t2i,i2i,mix,inpaint,outpaint"]
    assert rows["kd22"][1:4] == ["kd22", "diffusers", "t2i,i2i,mix,inpaint,outpaint"]


def test_models_json_prints_one_object_per_model(workdir):
    done = kubin(workdir, "models", "--json")

    assert done.returncode == 0, done.stderr
    rows = {row["id"]: row for row in json_lines(done.stdout)}
    assert rows["kd22"]["family"] == "kd22"
    assert rows["kd22"]["tasks"] == ["t2i", "i2i", "mix", "inpaint", "outpaint"]
    assert rows["tiny-kd22"]["implementation"] == "diffusers"
    assert rows["tiny-kd22"]["title"].startswith("Kandinsky 2.2 (tiny")


def test_help_answers_at_once_without_importing_torch(workdir):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kubin", "--help"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=30,
    )
    elapsed = time.monotonic() - started

    assert done.returncode == 0
    assert "generate" in done.stdout and "models" in done.stdout
    assert elapsed < 2.0
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "kubin.cli" in imported
    assert not {
        name for name in imported if name.split(".")[0] in ("torch", "diffusers", "gradio", "transformers")
    }


def test_building_the_parser_imports_no_heavy_library():
    snippet = (
        "import sys, kubin.cli; kubin.cli.build_parser(); "
        "heavy = sorted(m for m in ('torch', 'diffusers', 'gradio', 'transformers') if m in sys.modules); "
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=30)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_generate_help_shows_ranges_from_the_parameter_specs(workdir):
    done = kubin(workdir, "generate", "--help")

    assert done.returncode == 0
    assert "Width [64..2048]" in done.stdout
    assert "-1 picks a random seed" in done.stdout
