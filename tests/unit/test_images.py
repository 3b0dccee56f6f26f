"""Input images and masks as a user gives them: any mode in, RGB (or an L mask) out, and every fix-up told."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kubin.errors import InvalidParams
from kubin.images import check_image_file, keep_unmasked, load_image, load_mask, snap_size, store_input

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def save(tmp_path: Path, name: str, image: Image.Image, **options) -> str:
    path = tmp_path / name
    image.save(path, **options)
    return str(path)


def rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def mask_with_box(size, box, fill=255, background=0) -> Image.Image:
    mask = Image.new("L", size, background)
    mask.paste(fill, box)
    return mask


# --- load_image ---------------------------------------------------------------------------------------
def test_an_rgb_image_comes_back_unchanged_and_without_notices(tmp_path):
    picture = noise(40, 30)

    image, notices = load_image(save(tmp_path, "photo.png", picture))

    assert image.mode == "RGB" and image.size == (40, 30)
    assert np.array_equal(rgb(image), rgb(picture))
    assert notices == []


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_areas_are_filled_with_white_and_the_user_is_told(tmp_path, mode):
    picture = Image.new("RGBA", (20, 10), RED + (255,))
    picture.paste((0, 0, 0, 0), (10, 0, 20, 10))  # right half fully transparent
    path = save(tmp_path, "cutout.png", picture.convert(mode))

    image, notices = load_image(path)

    pixels = rgb(image)
    assert image.mode == "RGB"
    assert (pixels[:, 10:] == WHITE).all()
    assert (pixels[:, :10] == (RED if mode == "RGBA" else (76, 76, 76))).all()
    assert notices == ["Init image had transparent areas; they were filled with white."]


def test_an_rgba_image_without_transparent_pixels_gives_no_notice(tmp_path):
    path = save(tmp_path, "opaque.png", Image.new("RGBA", (8, 8), BLUE + (255,)))

    image, notices = load_image(path)

    assert (rgb(image) == BLUE).all()
    assert notices == []


def test_a_grayscale_image_becomes_rgb_with_the_same_grays(tmp_path):
    gray = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1)), "L")

    image, notices = load_image(save(tmp_path, "gray.png", gray))

    assert image.mode == "RGB"
    pixels = rgb(image)
    assert np.array_equal(pixels[..., 0], np.asarray(gray)) and np.array_equal(pixels[..., 0], pixels[..., 2])
    assert notices == []


def palette_image() -> Image.Image:
    image = Image.fromarray(np.array([[0, 1, 2, 2]] * 4, dtype=np.uint8), "P")
    image.putpalette([*RED, *BLUE, 0, 255, 0])
    return image


def test_a_palette_image_keeps_its_colours(tmp_path):
    image, notices = load_image(save(tmp_path, "palette.png", palette_image()))

    assert image.mode == "RGB"
    assert [tuple(p) for p in rgb(image)[0]] == [RED, BLUE, (0, 255, 0), (0, 255, 0)]
    assert notices == []


def test_a_palette_image_with_a_transparent_colour_gets_white_there_and_a_notice(tmp_path):
    path = save(tmp_path, "palette-alpha.png", palette_image(), transparency=2)
    assert Image.open(path).mode == "P"  # the file really is a palette image with transparency

    image, notices = load_image(path)

    assert [tuple(p) for p in rgb(image)[0]] == [RED, BLUE, WHITE, WHITE]
    assert notices == ["Init image had transparent areas; they were filled with white."]


def test_a_16_bit_image_is_reduced_to_8_bits_keeping_its_tones_and_says_so(tmp_path):
    deep = np.array([[0, 256, 32768, 65535]] * 2, dtype=np.uint16)
    path = save(tmp_path, "scan16.png", Image.fromarray(deep))
    assert Image.open(path).mode == "I;16"

    image, notices = load_image(path)

    assert image.mode == "RGB"
    assert list(rgb(image)[0, :, 0]) == [0, 1, 128, 255]
    assert notices == ["Init image had more than 8 bits per channel; it was reduced to 8 bits."]


def test_a_file_that_is_not_an_image_is_refused_naming_the_file_but_not_its_folder(tmp_path):
    path = tmp_path / "holiday.png"
    path.write_bytes(b"this is not a PNG")

    with pytest.raises(
        InvalidParams, match=r"^Init image 'holiday.png' could not be read: it is not an image"
    ) as refused:
        load_image(str(path))
    assert str(tmp_path) not in str(refused.value), (
        "the server's (temp) folder is none of the user's business"
    )


def test_an_upload_that_is_not_a_readable_image_is_refused_in_one_sentence_naming_it(tmp_path):
    (tmp_path / "list.png").write_text("eggs, milk")
    (tmp_path / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')
    save(tmp_path, "whole.png", noise(64, 64))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])

    check_image_file(tmp_path / "whole.png")
    for name, reason in (("list.png", "Kubin reads PNG, JPEG"), ("drawing.svg", "Kubin reads PNG, JPEG"),
                         ("cut.png", "it is damaged: image file is truncated")):  # fmt: skip
        with pytest.raises(InvalidParams) as refused:
            check_image_file(tmp_path / name)
        message = str(refused.value)
        assert message.startswith(f"{name} is not an image ({reason}") and "\n" not in message
        assert str(tmp_path) not in message


def test_a_truncated_image_is_refused_when_loaded_not_halfway_through_a_job(tmp_path):
    save(tmp_path, "whole.png", noise(64, 64))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])

    with pytest.raises(InvalidParams, match=r"^Mix image 2 'cut.png' could not be read: .*damaged"):
        load_image(str(tmp_path / "cut.png"), "Mix image 2")


def test_a_missing_file_or_an_empty_path_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidParams, match=r"^Init image 'nowhere.png' does not exist\.$"):
        load_image(str(tmp_path / "nowhere.png"))
    with pytest.raises(InvalidParams, match=r"^Init image is missing: upload one\.$"):
        load_image("")
    with pytest.raises(InvalidParams, match=r"^Mask is missing"):
        load_mask(None, (8, 8))


def test_an_image_over_the_pixel_limit_is_downscaled_keeping_its_aspect_and_says_from_what_to_what(tmp_path):
    path = save(tmp_path, "big.png", noise(400, 200))

    image, notices = load_image(path, max_pixels=20_000)

    assert image.size == (200, 100)
    assert notices == [
        "Init image was 400x200, more than the configured maximum of 20000 pixels; it was downscaled to 200x100."
    ]


def test_an_image_at_the_pixel_limit_is_left_alone(tmp_path):
    image, notices = load_image(save(tmp_path, "fits.png", noise(200, 100)), max_pixels=20_000)

    assert image.size == (200, 100) and notices == []


def test_arrays_and_pil_images_are_accepted_as_they_are():
    picture = noise(16, 8)

    from_array, _ = load_image(np.asarray(picture))
    from_pil, _ = load_image(picture)

    assert np.array_equal(rgb(from_array), rgb(picture)) and np.array_equal(rgb(from_pil), rgb(picture))


# --- load_mask ----------------------------------------------------------------------------------------
def test_a_black_and_white_mask_is_used_as_it_is(tmp_path):
    path = save(tmp_path, "mask.png", mask_with_box((32, 16), (8, 4, 16, 12)))

    mask, notices = load_mask(path, (32, 16))

    assert mask.mode == "L" and mask.size == (32, 16)
    assert np.array_equal(np.asarray(mask), np.asarray(mask_with_box((32, 16), (8, 4, 16, 12))))
    assert notices == []


def test_an_rgb_mask_counts_its_bright_pixels(tmp_path):
    drawn = Image.new("RGB", (16, 16), (0, 0, 0))
    drawn.paste(WHITE, (0, 0, 8, 16))

    mask, _ = load_mask(save(tmp_path, "mask.jpg.png", drawn), (16, 16))

    assert (np.asarray(mask)[:, :8] == 255).all() and (np.asarray(mask)[:, 8:] == 0).all()


def test_a_mask_of_another_size_is_resized_to_the_image_and_the_user_is_told(tmp_path):
    path = save(tmp_path, "small-mask.png", mask_with_box((16, 8), (0, 0, 8, 8)))

    mask, notices = load_mask(path, (64, 32))

    assert mask.size == (64, 32)
    assert (np.asarray(mask)[:, :32] == 255).all() and (np.asarray(mask)[:, 32:] == 0).all()
    assert notices == ["Mask was 16x8; it was resized to 64x32 to match the image."]


def test_an_empty_mask_is_refused_because_nothing_would_be_repainted(tmp_path):
    path = save(tmp_path, "black.png", Image.new("L", (16, 16), 0))

    with pytest.raises(
        InvalidParams, match=r"^Mask is empty, so there is nothing to repaint: paint the area"
    ):
        load_mask(path, (16, 16))


def test_an_all_white_mask_inverted_is_empty_and_the_message_points_at_invert(tmp_path):
    path = save(tmp_path, "white.png", Image.new("L", (16, 16), 255))

    with pytest.raises(InvalidParams, match=r"is empty.*\(or turn off 'invert mask'\)\.$"):
        load_mask(path, (16, 16), invert=True)


def test_an_all_white_mask_repaints_everything_and_says_so(tmp_path):
    mask, notices = load_mask(save(tmp_path, "white.png", Image.new("L", (16, 16), 255)), (16, 16))

    assert np.asarray(mask).min() == 255
    assert notices == ["Mask covers the whole image, so all of it is repainted."]


def test_a_drawn_layer_uses_its_opaque_strokes_whatever_their_colour(tmp_path):
    layer = Image.new("RGBA", (16, 16), (255, 255, 255, 0))  # a white but transparent sheet
    layer.paste((0, 0, 0, 255), (4, 4, 8, 8))  # a black, opaque brush stroke

    mask, notices = load_mask(save(tmp_path, "layer.png", layer), (16, 16))

    expected = mask_with_box((16, 16), (4, 4, 8, 8))
    assert np.array_equal(np.asarray(mask), np.asarray(expected))
    assert notices == []


def test_an_opaque_rgba_mask_uses_its_brightness(tmp_path):
    flat = Image.new("RGBA", (16, 16), (0, 0, 0, 255))
    flat.paste(WHITE + (255,), (0, 0, 16, 4))

    mask, _ = load_mask(save(tmp_path, "flat.png", flat), (16, 16))

    assert (np.asarray(mask)[:4] == 255).all() and (np.asarray(mask)[4:] == 0).all()


def test_invert_swaps_what_is_repainted_and_what_is_kept(tmp_path):
    path = save(tmp_path, "mask.png", mask_with_box((16, 16), (0, 0, 16, 4)))

    mask, _ = load_mask(path, (16, 16), invert=True)

    assert (np.asarray(mask)[:4] == 0).all() and (np.asarray(mask)[4:] == 255).all()


def test_blur_softens_only_the_edge_of_the_mask(tmp_path):
    path = save(tmp_path, "mask.png", mask_with_box((64, 64), (32, 0, 64, 64)))

    mask, _ = load_mask(path, (64, 64), blur=2)

    row = np.asarray(mask)[32]
    assert 0 < row[31] < 255 and 0 < row[32] < 255  # soft across the edge
    assert (row[: 32 - 3 * 2] == 0).all() and (row[32 + 3 * 2 :] == 255).all()  # hard farther away


# --- putting results back, sizes, stored inputs -------------------------------------------------------
def test_keep_unmasked_takes_the_result_inside_the_mask_and_the_original_outside():
    original = Image.new("RGB", (20, 10), RED)
    result = Image.new("RGB", (64, 64), BLUE)  # the pipeline ran at another size
    mask = mask_with_box((20, 10), (0, 0, 10, 10))

    merged = keep_unmasked(original, result, mask)

    assert merged.size == (20, 10)
    assert (rgb(merged)[:, :10] == BLUE).all() and (rgb(merged)[:, 10:] == RED).all()


@pytest.mark.parametrize(
    ("size", "snapped"),
    [((100, 70), (128, 64)), ((64, 64), (64, 64)), ((10, 3000), (64, 2048)), ((95, 96), (64, 128))],
)
def test_snap_size_picks_the_nearest_multiples_of_64_within_the_limits(size, snapped):
    assert snap_size(size) == snapped


def test_a_stored_input_is_one_png_per_distinct_image(tmp_path):
    first = store_input(noise(8, 8, seed=1), tmp_path)
    again = store_input(noise(8, 8, seed=1), tmp_path)
    other = store_input(noise(8, 8, seed=2), tmp_path)

    assert first == again != other
    assert first.parent == tmp_path / "inputs" and first.suffix == ".png"
    assert np.array_equal(rgb(Image.open(first)), rgb(noise(8, 8, seed=1)))
    assert sorted(p.name for p in (tmp_path / "inputs").iterdir()) == sorted([first.name, other.name])


def test_an_image_too_large_to_open_safely_gets_a_clear_error(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    path = tmp_path / "huge.png"
    PILImage.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # 64x64 is over twice that, as a bomb is

    with pytest.raises(InvalidParams, match="too large to open safely"):
        load_image(str(path), "Init image")
