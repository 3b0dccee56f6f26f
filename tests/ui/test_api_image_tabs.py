"""The image tabs through their Gradio API (/img2img, /mix, /inpaint, /outpaint and /<task>_restore), called
by parameter name as a script would: uploads in, saved PNGs and notices out, user mistakes as clear errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw

JOB_TIMEOUT_S = 60
# Tiny settings every call starts from; a test changes only what its story is about.
TINY = {
    "model_id": "tiny-kd22", "steps": 2, "guidance_scale": 4.0, "prior_steps": 2, "prior_guidance_scale": 4.0,
    "seed": 42, "batch_count": 1, "batch_size": 1, "scheduler": "",
}  # fmt: skip
STROKE_BOX = (60, 30, 80, 50)  # where the "drawn" stroke is, on the 100x80 photo
# Outputs of /t2i_restore, in order: the tab's widgets, its model, then the status line.
T2I_RESTORE_OUTPUTS = [
    "prompt", "negative_prompt", "width", "height", "steps", "guidance_scale", "prior_steps",
    "prior_guidance_scale", "seed", "batch_count", "batch_size", "scheduler", "negative_prior_prompt",
    "estimate_depth", "prompt_mode", "loras", "model", "status",
]  # fmt: skip


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Files a user would upload: photos, a drawn stroke layer, a mask, and a .png that is not an image."""
    folder = tmp_path_factory.mktemp("uploads")
    photo = Image.new("RGB", (100, 80), (30, 120, 200))
    draw = ImageDraw.Draw(photo)
    draw.rectangle((5, 5, 30, 30), fill=(250, 200, 0))
    draw.line((0, 79, 99, 0), fill=(200, 20, 20), width=3)
    photo.save(folder / "photo.png")
    Image.new("RGB", (64, 64), (200, 40, 40)).save(folder / "square.png")
    rgba = Image.new("RGBA", (64, 64), (0, 160, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 32, 64))  # left half transparent
    rgba.save(folder / "half-transparent.png")
    stroke = Image.new("RGBA", (100, 80), (0, 0, 0, 0))  # what the editor sends for one white stroke
    ImageDraw.Draw(stroke).rectangle(STROKE_BOX, fill=(255, 255, 255, 255))
    stroke.save(folder / "stroke-layer.png")
    Image.new("RGBA", (100, 80), (0, 0, 0, 0)).save(folder / "empty-layer.png")
    mask = Image.new("L", (100, 80), 0)
    ImageDraw.Draw(mask).rectangle(STROKE_BOX, fill=255)
    mask.save(folder / "mask.png")
    (folder / "not-an-image.png").write_bytes(b"these bytes are a shopping list, not a PNG\n")
    return SimpleNamespace(
        photo=folder / "photo.png",
        square=folder / "square.png",
        rgba=folder / "half-transparent.png",
        stroke=folder / "stroke-layer.png",
        empty_layer=folder / "empty-layer.png",
        mask=folder / "mask.png",
        corrupt=folder / "not-an-image.png",
    )


@pytest.fixture(scope="module")
def client(kubin_server, tmp_path_factory: pytest.TempPathFactory):
    """One gradio_client Client for these tests (closing one takes a second); nothing here needs a fresh
    session, as cancel does. Result files download into a temp folder."""
    client = Client(kubin_server.url, verbose=False, download_files=tmp_path_factory.mktemp("downloads"),
                    analytics_enabled=False)  # fmt: skip
    yield client
    client.close()


def upload(path: Path | None):
    return handle_file(str(path)) if path else None


def editor(background: Path, layer: Path | None = None) -> dict:
    """The inpaint editor's value: the uploaded picture and the layer the user painted on."""
    return {
        "background": upload(background),
        "layers": [upload(layer)] if layer else [],
        "composite": upload(background),
    }


def img2img_inputs(p: SimpleNamespace) -> dict:
    return {"init_image": upload(p.photo), "prompt": "a red cat", "negative_prompt": "", "strength": 0.5,
            "width": 0, "height": 0, "steps": 4}  # fmt: skip


