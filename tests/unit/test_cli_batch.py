"""`kubin generate --input-dir`: every image of a folder through the task from the command line, one JSON
line per output with the image it came from, skipped files on stderr, masks matched by name."""

import json
from pathlib import Path

from cli_helpers import kubin_generate
from PIL import Image

from kubin.outputs import read_image_metadata

SMALL = ["--prompt", "a red cat", "--steps", "2", "--prior-steps", "2"]


def _pictures(folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for i, name in enumerate(names):
        Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(folder / name)
    return folder


def test_input_dir_prints_each_images_output_named_as_it_and_reports_what_it_skipped(tmp_path):
    pictures = _pictures(tmp_path / "in", ["b.png", "a.png"])
    (pictures / "readme.txt").write_text("not an image")
    done = kubin_generate(
        tmp_path, "--model", "tiny-kd22", "--task", "i2i", *SMALL, "--strength", "0.5",
        "--input-dir", str(pictures), "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [(Path(x["source"]).name, Path(x["path"]).name) for x in lines] == [
        ("a.png", "a.png"),
        ("b.png", "b.png"),
    ]
    assert (
        Path(lines[0]["path"]).parent
        == tmp_path / "out" / "i2i" / Path(lines[0]["path"]).parent.parent.name / "in"
    )
    assert read_image_metadata(lines[1]["path"])["params"]["init_image"] == str(pictures / "b.png")
    assert "skipped: readme.txt: not an image Pillow can read" in done.stderr


def test_mask_dir_inpaints_each_image_with_its_mask_and_without_input_dir_is_refused(tmp_path):
    pictures = _pictures(tmp_path / "in", ["cat.png"])
    masks = tmp_path / "masks"
    masks.mkdir()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 32))
    mask.save(masks / "cat.png")
    done = kubin_generate(
        tmp_path, "--model", "tiny-kd22", "--task", "inpaint", *SMALL,
        "--input-dir", str(pictures), "--mask-dir", str(masks), "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(x) for x in done.stdout.splitlines() if x.strip()]
    assert read_image_metadata(line["path"])["params"]["mask"] == str(masks / "cat.png")

    alone = kubin_generate(
        tmp_path, "--model", "tiny-kd22", "--task", "inpaint", *SMALL, "--mask-dir", str(masks)
    )
    assert alone.returncode == 2
    assert "--mask-dir goes with --input-dir" in alone.stderr
