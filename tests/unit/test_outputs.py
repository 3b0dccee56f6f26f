"""Saved images: where they land, how they are named, and the parameters they carry for other tools and for Kubin."""

import datetime as dt
import json

import pytest
from PIL import Image

from kubin.errors import InvalidParams
from kubin.outputs import read_image_metadata, save_image


def metadata(seed=42, prompt="a red cat", negative="blurry", **params):
    return {
        "kubin_version": "0.1.0",
        "task": "t2i",
        "model": "tiny-kd22",
        "scheduler": "DDIM",
        "seed": seed,
        "batch_index": 0,
        "width": 64,
        "height": 64,
        "params": {
            "prompt": prompt,
            "negative_prompt": negative,
            "steps": 2,
            "guidance_scale": 4.0,
            "prior_steps": 3,
            "prior_guidance_scale": 4.0,
            "seed": seed,
            "batch_size": 1,
            **params,
        },
    }


def red_square() -> Image.Image:
    return Image.new("RGB", (64, 64), (200, 30, 30))


def test_images_go_to_a_dated_task_folder_with_increasing_counters(tmp_path):
    first = save_image(red_square(), tmp_path, "t2i", metadata(seed=42))
    second = save_image(red_square(), tmp_path, "t2i", metadata(seed=7))
    third = save_image(red_square(), tmp_path, "t2i", metadata(seed=42))

    folder = tmp_path / "t2i" / dt.date.today().isoformat()
    assert [first, second, third] == [
        folder / "00001-42.png",
        folder / "00002-7.png",
        folder / "00003-42.png",
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["00001-42.png", "00002-7.png", "00003-42.png"]


def test_counters_continue_after_the_highest_file_already_there(tmp_path):
    folder = tmp_path / "t2i" / dt.date.today().isoformat()
    folder.mkdir(parents=True)
    (folder / "00041-1.png").write_bytes(b"")
    (folder / "notes.txt").write_text("mine")

    path = save_image(red_square(), tmp_path, "t2i", metadata(seed=5))

    assert path.name == "00042-5.png"


def test_saving_leaves_no_temporary_files_behind(tmp_path):
    for seed in range(3):
        save_image(red_square(), tmp_path, "t2i", metadata(seed=seed))

    folder = tmp_path / "t2i" / dt.date.today().isoformat()
    assert sorted(p.name for p in folder.iterdir()) == ["00001-0.png", "00002-1.png", "00003-2.png"]


def test_an_image_that_cannot_be_written_leaves_neither_a_file_nor_a_temporary(tmp_path):
    unsavable = Image.new("CMYK", (64, 64))  # PNG has no CMYK mode

    with pytest.raises(OSError):
        save_image(unsavable, tmp_path, "t2i", metadata(seed=1))

    folder = tmp_path / "t2i" / dt.date.today().isoformat()
    assert list(folder.iterdir()) == []


def test_the_png_holds_pixels_and_an_a1111_parameters_text(tmp_path):
    path = save_image(red_square(), tmp_path, "t2i", metadata(seed=42))

    with Image.open(path) as image:
        assert image.size == (64, 64)
        assert image.getpixel((10, 10)) == (200, 30, 30)
        lines = image.text["parameters"].split("\n")

    assert lines[0] == "a red cat"
    assert lines[1] == "Negative prompt: blurry"
    assert lines[2].startswith(
        "Steps: 2, Sampler: DDIM, CFG scale: 4.0, Seed: 42, Size: 64x64, Model: tiny-kd22, "
    )
    assert "Prior steps: 3" in lines[2]
    assert len(lines) == 3


def test_without_a_negative_prompt_there_is_no_negative_prompt_line(tmp_path):
    path = save_image(red_square(), tmp_path, "t2i", metadata(negative=""))

    with Image.open(path) as image:
        lines = image.text["parameters"].split("\n")

    assert lines[0] == "a red cat"
    assert lines[1].startswith("Steps: 2, ")


def test_the_png_holds_the_full_parameters_as_json_that_read_back_exactly(tmp_path):
    meta = metadata(seed=1234)
    path = save_image(red_square(), tmp_path, "t2i", meta)

    with Image.open(path) as image:
        assert json.loads(image.text["kubin"]) == meta
    assert read_image_metadata(path) == meta


def test_a_cyrillic_prompt_reads_back_unchanged(tmp_path):
    prompt = "рыжий кот на подоконнике, акварель"
    path = save_image(red_square(), tmp_path, "t2i", metadata(prompt=prompt, negative="размыто"))

    assert read_image_metadata(path)["params"]["prompt"] == prompt
    assert read_image_metadata(path)["params"]["negative_prompt"] == "размыто"
    with Image.open(path) as image:
        assert image.text["parameters"].startswith(prompt + "\nNegative prompt: размыто\n")


def test_an_open_image_can_be_read_too(tmp_path):
    path = save_image(red_square(), tmp_path, "t2i", metadata(seed=9))

    with Image.open(path) as image:
        assert read_image_metadata(image)["seed"] == 9


def test_a_png_from_another_a1111_tool_gives_its_parameters_text(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a dog\nSteps: 20, Sampler: Euler a, Seed: 1")
    path = tmp_path / "other.png"
    red_square().save(path, pnginfo=info)

    assert read_image_metadata(path) == {"parameters": "a dog\nSteps: 20, Sampler: Euler a, Seed: 1"}


def test_a_png_without_parameters_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "plain.png"
    red_square().save(path)

    with pytest.raises(InvalidParams, match="This image carries no generation parameters."):
        read_image_metadata(path)


def test_a_file_that_is_not_an_image_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")

    with pytest.raises(InvalidParams, match="Could not read the image file"):
        read_image_metadata(path)
    path.write_text("a shopping list")
    with pytest.raises(InvalidParams, match="Could not read the image file") as refused:
        read_image_metadata(path)
    assert "broken.png" in str(refused.value) and str(tmp_path) not in str(refused.value)


def test_a_missing_file_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(InvalidParams, match="Could not read the image file"):
        read_image_metadata(tmp_path / "nowhere.png")


def test_damaged_kubin_metadata_is_reported(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("kubin", "{not json")
    path = tmp_path / "damaged.png"
    red_square().save(path, pnginfo=info)

    with pytest.raises(InvalidParams, match="kubin metadata is damaged"):
        read_image_metadata(path)
