"""Image tasks on tiny-kd22 through the engine: image to image, inpaint, outpaint and mix, as a user runs them.

What is checked is what the user sees: the size and number of images, the pixels that must stay as they
were, the notices about fixed-up input, the metadata saved in each PNG, and the message for bad input.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from kubin.engine import DONE, Engine, Job
from kubin.errors import InvalidParams
from kubin.outputs import read_image_metadata
from kubin.params import Image2ImageParams

SMALL = {"steps": 2, "prior_steps": 2, "seed": 1}
BOX = (30, 20, 60, 40)  # the repainted rectangle of the test mask: left, top, right, bottom


def job(task: str, **values) -> Job:
    prompt = {} if task == "mix" else {"prompt": "a red cat"}  # mix takes a list of prompts instead
    return Job(task, "tiny-kd22", {**prompt, **SMALL, **values})


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def box_mask(size, box=BOX, fill=255, background=0) -> Image.Image:
    mask = Image.new("L", size, background)
    mask.paste(fill, box)
    return mask


def farther_than(region: np.ndarray, distance: int) -> np.ndarray:
    """Pixels more than `distance` pixels (in x or y) away from every pixel of `region`."""
    if distance == 0:  # (Pillow's MaxFilter(1) crashes the interpreter)
        return ~region
    grown = Image.fromarray(region.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * distance + 1))
    return np.asarray(grown) == 0


@pytest.fixture
def pictures(tmp_path: Path) -> SimpleNamespace:
    """A user's files: a 100x70 photo (no side a multiple of 64), a second photo, and masks for the first."""
    files = SimpleNamespace(folder=tmp_path)
    for name, image in {
        "photo": noise(100, 70),
        "other": noise(80, 80, seed=1),
        "mask": box_mask((100, 70)),
        "small_mask": box_mask((50, 35), (15, 10, 30, 20)),
        "empty_mask": Image.new("L", (100, 70), 0),
        "white_mask": Image.new("L", (100, 70), 255),
    }.items():
        image.save(tmp_path / f"{name}.png")
        setattr(files, name, str(tmp_path / f"{name}.png"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing useful")
    files.broken = str(tmp_path / "broken.png")
    return files


def task_values(task: str, pictures) -> dict:
    """Parameters for one small job of each task, and the output size they give for the 100x70 photo."""
    return {
        "i2i": {"init_image": pictures.photo, "strength": 0.5},
        "inpaint": {"init_image": pictures.photo, "mask": pictures.mask, "mask_blur": 2},
        "outpaint": {"init_image": pictures.photo, "expand": [16, 0, 16, 0], "feather": 4},
        "mix": {
            "images": [pictures.photo],
            "prompts": ["a dog"],
            "weights": [0.5, 0.5],
            "width": 64,
            "height": 64,
        },
    }[task]


EXPECTED_SIZE = {"i2i": (128, 64), "inpaint": (100, 70), "outpaint": (132, 70), "mix": (64, 64)}
TASKS = list(EXPECTED_SIZE)


# --- every task ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_each_task_gives_batch_count_times_batch_size_images_of_its_size(engine, output_dir, pictures, task):
    handle = engine.run(job(task, **task_values(task, pictures), seed=5, batch_count=2, batch_size=2))

    assert handle.state == DONE and handle.error is None
    assert [r.index for r in handle.results] == [0, 1, 2, 3]
    assert [r.seed for r in handle.results] == [5, 6, 7, 8]
    for result in handle.results:
        assert result.path.parent.parent == output_dir / task
        assert (result.width, result.height) == EXPECTED_SIZE[task]
        with Image.open(result.path) as image:
            assert image.size == EXPECTED_SIZE[task]
        assert read_image_metadata(result.path)["task"] == task
    assert len(list((output_dir / task).rglob("*.png"))) == 4
    assert not np.array_equal(pixels(handle.results[0].path), pixels(handle.results[1].path))


@pytest.mark.parametrize("task", ["i2i", "inpaint", "outpaint"])
def test_a_missing_init_image_is_refused_at_submit(engine, output_dir, pictures, task):
    values = {**task_values(task, pictures), "init_image": ""}
    with pytest.raises(InvalidParams, match=r"^Init image is missing: upload one\.$"):
        engine.submit(job(task, **values))

    values["init_image"] = str(pictures.folder / "holiday.png")
    with pytest.raises(InvalidParams, match=r"^Init image 'holiday.png' does not exist\.$"):
        engine.submit(job(task, **values))

    assert not output_dir.exists()


@pytest.mark.parametrize("task", TASKS)
def test_a_corrupt_image_file_is_refused_naming_the_file(engine, output_dir, pictures, task):
    values = task_values(task, pictures)
    if task == "mix":
        values["images"] = [pictures.broken]
        what = "Mix image 1"
    else:
        values["init_image"] = pictures.broken
        what = "Init image"

    with pytest.raises(
        InvalidParams, match=rf"^{what} 'broken.png' could not be read: it is not an image or it is damaged"
    ):
        engine.submit(job(task, **values))
    assert not output_dir.exists()


def test_a_clean_input_gives_no_notices_and_the_png_carries_none(engine, pictures):
    handle = engine.run(job("inpaint", **task_values("inpaint", pictures)))

    assert handle.notices == []
    assert "notices" not in read_image_metadata(handle.results[0].path)


# --- image to image -----------------------------------------------------------------------------------
def test_image_to_image_saves_its_task_strength_notices_and_a_copy_of_the_init_image(
    engine, output_dir, pictures
):
    handle = engine.run(job("i2i", init_image=pictures.photo, strength=0.5, negative_prompt="blurry"))

    [result] = handle.results
    notice = "The init image is 100x70; the result is 128x64 (multiples of 64)."
    assert handle.notices == [notice]
    saved = read_image_metadata(result.path)
    assert saved["task"] == "i2i"
    assert saved["params"]["strength"] == 0.5
    assert saved["params"]["init_image"] == pictures.photo
    assert saved["notices"] == [notice]
    assert Image2ImageParams.from_dict(saved["params"]) == handle.params
    stored = saved["inputs"]["init_image"]
    assert stored.startswith("inputs/") and stored.endswith(".png")  # relative to the output folder
    assert np.array_equal(pixels(output_dir / stored), pixels(pictures.photo))
    with Image.open(result.path) as image:
        text = image.text["parameters"]
    assert text.startswith("a red cat\nNegative prompt: blurry\n")
    assert "Size: 128x64, Model: tiny-kd22, Task: i2i, Denoising strength: 0.5" in text


def test_the_same_init_image_is_stored_once_for_many_jobs(engine, output_dir, pictures):
    first = engine.run(job("i2i", init_image=pictures.photo, seed=1))
    second = engine.run(job("i2i", init_image=pictures.photo, seed=2))

    paths = [read_image_metadata(h.results[0].path)["inputs"]["init_image"] for h in (first, second)]
    assert paths[0] == paths[1]
    assert [p.name for p in (output_dir / "inputs").iterdir()] == [Path(paths[0]).name]


def test_image_to_image_uses_an_explicit_size_and_the_strength(engine, pictures):
    sized = engine.run(job("i2i", init_image=pictures.photo, width=64, height=128, strength=0.5, steps=4))
    stronger = engine.run(job("i2i", init_image=pictures.photo, width=64, height=128, strength=1.0, steps=4))

    assert (sized.results[0].width, sized.results[0].height) == (64, 128)
    assert sized.notices == []
    assert not np.array_equal(pixels(sized.results[0].path), pixels(stronger.results[0].path))


def test_image_to_image_progress_counts_only_the_steps_that_strength_runs(engine, pictures):
    handle = engine.run(
        job("i2i", init_image=pictures.photo, strength=0.5, steps=4, prior_steps=2, batch_count=2)
    )

    assert handle.total_steps == 2 * (2 + 2)  # prior steps + half of the decoder's 4
    assert handle.step == handle.total_steps


@pytest.mark.parametrize("strength", [1.5, -0.1])
def test_a_strength_outside_0_to_1_is_refused(engine, output_dir, pictures, strength):
    with pytest.raises(InvalidParams, match=rf"^Strength must be between 0 and 1 \(got {strength}\)\.$"):
        engine.submit(job("i2i", init_image=pictures.photo, strength=strength))
    assert not output_dir.exists()


@pytest.mark.parametrize(("strength", "steps"), [(0.2, 4), (0.0, 50)])
def test_a_strength_too_low_for_the_steps_is_refused_with_what_to_raise(engine, pictures, strength, steps):
    with pytest.raises(
        InvalidParams,
        match=rf"^Strength {strength} with {steps} steps leaves no step to run; raise the strength or the steps "
        r"\(strength x steps must be at least 1\)\.$",
    ):
        engine.submit(job("i2i", init_image=pictures.photo, strength=strength, steps=steps))


# --- non-RGB input and the pixel limit ----------------------------------------------------------------
def rgba_photo() -> Image.Image:
    image = noise(100, 70).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 20, 70))  # a transparent strip on the left
    return image


