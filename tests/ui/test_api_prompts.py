"""The optional inputs after the scheduler: calls that leave them out keep working, and a negative
prior prompt given by name reaches the saved parameters; a prompt over the length limit is refused."""

import json

import pytest
from gradio_client.exceptions import AppError
from PIL import Image

BASE = dict(model_id="tiny-kd22", prompt="a red cat", negative_prompt="blurry", width=64, height=64, steps=2,
            guidance_scale=4.0, prior_steps=2, prior_guidance_scale=4.0, seed=5, batch_count=1, batch_size=1,
            scheduler="")  # fmt: skip


def test_a_negative_prior_prompt_is_used_and_saved(api_client):
    gallery, info, details, *_ = api_client.predict(**BASE, negative_prior_prompt="dark", api_name="/txt2img")

    assert details["params"]["negative_prior_prompt"] == "dark"
    saved = json.loads(Image.open(details["outputs"][0]["file"]).text["kubin"])
    assert saved["params"]["negative_prior_prompt"] == "dark"
    assert saved["params"]["negative_prompt"] == "blurry"


def test_leaving_the_optional_inputs_out_uses_their_defaults(api_client):
    gallery, info, details, *_ = api_client.predict(**BASE, api_name="/txt2img")

    assert details["params"]["negative_prior_prompt"] == ""
    assert details["params"]["hint_image"] == ""
    assert len(gallery) == 1


def test_a_prompt_over_the_limit_is_refused_in_one_sentence(api_client, kubin_server):
    before = kubin_server.saved_images()

    with pytest.raises(AppError) as raised:
        api_client.predict(**(BASE | {"prompt": "x" * 10_001}), api_name="/txt2img")

    assert raised.value.message == (
        "Prompt is 10,001 characters long; the limit is 10,000 (max_prompt_chars in the config)."
    )
    assert kubin_server.saved_images() == before
