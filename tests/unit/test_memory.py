"""Memory options (runtime/memory.py): how they are read, what place_pipeline switches on, and that each
still makes a valid image on the tiny models, with the same pixels where the option should not change
the arithmetic (tiling below the tile size, slicing a batch, freeing the text encoder)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kubin.engine import DONE, Engine, Job
from kubin.errors import InvalidParams
from kubin.models.manager import ModelManager
from kubin.runtime.memory import MemoryOptions
from kubin.runtime.placement import place_pipeline

PROMPT = {"prompt": "a red cat", "steps": 3, "seed": 11}


def test_options_read_from_config_strings_and_refuse_unknown_names():
    options = MemoryOptions.from_dict({"offload": "Model", "vae_tiling": "yes", "vae_slicing": "0"})

    assert (options.offload, options.vae_tiling, options.vae_slicing) == ("model", True, False)
    assert MemoryOptions.from_dict(None) == MemoryOptions()
    with pytest.raises(InvalidParams, match="Unknown memory option"):
        MemoryOptions.from_dict({"vae_tilling": True})
    with pytest.raises(InvalidParams, match="offload mode"):
        MemoryOptions(offload="disk")


def test_kd50_vae_tiling_and_slicing_switch_on(model_manager):
    from diffusers import Kandinsky5T2IPipeline

    from kubin.models.tiny import tiny_model_folder

    pipe = Kandinsky5T2IPipeline.from_pretrained(tiny_model_folder("tiny-kd50-t2i") / "pipeline")

    notices = place_pipeline(pipe, "cpu", MemoryOptions(vae_tiling=True, vae_slicing=True))

    assert notices == []
    assert pipe.vae.use_tiling and pipe.vae.use_slicing


def test_on_the_cpu_offload_is_skipped_with_a_notice_and_the_rest_applies(tiny_pipes):
    decoder = tiny_pipes["decoder"]
    options = MemoryOptions(offload="sequential", vae_tiling=True, vae_slicing=True, attention_slicing=True)

    notices = place_pipeline(decoder, "cpu", options)

    assert notices[0] == "CPU offload (sequential) needs a GPU; the model runs on the cpu as it is."
    # diffusers' VQModel (the MoVQ) has neither tiling nor slicing: said, not raised.
    assert [n.split(":")[0] for n in notices[1:]] == [
        "KandinskyV22Pipeline could not switch on vae tiling",
        "KandinskyV22Pipeline could not switch on vae slicing",
    ]
    processors = {type(p).__name__ for p in decoder.unet.attn_processors.values()}
    assert processors and all("Sliced" in name for name in processors), processors


def test_an_option_a_pipeline_lacks_is_a_notice_not_an_error(tiny_pipes):
    prior = tiny_pipes["prior"]  # no VAE

    notices = place_pipeline(prior, "cpu", MemoryOptions(vae_tiling=True))

    assert notices == ["KandinskyV22PriorPipeline has no vae tiling; the option is ignored for it."]


@pytest.fixture
def tiny_pipes(model_manager):
    """Fresh tiny-kd22 pipelines (not the session's shared model), so options can be switched on."""
    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline

    from kubin.models.tiny import tiny_model_folder

    folder = tiny_model_folder("tiny-kd22")
    return {
        "prior": KandinskyV22PriorPipeline.from_pretrained(folder / "prior"),
        "decoder": KandinskyV22Pipeline.from_pretrained(folder / "decoder"),
    }


def images(model_id: str, options: MemoryOptions, tmp_path, **values) -> list[np.ndarray]:
    manager = ModelManager(device="cpu", dtype="fp32", memory=options)
    engine = Engine(manager, tmp_path / "out")
    try:
        handle = engine.run(Job("t2i", model_id, {**PROMPT, **values}))
        assert handle.state == DONE
        out = []
        for result in handle.results:
            with Image.open(result.path) as image:
                out.append(np.asarray(image.convert("RGB"), dtype=np.int16))
        return out
    finally:
        engine.close(wait=True)
        manager.unload()


def differs(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    """The largest difference of one pixel channel, in 0..255 levels."""
    return max(int(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("model_id", "option", "exact"),
    [
        ("tiny-kd22", {"attention_slicing": True}, "close"),  # sliced attention: other rounding
        # The tiny VAE's tiles are a few pixels, so a 64x64 image is decoded in blended tiles: another
        # picture near the seams. (A real VAE's tiles are 256-512 px; tiling is meant to change pixels.)
        ("tiny-kd50-t2i", {"vae_tiling": True}, "valid"),
        ("tiny-kd50-t2i", {"vae_slicing": True}, "close"),  # the batch decoded one image at a time
        ("tiny-kd30", {"free_text_encoder": True}, "exact"),  # encode, then move the encoder away
        ("tiny-kd30", {"attention_slicing": True}, "close"),
        ("tiny-kd22", {"channels_last": True}, "close"),  # the same arithmetic in another memory order
        ("tiny-kd31", {"channels_last": True}, "close"),
        ("tiny-kd20", {"channels_last": True}, "close"),  # our native UNet, outside place_pipeline
    ],
)
def test_each_option_still_makes_valid_images_and_the_same_pixels_where_it_should(
    model_id, option, exact, tmp_path
):
    batch = {"batch_size": 2}
    plain = images(model_id, MemoryOptions(), tmp_path / "plain", **batch)
    with_option = images(model_id, MemoryOptions(**option), tmp_path / "option", **batch)

    assert len(with_option) == 2
    for image in with_option:
        assert image.ndim == 3 and image.shape[2] == 3 and image.std() > 0  # a picture, not a flat field
    if exact == "exact":
        assert differs(plain, with_option) == 0
    elif exact == "close":
        assert differs(plain, with_option) <= 2  # rounding in the last bits, not another picture


@pytest.mark.parametrize("preset", ["medvram", "lowvram"])
def test_the_presets_on_the_cpu_give_the_same_picture_within_rounding(preset, tmp_path):
    plain = images("tiny-kd22", MemoryOptions(), tmp_path / "plain")
    with_preset = images("tiny-kd22", MemoryOptions(preset=preset), tmp_path / "preset")

    assert differs(plain, with_preset) <= 2


def test_the_settings_tab_saves_memory_options_for_the_next_load(tmp_path):
    """Settings tab -> user config `memory:` and the manager's options (the model reloads before the next job)."""
    import socket

    import gradio as gr
    import yaml
    from gradio_client import Client

    from kubin.config import load_config
    from kubin.ui.context import UIContext
    from kubin.ui.tabs import settings as settings_tab

    user = tmp_path / "user.yaml"
    settings = load_config(user, {"output_dir": str(tmp_path / "out"), "device": "cpu", "dtype": "fp32"})
    manager = ModelManager(device="cpu", dtype="fp32")
    engine = Engine(manager, tmp_path / "out")
    with gr.Blocks() as demo:
        settings_tab.build(UIContext(engine, settings, "tiny-kd22"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        defaults = [None] * len(settings_tab.UI_DEFAULT_FIELDS)
        # preset, offload, 7 checkboxes, cache, cache threshold, quantize, quantize parts
        memory = [
            "lowvram",
            "model",
            False,
            False,
            True,
            True,
            True,
            False,
            False,
            "first_block",
            0.2,
            "none",
            "all",
        ]

        status = client.predict(
            "tiny-kd22", "cpu", "fp32", str(tmp_path / "out"), *defaults, *memory, api_name="/save_settings"
        )
    finally:
        demo.close()
        engine.close(wait=True)

    saved = yaml.safe_load(user.read_text(encoding="utf-8"))["memory"]
    expected = MemoryOptions(
        offload="model",
        attention_slicing=True,
        free_text_encoder=True,
        preset="lowvram",
        channels_last=True,
        cache="first_block",
        cache_threshold=0.2,
    )
    assert saved == expected.to_dict()
    assert manager.memory == expected
    # No model was loaded: the status names what the next load applies.
    assert status.endswith(
        "Applies when the next model loads: Preset, CPU offload, Attention slicing, "
        "Free the text encoder after encoding, Channels-last, Step cache, Cache threshold."
    ), status


def test_every_declared_option_is_a_flag_a_config_key_and_a_settings_widget(tmp_path):
    """Declared once in MemoryOptions: a new option reaches the command line, the config and Settings."""
    from kubin.cli import build_parser, load_settings
    from kubin.runtime.memory import MEMORY_FIELDS
    from kubin.ui.tabs import settings

    help_text = build_parser().format_help()
    for name, spec in MEMORY_FIELDS.items():
        flag = "--memory-preset" if name == "preset" else "--" + name.replace("_", "-")
        assert flag in help_text, name
        assert settings.MEMORY_LABELS[name] == spec.metadata["label"]
    assert set(settings.MEMORY_FIELDS) == set(MEMORY_FIELDS)
    config = tmp_path / "user.yaml"
    config.write_text("")
    args = build_parser().parse_args(["--config", str(config), "--no-compile", "--cache-threshold", "0.2"])
    loaded = load_settings(args)
    assert loaded.get("memory.cache_threshold") == 0.2 and loaded.get("memory.compile") is False
