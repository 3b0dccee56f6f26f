"""`kubin tool NAME`: the extensions' commands on the command line. The upscaler and the background remover
run on one image or a whole folder (results named as the images, skipped files reported), with tiny models
made here; an unknown command lists the known ones."""

import json
import warnings
from pathlib import Path

import pytest
from cli_helpers import run_in_process
from PIL import Image

from kubin.outputs import read_image_metadata


def tool(tmp_path: Path, *args: str):
    (tmp_path / "user.yaml").write_text("")
    return run_in_process(tmp_path, ["tool", "--config", str(tmp_path / "user.yaml"), "--output-dir",
                                     str(tmp_path / "out"), *args])  # fmt: skip


@pytest.fixture
def pictures(tmp_path) -> Path:
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("b.png", "a.png"):
        Image.new("RGB", (20, 12), (220, 200, 40)).save(folder / name)
    (folder / "notes.txt").write_text("not a picture")
    return folder


def test_upscale_a_folder_and_an_image_from_the_command_line(tmp_path, pictures):
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    checkpoint = tmp_path / "models" / "tiny_x2.pth"
    checkpoint.parent.mkdir()
    torch.save(
        {"params_ema": ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict()},
        checkpoint,
    )

    done = tool(tmp_path, "upscale", "--input", str(pictures), "--model", str(checkpoint))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(Path(x["source"]).name, Path(x["path"]).name) for x in lines] == [
        ("a.png", "a.png"),
        ("b.png", "b.png"),
    ]
    assert Path(lines[0]["path"]).parent.name == "pics" and Image.open(lines[0]["path"]).size == (40, 24)
    assert read_image_metadata(lines[1]["path"])["params"] == {"scale": 2, "tile": 512}
    assert "skipped: notes.txt: not an image Pillow can read" in done.stderr

    one = tool(
        tmp_path, "upscale", "--input", str(pictures / "a.png"), "--model", str(checkpoint), "--tile", "8"
    )
    assert one.returncode == 0, one.stderr
    (line,) = [json.loads(x) for x in one.stdout.splitlines()]
    assert (line["width"], line["height"]) == (40, 24)


def test_remove_the_background_of_a_folder_with_a_custom_onnx_model(tmp_path, pictures):
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 3, padding=1), torch.nn.Sigmoid())
    onnx = tmp_path / "models" / "tiny.onnx"
    onnx.parent.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net.eval(), torch.zeros(1, 3, 320, 320), str(onnx), dynamo=False)

    done = tool(tmp_path, "rembg", "--input", str(pictures), "--model", str(onnx), "--mask-only")
    assert done.returncode == 0, done.stderr
    paths = [Path(json.loads(line)["path"]) for line in done.stdout.splitlines()]
    assert [p.name for p in paths] == ["a.png", "b.png"]
    assert Image.open(paths[0]).mode == "L"


def test_kubin_tool_lists_the_commands_and_refuses_an_unknown_one(tmp_path):
    listed = tool(tmp_path)
    assert listed.returncode == 0
    assert "upscale" in listed.stdout and "rembg" in listed.stdout
    unknown = tool(tmp_path, "sharpen")
    assert unknown.returncode == 2
    assert (
        "No extension command 'sharpen'; the commands are: " in unknown.stderr and "upscale" in unknown.stderr
    )