def mix_inputs(p: SimpleNamespace) -> dict:
    """Two images at weight 1; the other slots empty."""
    return {
        "image_1": upload(p.photo), "image_weight_1": 1.0, "image_2": upload(p.square), "image_weight_2": 1.0,
        "image_3": None, "image_weight_3": 1.0, "image_4": None, "image_weight_4": 1.0,
        "prompt_1": "", "prompt_weight_1": 1.0, "prompt_2": "", "prompt_weight_2": 1.0,
        "negative_prompt": "", "width": 64, "height": 64,
    }  # fmt: skip


def inpaint_inputs(p: SimpleNamespace) -> dict:
    return {"editor": editor(p.photo, p.stroke), "mask": None, "prompt": "a round hole", "negative_prompt": "",
            "invert_mask": False, "mask_blur": 4}  # fmt: skip


def outpaint_inputs(p: SimpleNamespace) -> dict:
    return {"init_image": upload(p.photo), "prompt": "more sea", "negative_prompt": "", "expand_left": 32,
            "expand_top": 0, "expand_right": 32, "expand_bottom": 0, "aspect": "", "feather": 16}  # fmt: skip


def generate(client, api_name: str, inputs: dict):
    """Run one job to the end by parameter name; returns (gallery, info markdown, details JSON)."""
    job = client.submit(api_name=api_name, **(TINY | inputs))
    return job.result(timeout=JOB_TIMEOUT_S)


def today_folders() -> set[str]:
    """Today's date folder name, and yesterday's in case the test runs across midnight."""
    today = dt.date.today()
    return {today.isoformat(), (today - dt.timedelta(days=1)).isoformat()}


def assert_saved(kubin_server, task: str, gallery: list, details: dict, size: tuple[int, int]) -> Path:
    """The gallery shows the saved PNGs, each of `size`, under output/<task>/<today>/; returns the first."""
    assert details["state"] == "done"
    files = [Path(out["file"]) for out in details["outputs"]]
    assert len(gallery) == len(files) >= 1
    for item, path in zip(gallery, files, strict=True):
        assert path.is_file()
        assert path.resolve().parent.parent == kubin_server.output_dir.resolve() / task
        assert path.parent.name in today_folders()
        with Image.open(item["image"]) as shown, Image.open(path) as saved:
            assert (shown.size, saved.size) == (size, size)
    assert [(out["width"], out["height"]) for out in details["outputs"]] == [size] * len(files)
    return files[0]


def parameters_text(path: Path) -> str:
    with Image.open(path) as image:
        return image.text["parameters"]