def palette_photo() -> Image.Image:
    image = noise(100, 70).quantize(8)
    image.info["transparency"] = 0
    return image


def deep_photo() -> Image.Image:
    return Image.fromarray((np.arange(100 * 70).reshape(70, 100) * 9).astype(np.uint16))


TRANSPARENT = "Init image had transparent areas; they were filled with white."
DEEP = "Init image had more than 8 bits per channel; it was reduced to 8 bits."


@pytest.mark.parametrize(
    ("make", "notice"),
    [
        (rgba_photo, TRANSPARENT),
        (palette_photo, TRANSPARENT),
        (deep_photo, DEEP),
        (lambda: noise(100, 70).convert("L"), None),
    ],
    ids=["RGBA", "P-with-transparency", "16-bit", "L"],
)
def test_non_rgb_init_images_work_and_the_fix_up_is_told_and_saved(engine, pictures, make, notice):
    path = pictures.folder / "odd.png"
    make().save(path)

    handle = engine.run(job("i2i", init_image=str(path), width=64, height=64))

    assert handle.state == DONE and (handle.results[0].width, handle.results[0].height) == (64, 64)
    expected = [notice] if notice else []
    assert handle.notices == expected
    assert read_image_metadata(handle.results[0].path).get("notices", []) == expected


@pytest.fixture
def small_engine(model_manager, output_dir):
    """An engine configured for at most 20,000 input pixels."""
    engine = Engine(model_manager, output_dir, max_pixels=20_000)
    yield engine
    engine.close(wait=True)


