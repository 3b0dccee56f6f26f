"""Task parameters: what a user types becomes typed values, and bad values get a message naming the problem."""

import pytest

from kubin.errors import InvalidParams
from kubin.params import SEED_MAX, Text2ImageParams, params_class, size_for_aspect


def t2i(**values) -> Text2ImageParams:
    return Text2ImageParams.from_dict(values)


def test_values_from_a_form_or_json_are_converted_to_their_types():
    params = t2i(width="512", height=640.0, steps="30", guidance_scale="7.5", seed="42", prompt=123)

    assert (params.width, params.height, params.steps) == (512, 640, 30)
    assert params.guidance_scale == 7.5 and isinstance(params.guidance_scale, float)
    assert params.seed == 42
    assert params.prompt == "123"


def test_a_missing_or_empty_value_keeps_the_default():
    params = t2i(prompt="a red cat", width=None)

    assert params.width == 768
    assert params.steps == 50
    assert params.seed == -1


def test_a_value_of_the_wrong_type_is_refused_with_the_field_label():
    with pytest.raises(InvalidParams, match=r"Width must be a whole number \(got 'wide'\)"):
        t2i(width="wide")
    with pytest.raises(InvalidParams, match=r"Steps must be a whole number \(got 2\.5\)"):
        t2i(steps=2.5)


def test_unknown_parameter_names_are_an_error_listing_them():
    with pytest.raises(InvalidParams, match=r"Unknown parameter\(s\) for t2i: cfg, sampler\."):
        t2i(prompt="x", sampler="Euler", cfg=7)


def test_defaults_pass_validation_and_round_trip_through_a_dict():
    params = Text2ImageParams(prompt="a red cat")

    assert params.validate() is params
    assert Text2ImageParams.from_dict(params.to_dict()) == params


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"width": 100}, "Width must be a multiple of 64 (got 100); the nearest are 64 and 128."),
        ({"height": 700}, "Height must be a multiple of 64 (got 700); the nearest are 640 and 704."),
        ({"width": 4096}, "Width must be between 64 and 2048 (got 4096)."),
        ({"height": 0}, "Height must be between 64 and 2048 (got 0)."),
        ({"steps": 0}, "Steps must be between 1 and 500 (got 0)."),
        ({"seed": -2}, f"Seed must be between -1 and {SEED_MAX} (got -2)."),
        ({"seed": SEED_MAX + 1}, f"Seed must be between -1 and {SEED_MAX} (got {SEED_MAX + 1})."),
        ({"batch_size": 0}, "Batch size must be between 1 and 16 (got 0)."),
        ({"batch_size": 17}, "Batch size must be between 1 and 16 (got 17)."),
        ({"batch_count": 101}, "Batch count must be between 1 and 100 (got 101)."),
        ({"guidance_scale": -1}, "Guidance scale must be between 0 and 30 (got -1)."),
        # the prior's UnCLIP scheduler divides by steps - 1: one step was a ZeroDivisionError mid-job
        ({"prior_steps": 1}, "Prior steps must be between 2 and 200 (got 1)."),
    ],
)
def test_validate_names_the_bad_value_and_the_allowed_range(values, message):
    params = t2i(prompt="a red cat", **values)

    with pytest.raises(InvalidParams) as caught:
        params.validate()

    assert str(caught.value) == message


def test_the_edges_of_each_range_are_allowed():
    t2i(width=64, height=2048, steps=1, seed=-1, batch_size=16, batch_count=100).validate()
    t2i(seed=0).validate()
    t2i(seed=SEED_MAX).validate()


def test_image_count_is_batch_count_times_batch_size():
    assert t2i(batch_count=3, batch_size=2).image_count == 6


def test_field_specs_carry_labels_and_ranges_for_the_ui():
    width = Text2ImageParams.field_specs()["width"]

    assert (width.label, width.type, width.minimum, width.maximum, width.step) == ("Width", int, 64, 2048, 64)


def test_tasks_are_looked_up_by_name():
    assert params_class("t2i") is Text2ImageParams
    with pytest.raises(InvalidParams, match="Unknown task 'x2y'; known tasks: t2i"):
        params_class("x2y")


def test_16_by_9_at_the_768_square_area_gives_multiples_of_64_with_that_ratio():
    width, height = size_for_aspect("16:9", 768 * 768)

    assert (width, height) == (1024, 576)
    assert width % 64 == 0 and height % 64 == 0
    assert width / height == pytest.approx(16 / 9, rel=0.05)


@pytest.mark.parametrize("aspect", ["1:1", "4:3", "3:4", "3:2", "2:3", "9:16", "21:9"])
def test_every_aspect_gives_a_valid_size_close_to_the_ratio(aspect):
    a, b = (int(x) for x in aspect.split(":"))

    width, height = size_for_aspect(aspect, 768 * 768)

    t2i(width=width, height=height).validate()
    assert width / height == pytest.approx(a / b, rel=0.1)


def test_sizes_stay_within_the_limit():
    width, height = size_for_aspect("21:9", 4096 * 4096)

    assert width == 2048 and height <= 2048


@pytest.mark.parametrize("aspect", ["16x9", "wide", "", "0:1", "16:-9", "1:2:3"])
def test_a_malformed_aspect_ratio_is_refused(aspect):
    with pytest.raises(InvalidParams, match="Aspect ratio must look like 16:9"):
        size_for_aspect(aspect, 768 * 768)