def rgb_array(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


# Image to image


def test_image_to_image_repaints_the_init_image_at_the_nearest_multiple_of_64(client, kubin_server, pictures):
    gallery, info, details = generate(client, "/img2img", img2img_inputs(pictures) | {"seed": 11})

    path = assert_saved(kubin_server, "i2i", gallery, details, (128, 64))
    notice = "The init image is 100x80; the result is 128x64 (multiples of 64)."
    assert notice in info
    assert details["notices"] == [notice]
    assert "1 of 1 image(s)** · seeds 11" in info
    assert gallery[0]["caption"] == "seed 11"
    parameters = parameters_text(path)
    assert parameters.startswith("a red cat\n")
    assert "Denoising strength: 0.5" in parameters
    assert "Size: 128x64" in parameters
    assert "Task: i2i" in parameters


def test_image_to_image_fills_the_transparency_of_an_rgba_init_image(client, kubin_server, pictures):
    inputs = img2img_inputs(pictures) | {"init_image": upload(pictures.rgba)}

    gallery, info, details = generate(client, "/img2img", inputs)

    assert_saved(kubin_server, "i2i", gallery, details, (64, 64))
    assert "Init image had transparent areas; they were filled with white." in info


def test_image_to_image_without_an_init_image_says_it_is_missing(client, kubin_server, pictures):
    before = kubin_server.saved_images("i2i")

    with pytest.raises(AppError) as raised:
        generate(client, "/img2img", img2img_inputs(pictures) | {"init_image": None})

    assert "Init image is missing" in raised.value.message
    assert kubin_server.saved_images("i2i") == before


# Mix


@pytest.mark.parametrize("second", ["image", "prompt"])
def test_mix_blends_an_image_with_a_second_image_or_a_prompt(client, kubin_server, pictures, second):
    inputs = mix_inputs(pictures)
    if second == "prompt":
        inputs |= {"image_2": None, "prompt_1": "a snowy forest", "prompt_weight_1": 0.5}

    gallery, info, details = generate(client, "/mix", inputs | {"seed": 5})

    path = assert_saved(kubin_server, "mix", gallery, details, (64, 64))
    assert "seeds 5" in info
    params = details["params"]
    expected = {"image": (2, [], [1.0, 1.0]), "prompt": (1, ["a snowy forest"], [1.0, 0.5])}[second]
    assert (len(params["images"]), params["prompts"], params["weights"]) == expected
    parameters = parameters_text(path)
    assert "Task: mix" in parameters
    if second == "prompt":
        assert parameters.startswith("a snowy forest\n")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_weight_2": -1.0}, "The mix weights add up to zero, so they cannot be normalised"),
        ({"image_2": None}, "Mix needs at least 2 images and/or prompts (got 1)."),
    ],
    ids=["zero-sum-weights", "single-item"],
)
def test_mix_explains_weights_that_add_up_to_zero_and_a_single_item(
    client, kubin_server, pictures, changes, message
):
    before = kubin_server.saved_images("mix")

    with pytest.raises(AppError) as raised:
        generate(client, "/mix", mix_inputs(pictures) | changes)

    assert message in raised.value.message
    assert kubin_server.saved_images("mix") == before


# Inpaint


@pytest.mark.parametrize("mask_from", ["drawn stroke", "uploaded mask"])
def test_inpaint_repaints_the_masked_area_and_keeps_the_rest_pixel_for_pixel(
    client, kubin_server, pictures, mask_from
):
    inputs = inpaint_inputs(pictures)
    if mask_from == "uploaded mask":
        inputs |= {"editor": editor(pictures.photo), "mask": upload(pictures.mask)}

    gallery, info, details = generate(client, "/inpaint", inputs | {"seed": 9})

    path = assert_saved(kubin_server, "inpaint", gallery, details, (100, 80))  # the upload's own size
    assert "seeds 9" in info
    before, after = rgb_array(pictures.photo), rgb_array(path)
    near = np.zeros(before.shape[:2], dtype=bool)
    left, top, right, bottom = STROKE_BOX
    margin = 16  # the mask blur (4 px) softens the edge; well beyond it nothing may change
    near[max(0, top - margin) : bottom + margin, max(0, left - margin) : right + margin] = True
    assert np.array_equal(after[~near], before[~near]), "pixels far from the mask changed"
    stroke = after[top:bottom, left:right] - before[top:bottom, left:right]
    assert np.abs(stroke).sum(axis=2).mean() > 10, "the masked area was not repainted"
    assert "Mask blur: 4" in parameters_text(path)


def test_inpaint_with_no_strokes_says_the_mask_is_empty(client, kubin_server, pictures):
    before = kubin_server.saved_images("inpaint")
    inputs = inpaint_inputs(pictures) | {"editor": editor(pictures.photo, pictures.empty_layer)}

    with pytest.raises(AppError) as raised:
        generate(client, "/inpaint", inputs)

    assert "Mask is empty" in raised.value.message
    assert "paint the area to change in white" in raised.value.message
    assert kubin_server.saved_images("inpaint") == before


# Outpaint


@pytest.mark.parametrize(
    ("changes", "size"),
    [({}, (164, 80)), ({"expand_left": 0, "expand_right": 0, "aspect": "16:9"}, (142, 80))],
    ids=["expand-32-left-and-right", "aspect-16-9"],
)
def test_outpaint_grows_the_canvas_and_keeps_the_middle(client, kubin_server, pictures, changes, size):
    gallery, info, details = generate(client, "/outpaint", outpaint_inputs(pictures) | changes)

    path = assert_saved(kubin_server, "outpaint", gallery, details, size)
    assert "seeds 42" in info
    added_left = (size[0] - 100) // 2
    middle = rgb_array(path)[:, added_left + 40 : added_left + 60]  # 40 px from each seam: untouched
    assert np.array_equal(middle, rgb_array(pictures.photo)[:, 40:60])
    assert "Task: outpaint" in parameters_text(path)