def test_an_image_over_the_configured_maximum_is_downscaled_and_the_user_is_told(small_engine, pictures):
    big = pictures.folder / "big.png"
    noise(400, 200).save(big)
    box_mask((400, 200), (100, 50, 300, 150)).save(pictures.folder / "big-mask.png")

    handle = small_engine.run(job("inpaint", init_image=str(big), mask=str(pictures.folder / "big-mask.png")))

    assert (handle.results[0].width, handle.results[0].height) == (200, 100)
    assert handle.notices == [
        "Init image was 400x200, more than the configured maximum of 20000 pixels; it was downscaled to 200x100.",
        "Mask was 400x200; it was resized to 200x100 to match the image.",
    ]
    assert read_image_metadata(handle.results[0].path)["notices"] == handle.notices


# --- inpaint ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("blur", [0, 2, 4])
def test_inpaint_keeps_the_image_size_and_every_pixel_away_from_the_mask(engine, output_dir, pictures, blur):
    handle = engine.run(job("inpaint", init_image=pictures.photo, mask=pictures.mask, mask_blur=blur))

    out, original = pixels(handle.results[0].path), pixels(pictures.photo)
    assert out.shape == original.shape == (70, 100, 3)
    inside = np.asarray(box_mask((100, 70))) == 255
    diff = np.abs(out - original).max(axis=2)
    assert diff[inside].mean() > 10  # the masked area was repainted
    far = farther_than(inside, 3 * blur)
    assert far.sum() > 0.5 * far.size
    assert diff[far].max() == 0  # exact away from the mask
    # Near the mask the blend follows the soft edge of the mask that was used (saved with the output).
    used = np.asarray(Image.open(output_dir / read_image_metadata(handle.results[0].path)["inputs"]["mask"]))
    outside = ~inside
    assert (diff[outside] <= used[outside].astype(int) + 1).all()


