"""The command line as a script sees it, offline, with a private cache: `python -m kubin ...` in a subprocess
for the first image and the commands that must not import torch; the other generate and save commands run
`kubin.cli.main` in this process (cli_helpers.run_in_process), which skips a new interpreter's 5-10 s of
imports per command."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import run_in_process
from PIL import Image

from kubin.outputs import read_image_metadata

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


def generate(workdir: Path, *args: str, in_process: bool = True) -> subprocess.CompletedProcess:
    argv = ["generate", "--config", str(workdir / "user.yaml"), *args]
    return run_in_process(workdir, argv) if in_process else kubin(workdir, *argv)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def tiny_image(workdir) -> dict:
    """One image made headless from tiny-kd22 with seed 42, as a user would make it."""
    out = workdir / "out-tiny"
    done = generate(
        workdir, "--model", "tiny-kd22", *GENERATE, "--seed", "42", "--output-dir", str(out), in_process=False
    )
    assert done.returncode == 0, done.stderr
    [line] = json_lines(done.stdout)
    return line


def test_lora_flags_apply_adapters_by_name_or_by_path_and_an_unknown_one_exits_2(workdir, tiny_image):
    from lora_helpers import kd22_decoder_lora

    folder = workdir / "loras"
    kd22_decoder_lora(folder / "ink.safetensors")
    outside = kd22_decoder_lora(workdir / "elsewhere" / "glow.safetensors", seed=2)
    flags = ["--model", "tiny-kd22", *GENERATE, "--seed", "42", "--lora-dir", str(folder)]
    done = generate(workdir, *flags, "--output-dir", str(workdir / "out-lora"),
                    "--lora", "ink:0.8", "--lora", str(outside))  # fmt: skip
    assert done.returncode == 0, done.stderr
    [line] = json_lines(done.stdout)
    assert np.abs(pixels(line["path"]).astype(int) - pixels(tiny_image["path"])).mean() > 1
    saved = read_image_metadata(line["path"])
    assert saved["params"]["loras"] == ["ink:0.8", f"{outside}:1"]
    fused = generate(workdir, *flags, "--output-dir", str(workdir / "out-fused"), "--fuse-lora",
                     "--lora", "ink:0.8", "--lora", str(outside))  # fmt: skip
    assert fused.returncode == 0, fused.stderr
    [merged] = json_lines(fused.stdout)  # merged into the weights: the same pixels up to rounding
    assert np.abs(pixels(merged["path"]).astype(int) - pixels(line["path"]).astype(int)).mean() < 0.5
    unknown = generate(workdir, *flags, "--lora", "nothere")
    assert unknown.returncode == 2 and "error: No LoRA named 'nothere'" in unknown.stderr


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
    saved = run_in_process(
        workdir, ["save", "tiny-kd22", str(folder), "--config", str(workdir / "user.yaml")]
    )
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


def test_a_prompts_file_makes_one_job_per_line_with_its_parameters_and_templates(workdir):
    wildcards = workdir / "my-wildcards"
    wildcards.mkdir()
    (wildcards / "birds.txt").write_text("owl\n", encoding="utf-8")
    prompts = workdir / "prompts.csv"
    prompts.write_text(
        "prompt,seed,negative_prompt,steps\n"
        "a red cat,5,,\n"
        '"a {green|blue} dog, running",6,blurry,3\n'
        "a __birds__ in the snow,7,,\n",
        encoding="utf-8",
    )
    out = workdir / "out-prompts-file"
    done = generate(
        workdir, "--model", "tiny-kd22", "--prompts-file", str(prompts), "--wildcards-dir", str(wildcards),
        "--width", "64", "--height", "64", "--steps", "2", "--prior-steps", "2", "--output-dir", str(out),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    printed = json_lines(done.stdout)
    assert [(p["line"], p["seed"]) for p in printed] == [(2, 5), (3, 6), (4, 7)]
    saved = [read_image_metadata(p["path"]) for p in printed]
    assert [m["params"]["prompt"] for m in saved] == [
        "a red cat",
        "a {green|blue} dog, running",
        "a __birds__ in the snow",
    ]
    assert saved[1]["prompt"] == printed[1]["prompt"] in ("a green dog, running", "a blue dog, running")
    assert saved[2]["prompt"] == printed[2]["prompt"] == "a owl in the snow"
    assert "prompt_template" not in saved[0], "a prompt without variants or wildcards is no template"
    assert [m["params"]["steps"] for m in saved] == [2, 3, 2], "a line's own value over the flags'"
    assert [m["params"]["negative_prompt"] for m in saved] == ["", "blurry", ""]


# --- image tasks --------------------------------------------------------------------------------------
IMAGE_TASK = ["--model", "tiny-kd22", "--steps", "2", "--prior-steps", "2"]
BOX = (30, 20, 60, 40)  # the white rectangle of the test mask


@pytest.fixture(scope="module")
def user_files(workdir) -> SimpleNamespace:
    """Files a user would pass: a 100x70 photo, an 80x80 one, masks for the first, and a damaged file."""
    folder = workdir / "files"
    folder.mkdir()
    rng = np.random.default_rng(0)
    mask = Image.new("L", (100, 70), 0)
    mask.paste(255, BOX)
    images = {
        "photo": Image.fromarray(rng.integers(0, 256, (70, 100, 3), dtype=np.uint8)),
        "other": Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)),
        "mask": mask,
        "empty_mask": Image.new("L", (100, 70), 0),
    }
    files = SimpleNamespace()
    for name, image in images.items():
        image.save(folder / f"{name}.png")
        setattr(files, name, str(folder / f"{name}.png"))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    files.broken = str(folder / "broken.png")
    files.missing = str(folder / "nope.png")
    return files


def test_generate_image_to_image_prints_a_json_line_per_image_at_the_init_images_size(workdir, user_files):
    out = workdir / "out-i2i"
    done = generate(
        workdir, *IMAGE_TASK, "--task", "i2i", "--prompt", "a red cat", "--init-image", user_files.photo,
        "--strength", "0.5", "--seed", "3", "--batch-count", "2", "--output-dir", str(out),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    assert [(line["task"], line["seed"], line["width"], line["height"]) for line in lines] == [
        ("i2i", 3, 128, 64),
        ("i2i", 4, 128, 64),
    ]
    for line in lines:
        assert Path(line["path"]).is_relative_to(out / "i2i")
        with Image.open(line["path"]) as image:
            assert image.size == (128, 64)
            assert "Denoising strength: 0.5" in image.text["parameters"]


def test_generate_inpaint_with_an_inverted_blurred_mask_keeps_the_masked_box(workdir, user_files):
    out = workdir / "out-inpaint"
    done = generate(
        workdir, *IMAGE_TASK, "--task", "inpaint", "--prompt", "a red cat", "--init-image", user_files.photo,
        "--mask", user_files.mask, "--invert-mask", "--mask-blur", "2", "--seed", "5", "--output-dir", str(out),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    [line] = json_lines(done.stdout)
    assert (line["task"], line["seed"], line["width"], line["height"]) == ("inpaint", 5, 100, 70)
    result, original = pixels(line["path"]).astype(int), pixels(user_files.photo).astype(int)
    left, top, right, bottom = BOX
    kept = (slice(top + 7, bottom - 7), slice(left + 7, right - 7))  # inside the box, beyond 3x the blur
    assert np.array_equal(result[kept], original[kept])
    assert np.abs(result[:10] - original[:10]).mean() > 10  # outside the box is repainted


def test_generate_mix_takes_images_prompts_and_weights(workdir, user_files):
    out = workdir / "out-mix"
    done = generate(
        workdir, *IMAGE_TASK, "--task", "mix", "--images", user_files.photo, user_files.other,
        "--prompts", "a dog in the snow", "--weights", "1", "1", "2", "--width", "64", "--height", "64",
        "--seed", "9", "--output-dir", str(out),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    [line] = json_lines(done.stdout)
    assert (line["task"], line["seed"], line["width"], line["height"]) == ("mix", 9, 64, 64)
    with Image.open(line["path"]) as image:
        assert image.text["parameters"].startswith("a dog in the snow\n")


def test_generate_outpaint_grows_the_canvas_by_expand(workdir, user_files):
    out = workdir / "out-outpaint"
    done = generate(
        workdir, *IMAGE_TASK, "--task", "outpaint", "--prompt", "a wide view", "--init-image", user_files.photo,
        "--expand", "16,0,16,0", "--seed", "2", "--output-dir", str(out),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    [line] = json_lines(done.stdout)
    assert (line["task"], line["seed"], line["width"], line["height"]) == ("outpaint", 2, 132, 70)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--task", "i2i", "--init-image", "{photo}", "--strength", "1.5"],
            "error: Strength must be between 0 and 1 (got 1.5).",
        ),
        (["--task", "i2i", "--prompt", "x"], "error: Init image is missing: upload one."),
        (["--task", "i2i", "--init-image", "{missing}"], "error: Init image 'nope.png' does not exist."),
        (
            ["--task", "mix", "--prompts", "a cat", "a dog", "--weights", "0.5", "-0.5"],
            "error: The mix weights add up to zero, so they cannot be normalised; give them a non-zero total.",
        ),
        (
            ["--task", "mix", "--images", "{photo}", "--weights", "1"],
            "error: Mix needs at least 2 images and/or prompts (got 1).",
        ),
        (
            ["--task", "inpaint", "--init-image", "{photo}", "--mask", "{empty_mask}"],
            "error: Mask is empty, so there is nothing to repaint: paint the area to change in white.",
        ),
        (
            ["--task", "i2i", "--init-image", "{broken}"],
            "error: Init image 'broken.png' could not be read: it is not an image or it is damaged",
        ),
    ],
    ids=[
        "strength-1.5",
        "no-init-image",
        "missing-init-image",
        "zero-weights",
        "mix-one-item",
        "empty-mask",
        "corrupt",
    ],
)
def test_bad_image_task_input_exits_2_with_one_error_line_and_no_traceback(workdir, user_files, args, error):
    out = workdir / "o-bad"
    done = generate(
        workdir,
        "--model",
        "tiny-kd22",
        *[a.format(**vars(user_files)) for a in args],
        "--output-dir",
        str(out),
    )

    assert done.returncode == 2
    assert done.stdout == ""
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(error)
    assert "Traceback" not in done.stderr
    assert not out.exists()
