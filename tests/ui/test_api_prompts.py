"""The optional inputs after the scheduler: calls that leave them out keep working, and a negative
prior prompt given by name reaches the saved parameters."""

import json

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
