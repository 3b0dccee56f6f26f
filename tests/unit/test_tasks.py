"""What each task makes of its inputs before a job is queued: the working size, the masks, the outpaint canvas."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kubin.errors import InvalidParams
from kubin.params import (
    Image2ImageParams,
    InpaintParams,
    MixParams,
    OutpaintParams,
    Text2ImageParams,
)
from kubin.tasks import outpaint_margins, prepare


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture
def photo(tmp_path: Path) -> str:
    """A 100x70 picture: neither side a multiple of 64."""
    path = tmp_path / "photo.png"
    noise(100, 70).save(path)
    return str(path)


def write_mask(tmp_path: Path, size, box, name="mask.png") -> str:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    mask.save(tmp_path / name)
    return str(tmp_path / name)


def test_text_to_image_runs_at_the_asked_size_with_no_inputs():
    prepared = prepare(Text2ImageParams(width=128, height=64))

    assert prepared.size == (128, 64)
    assert prepared.image is None and prepared.mask is None and prepared.notices == []
    assert prepared.finish(noise(128, 64)).size == (128, 64)


# --- image to image -----------------------------------------------------------------------------------
def test_image_to_image_takes_the_init_image_size_snapped_to_64_and_says_so(photo):
    prepared = prepare(Image2ImageParams(init_image=photo))

    assert prepared.size == (128, 64)
    assert prepared.image.size == (128, 64)
    assert prepared.notices == ["The init image is 100x70; the result is 128x64 (multiples of 64)."]
    assert prepared.sources["init_image"].size == (100, 70)  # kept as given, for the metadata


def test_image_to_image_of_a_64_multiple_keeps_its_size_without_a_notice(tmp_path):
    noise(192, 128).save(tmp_path / "exact.png")

    prepared = prepare(Image2ImageParams(init_image=str(tmp_path / "exact.png")))

    assert prepared.size == (192, 128) and prepared.notices == []


def test_image_to_image_uses_an_explicit_width_and_height(photo):
    prepared = prepare(Image2ImageParams(init_image=photo, width=256, height=192))

    assert prepared.size == (256, 192) and prepared.image.size == (256, 192)
    assert prepared.notices == []


def test_a_missing_init_image_fails_before_anything_is_queued(tmp_path):
    with pytest.raises(InvalidParams, match=r"^Init image is missing: upload one\.$"):
        prepare(Image2ImageParams())
    with pytest.raises(InvalidParams, match=r"^Init image 'gone.png' does not exist\.$"):
        prepare(InpaintParams(init_image=str(tmp_path / "gone.png"), mask=str(tmp_path / "m.png")))


# --- inpaint ------------------------------------------------------------------------------------------
def test_inpaint_runs_at_the_snapped_size_and_puts_the_result_back_at_the_original_size(tmp_path, photo):
    mask = write_mask(tmp_path, (100, 70), (30, 20, 60, 40))

    prepared = prepare(InpaintParams(init_image=photo, mask=mask, mask_blur=0))

    assert prepared.size == (128, 64)
    assert prepared.image.size == prepared.mask.size == (128, 64)
    assert prepared.original.size == prepared.keep_mask.size == (100, 70)
    repainted = Image.new("RGB", (128, 64), (0, 255, 0))
    out = np.asarray(prepared.finish(repainted)).astype(int)
    original = np.asarray(Image.open(photo)).astype(int)
    assert out.shape == (70, 100, 3)
    assert (out[20:40, 30:60] == (0, 255, 0)).all()
    outside = np.ones((70, 100), bool)
    outside[20:40, 30:60] = False
    assert np.array_equal(out[outside], original[outside])


def test_inpaint_passes_on_the_mask_notices_and_inverts_on_request(tmp_path, photo):
    mask = write_mask(tmp_path, (50, 35), (0, 0, 25, 35))  # half the size: the left half is white

    prepared = prepare(InpaintParams(init_image=photo, mask=mask, invert_mask=True, mask_blur=0))

    keep = np.array(prepared.keep_mask)
    assert (keep[:, :50] == 0).all() and (keep[:, 50:] == 255).all()
    assert prepared.notices == ["Mask was 50x35; it was resized to 100x70 to match the image."]


# --- outpaint -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "aspect", "margins"),
    [
        ((100, 70), "16:9", (12, 0, 12, 0)),  # too narrow: widened evenly, 124x70
        ((100, 70), "1:1", (0, 15, 0, 15)),  # too wide: grown in height, 100x100
        ((101, 70), "2:1", (19, 0, 20, 0)),  # an odd split puts the extra pixel on the right
        ((64, 128), "9:16", (4, 0, 4, 0)),
        ((128, 64), "3:2", (0, 10, 0, 11)),  # and on the bottom
    ],
)
def test_outpaint_margins_for_a_target_aspect_ratio(size, aspect, margins):
    left, top, right, bottom = outpaint_margins(size, OutpaintParams(aspect=aspect))

    assert (left, top, right, bottom) == margins
    width, height = size[0] + left + right, size[1] + top + bottom
    ratio = [float(x) for x in aspect.split(":")]
    assert abs(width / height - ratio[0] / ratio[1]) < 1 / min(width, height)


def test_outpaint_margins_are_the_expand_values_as_given():
    assert outpaint_margins((100, 70), OutpaintParams(expand=[8, 16, 24, 32])) == (8, 16, 24, 32)


def test_outpaint_canvas_holds_the_image_where_the_margins_put_it(photo):
    prepared = prepare(OutpaintParams(init_image=photo, expand=[32, 8, 0, 24], feather=0))

    assert prepared.original.size == prepared.keep_mask.size == (132, 102)
    assert prepared.size == (128, 128)
    assert prepared.image.size == prepared.mask.size == (128, 128)
    canvas = np.asarray(prepared.original)
    assert np.array_equal(canvas[8:78, 32:132], np.asarray(Image.open(photo)))
    keep = np.array(prepared.keep_mask)
    assert (keep[8:78, 32:132] == 0).all()  # no feather: a hard edge at the seam
    keep[8:78, 32:132] = 255
    assert (keep == 255).all()  # and everything new is repainted


def test_outpaint_mask_is_white_on_the_new_area_and_feathers_only_near_the_seam(photo):
    feather = 8
    prepared = prepare(OutpaintParams(init_image=photo, expand=[48, 0, 48, 0], feather=feather))

    keep = np.asarray(prepared.keep_mask).astype(int)
    assert keep.shape == (70, 196)
    assert (keep[:, :48] == 255).all() and (keep[:, 148:] == 255).all()  # the new area, fully repainted
    assert 0 < keep[35, 48] < 255 and 0 < keep[35, 147] < 255  # a soft seam inside the old image
    far = 3 * feather // 2  # the seam blur has radius feather/2; 3 radii out it is gone
    assert (keep[:, 48 + far + 1 : 148 - far - 1] == 0).all()
    assert (np.diff(keep[35, 48 : 48 + far + 2]) <= 0).all()  # fading inward, not speckled


def test_outpaint_by_aspect_ratio_grows_the_canvas_to_that_ratio(photo):
    prepared = prepare(OutpaintParams(init_image=photo, aspect="16:9"))

    assert prepared.original.size == (124, 70)
    assert prepared.size == (128, 64)


def test_outpaint_to_the_aspect_the_image_already_has_is_refused(tmp_path):
    noise(160, 90).save(tmp_path / "wide.png")

    with pytest.raises(
        InvalidParams, match=r"^The image already has the aspect ratio 16:9; nothing to outpaint\."
    ):
        prepare(OutpaintParams(init_image=str(tmp_path / "wide.png"), aspect="16:9"))


def test_outpaint_beyond_the_pixel_limit_is_refused(photo):
    with pytest.raises(
        InvalidParams, match=r"^The outpainted image would be 100x270, larger than the maximum"
    ):
        prepare(OutpaintParams(init_image=photo, expand=[0, 200, 0, 0]), max_pixels=20_000)


# --- mix ----------------------------------------------------------------------------------------------
def test_mix_loads_the_images_in_order_before_the_prompts(tmp_path, photo):
    Image.new("LA", (32, 32), (0, 0)).save(tmp_path / "clear.png")

    prepared = prepare(
        MixParams(images=[photo, str(tmp_path / "clear.png")], prompts=["a dog"], width=128, height=64)
    )

    assert prepared.size == (128, 64)
    first, second, text = prepared.mix_items
    assert first.size == (100, 70) and second.mode == "RGB" and text == "a dog"
    assert prepared.notices == ["Mix image 2 had transparent areas; they were filled with white."]
    assert [im.size for im in prepared.sources["images"]] == [(100, 70), (32, 32)]


def test_mix_of_prompts_only_stores_no_inputs():
    prepared = prepare(MixParams(prompts=["a cat", "a dog"], weights=[1, 1], width=64, height=64))

    assert prepared.mix_items == ["a cat", "a dog"] and prepared.sources == {}


def test_a_broken_mix_image_is_named_by_its_place(tmp_path, photo):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")

    with pytest.raises(InvalidParams, match=r"^Mix image 2 'broken.jpg' could not be read"):
        prepare(MixParams(images=[photo, str(tmp_path / "broken.jpg")], weights=[1, 1]))