# Input that cannot be used


@pytest.mark.parametrize(
    ("api_name", "slot", "what"),
    [
        ("/img2img", "init_image", "Init image"),
        ("/mix", "image_2", "Mix image 2"),
        ("/inpaint", "background", "Init image"),
        ("/inpaint", "mask", "Mask"),
        ("/outpaint", "init_image", "Init image"),
    ],
    ids=["img2img", "mix", "inpaint-image", "inpaint-mask", "outpaint"],
)
def test_a_file_that_is_not_an_image_is_reported_and_the_tab_keeps_working(
    client, kubin_server, pictures, api_name, slot, what
):
    task = {"/img2img": "i2i"}.get(api_name, api_name.strip("/"))
    good = {"/img2img": img2img_inputs, "/mix": mix_inputs, "/inpaint": inpaint_inputs,
            "/outpaint": outpaint_inputs}[api_name](pictures)  # fmt: skip
    bad = dict(good)
    if slot == "background":
        bad["editor"] = editor(pictures.corrupt, pictures.stroke)
    else:
        bad[slot] = upload(pictures.corrupt)
    before = kubin_server.saved_images(task)

    with pytest.raises(AppError) as raised:
        generate(client, api_name, bad)

    assert f"{what} 'not-an-image.png' could not be read: it is not an image or it is damaged" in (
        raised.value.message
    )
    assert str(kubin_server.output_dir.parent) not in raised.value.message, "no server (temp) folder"
    assert kubin_server.saved_images(task) == before
    _, _, details = generate(client, api_name, good)
    assert details["state"] == "done"


# Restore parameters


def test_restore_fills_text_to_image_from_a_png_it_made(client):
    made = {"prompt": "a green frog", "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 3,
            "seed": 1234}  # fmt: skip
    _, _, details = generate(client, "/txt2img", made)

    reply = client.predict(upload(Path(details["outputs"][0]["file"])), api_name="/t2i_restore")

    restored = dict(zip(T2I_RESTORE_OUTPUTS, reply, strict=True))
    status = restored.pop("status")
    values = {name: update.get("value") for name, update in restored.items()}
    # Everything the image was made with, the tiny defaults included, and its model.
    expected = {k: v for k, v in TINY.items() if k != "model_id"} | made
    expected |= {
        "negative_prior_prompt": "",
        "estimate_depth": "auto",
        "prompt_mode": "random",
        "loras": [],
        "model": "tiny-kd22",
    }
    assert values == expected
    assert status == "Restored the parameters of a Text to image result (seed 1234, model tiny-kd22)."


def test_restore_fills_image_to_image_with_its_strength(client, pictures):
    _, _, details = generate(client, "/img2img", img2img_inputs(pictures) | {"strength": 0.75, "seed": 77})

    reply = client.predict(upload(Path(details["outputs"][0]["file"])), api_name="/i2i_restore")

    (
        prompt,
        _negative,
        strength,
        *_middle,
        seed,
        _count,
        _size,
        _scheduler,
        _prior_negative,
        _estimate_depth,
        _mode,
        _loras,
        model,
        status,
    ) = reply
    restored = {"prompt": prompt, "strength": strength, "seed": seed, "model": model}
    assert {name: update["value"] for name, update in restored.items()} == {
        "prompt": "a red cat", "strength": 0.75, "seed": 77, "model": "tiny-kd22",
    }  # fmt: skip
    assert "Image to image result (seed 77" in status


def test_restore_from_a_png_without_parameters_changes_nothing_and_says_why(client, pictures):
    reply = client.predict(upload(pictures.photo), api_name="/t2i_restore")

    *updates, status = reply
    assert all("value" not in update for update in updates)
    assert "carries no generation parameters" in status