def test_inpaint_with_invert_mask_repaints_the_rest_and_keeps_the_box(engine, pictures):
    handle = engine.run(
        job("inpaint", init_image=pictures.photo, mask=pictures.mask, invert_mask=True, mask_blur=0)
    )

    out, original = pixels(handle.results[0].path), pixels(pictures.photo)
    inside = np.asarray(box_mask((100, 70))) == 255
    diff = np.abs(out - original).max(axis=2)
    assert diff[inside].max() == 0
    assert diff[~inside].mean() > 10


def test_a_mask_of_the_wrong_size_is_resized_and_the_user_is_told(engine, pictures):
    handle = engine.run(job("inpaint", init_image=pictures.photo, mask=pictures.small_mask, mask_blur=0))

    notice = "Mask was 50x35; it was resized to 100x70 to match the image."
    assert handle.notices == [notice]
    assert read_image_metadata(handle.results[0].path)["notices"] == [notice]
    diff = np.abs(pixels(handle.results[0].path) - pixels(pictures.photo)).max(axis=2)
    assert diff[~(np.asarray(box_mask((100, 70))) == 255)].max() == 0  # the half-size box, scaled up


def test_an_empty_mask_is_refused_at_submit_and_nothing_is_saved(engine, output_dir, pictures):
    with pytest.raises(
        InvalidParams,
        match=r"^Mask is empty, so there is nothing to repaint: paint the area to change in white\.$",
    ):
        engine.submit(job("inpaint", init_image=pictures.photo, mask=pictures.empty_mask))
    with pytest.raises(InvalidParams, match=r"^Mask is missing: upload one\.$"):
        engine.submit(job("inpaint", init_image=pictures.photo))

    assert not output_dir.exists()


def test_an_all_white_mask_repaints_the_whole_image_and_says_so(engine, pictures):
    handle = engine.run(job("inpaint", init_image=pictures.photo, mask=pictures.white_mask, mask_blur=0))

    assert handle.notices == ["Mask covers the whole image, so all of it is repainted."]
    diff = np.abs(pixels(handle.results[0].path) - pixels(pictures.photo)).max(axis=2)
    assert (diff > 0).mean() > 0.9


def test_inpaint_saves_copies_of_the_image_and_the_mask_it_used(engine, output_dir, pictures):
    handle = engine.run(job("inpaint", init_image=pictures.photo, mask=pictures.mask, mask_blur=0))

    inputs = read_image_metadata(handle.results[0].path)["inputs"]
    assert set(inputs) == {"init_image", "mask"}
    assert np.array_equal(pixels(output_dir / inputs["init_image"]), pixels(pictures.photo))
    assert np.array_equal(pixels(output_dir / inputs["mask"]), pixels(pictures.mask))
    with Image.open(handle.results[0].path) as image:
        assert "Task: inpaint, Mask blur: 0" in image.text["parameters"]


# --- outpaint -----------------------------------------------------------------------------------------
def test_outpaint_grows_the_canvas_and_keeps_the_original_away_from_the_seam(engine, pictures):
    feather = 8
    handle = engine.run(job("outpaint", init_image=pictures.photo, expand=[32, 8, 24, 0], feather=feather))

    [result] = handle.results
    assert (result.width, result.height) == (100 + 32 + 24, 70 + 8)
    out, original = pixels(result.path), pixels(pictures.photo)
    placed = out[8:, 32:132]  # where the original sits on the new canvas
    far = 3 * feather // 2 + 1  # the seam fades over ~feather pixels; beyond 1.5x it is gone
    assert np.array_equal(placed[far:, far:-far], original[far:, far:-far])
    assert not np.array_equal(placed, original)  # near the seam it blends into the new area


