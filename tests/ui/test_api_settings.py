"""The Settings tab through its Gradio API (/save_settings): what it writes to the user config file."""

from __future__ import annotations

import pytest
import yaml
from gradio_client.exceptions import AppError

# width, height, steps, guidance_scale, prior_steps, prior_guidance_scale; None keeps the model's own.
DEFAULTS_STEPS_3 = [None, None, 3, None, None, None]


def test_save_settings_writes_the_user_config_and_keeps_hand_written_keys(api_client, kubin_server):
    output_dir = str(kubin_server.output_dir)

    reply = api_client.predict(
        "tiny-kd22", "cpu", "fp32", output_dir, *DEFAULTS_STEPS_3, api_name="/save_settings"
    )

    # The server started with device and dtype "auto": the status says the next load applies cpu/fp32.
    assert reply.startswith(f"✓ Saved to `{kubin_server.user_config}`. ")
    assert reply.endswith("for: device/precision.") or reply.endswith("loads: device/precision."), reply
    saved = yaml.safe_load(kubin_server.user_config.read_text(encoding="utf-8"))
    assert saved["model"] == "tiny-kd22"
    assert saved["device"] == "cpu"
    assert saved["dtype"] == "fp32"
    assert saved["output_dir"] == output_dir
    assert saved["ui"]["defaults"]["t2i"] == {"steps": 3}
    assert saved["server"] == {"host": "127.0.0.1"}, "the hand-written key must survive the save"


def test_save_settings_refuses_an_empty_output_folder_and_leaves_the_file_alone(api_client, kubin_server):
    before = kubin_server.user_config.read_text(encoding="utf-8")

    with pytest.raises(AppError) as raised:
        api_client.predict("tiny-kd22", "cpu", "fp32", "  ", *DEFAULTS_STEPS_3, api_name="/save_settings")

    assert "output folder cannot be empty" in raised.value.message
    assert kubin_server.user_config.read_text(encoding="utf-8") == before


def test_the_wildcards_folder_is_saved_and_applies_at_once(api_client, kubin_server, http, tmp_path):
    folder = tmp_path / "my-wildcards"
    folder.mkdir()
    (folder / "animals.txt").write_text("otter\n", encoding="utf-8")
    output_dir = str(kubin_server.output_dir)
    try:
        reply = api_client.predict(
            "tiny-kd22", "cpu", "fp32", output_dir, *DEFAULTS_STEPS_3, wildcards_dir=str(folder),
            api_name="/save_settings",
        )  # fmt: skip
        assert reply.startswith("✓ Saved") and "does not exist" not in reply
        saved = yaml.safe_load(kubin_server.user_config.read_text(encoding="utf-8"))
        assert saved["wildcards"]["path"] == str(folder)
        job = http.post(
            "/kubin/api/v1/tasks/t2i", json={"prompt": "an __animals__", "steps": 2, "seed": 1}
        ).json()
        assert job["results"][0]["prompt"] == "an otter"

        gone = api_client.predict(
            "tiny-kd22", "cpu", "fp32", output_dir, *DEFAULTS_STEPS_3, wildcards_dir=str(tmp_path / "nowhere"),
            api_name="/save_settings",
        )  # fmt: skip
        assert gone.endswith(
            f"The wildcards folder {tmp_path / 'nowhere'} does not exist yet: create it for __name__ wildcards."
        )
    finally:  # the other tests' wildcards
        api_client.predict(
            "tiny-kd22", "cpu", "fp32", output_dir, *DEFAULTS_STEPS_3,
            wildcards_dir=str(kubin_server.wildcards_dir), api_name="/save_settings",
        )  # fmt: skip