def test_outpaint_to_an_aspect_ratio_grows_evenly_to_reach_it(engine, pictures):
    handle = engine.run(job("outpaint", init_image=pictures.photo, aspect="16:9", feather=0))

    [result] = handle.results
    assert (result.width, result.height) == (124, 70)
    out = pixels(result.path)
    assert np.array_equal(out[:, 12:112], pixels(pictures.photo))  # no feather: all of it kept
    inputs = read_image_metadata(result.path)["inputs"]
    with Image.open(Path(result.path).parents[2] / inputs["init_image"]) as stored:
        assert stored.size == (100, 70)  # the image the user gave, not the canvas


def test_outpaint_with_nothing_to_add_is_refused(engine, pictures):
    with pytest.raises(InvalidParams, match=r"^Nothing to outpaint: expand at least one side"):
        engine.submit(job("outpaint", init_image=pictures.photo))
    with pytest.raises(InvalidParams, match=r"^Aspect ratio must look like 16:9 \(got 'wide'\)\.$"):
        engine.submit(job("outpaint", init_image=pictures.photo, aspect="wide"))


# --- mix ----------------------------------------------------------------------------------------------
def test_mix_of_images_and_prompts_saves_them_all(engine, output_dir, pictures):
    handle = engine.run(
        job(
            "mix",
            images=[pictures.photo, pictures.other],
            prompts=["a dog"],
            weights=[1, 1, 2],
            width=128,
            height=64,
        )
    )

    [result] = handle.results
    assert (result.width, result.height) == (128, 64)
    saved = read_image_metadata(result.path)
    assert saved["task"] == "mix"
    assert saved["params"]["weights"] == [1.0, 1.0, 2.0]
    assert saved["params"]["prompts"] == ["a dog"]
    stored = saved["inputs"]["images"]
    assert [pixels(output_dir / p).shape for p in stored] == [(70, 100, 3), (80, 80, 3)]
    with Image.open(result.path) as image:
        assert image.text["parameters"].startswith("a dog\n")


def test_mix_weights_are_normalised_and_change_the_result(engine):
    def mix(weights):
        handle = engine.run(
            job("mix", prompts=["a cat", "a dog"], weights=weights, width=64, height=64, seed=3)
        )
        return pixels(handle.results[0].path)

    assert np.array_equal(mix([1, 1]), mix([0.25, 0.25]))  # the same shares
    assert not np.array_equal(mix([1, 1]), mix([0.9, 0.1]))


def test_mix_weights_that_add_up_to_zero_are_refused(engine, pictures):
    with pytest.raises(InvalidParams, match=r"^The mix weights add up to zero, so they cannot be normalised"):
        engine.submit(job("mix", images=[pictures.photo], prompts=["a dog"], weights=[1, -1]))


@pytest.mark.parametrize(
    ("values", "count"),
    [({"prompts": ["a dog"], "weights": [1]}, 1), ({"weights": []}, 0)],
    ids=["one-prompt", "nothing"],
)
def test_mix_of_fewer_than_two_items_is_refused(engine, values, count):
    with pytest.raises(
        InvalidParams, match=rf"^Mix needs at least 2 images and/or prompts \(got {count}\)\.$"
    ):
        engine.submit(job("mix", **values))


def test_mix_needs_one_weight_per_item(engine, pictures):
    with pytest.raises(
        InvalidParams, match=r"^Mix needs one weight per image and prompt: 2 item\(s\) but 1 weight\(s\)\.$"
    ):
        engine.submit(job("mix", images=[pictures.photo], prompts=["a dog"], weights=[1]))
