"""The bundled Upscaler extension: Real-ESRGAN checkpoints read by spandrel, tiled upscaling, the models
folder and hub entries, and the clear error when weights are missing offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from extension_helpers import load_bundled
from PIL import Image

from kubin.config import REPO_ROOT
from kubin.errors import InvalidParams, WeightsMissing
from kubin.outputs import read_output_metadata


@pytest.fixture(scope="module")
def ext():
    return load_bundled("upscaler")


def save_tiny_rrdbnet(path: Path, scale: int = 4) -> Path:
    """A randomly initialised, small Real-ESRGAN RRDBNet in the basicsr file layout ({"params_ema": ...})."""
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=2, scale=scale)  # growth channels stay 32
    torch.save({"params_ema": net.state_dict()}, path)
    return path


def picture(size: int = 64) -> Image.Image:
    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 256, (size // 8, size // 8, 3)), np.ones((8, 8, 1)))
    return Image.fromarray(smooth.astype(np.uint8), "RGB")


def test_the_extension_adds_an_upscale_tab_and_a_send_to_button(ext):
    loaded, _ = ext
    assert [tab.title for tab in loaded.api.tabs] == ["Upscale"]
    assert ("upscale", "Upscale") in loaded.api.send_targets
    assert "spandrel==0.4.2" in loaded.manifest["requirements"]


def test_a_random_rrdbnet_on_disk_upscales_64_to_256_and_tiles_match_the_whole_image(ext, tmp_path):
    _, mod = ext
    upscaler = mod.load_upscaler(save_tiny_rrdbnet(tmp_path / "RealESRGAN_tiny_x4.pth"))
    assert (upscaler.scale, upscaler.architecture) == (4, "ESRGAN")

    whole = upscaler_output(mod, upscaler, tile=0)
    calls = []
    tiled = upscaler_output(mod, upscaler, tile=24, progress=lambda done, total: calls.append((done, total)))

    assert whole.size == tiled.size == (256, 256)
    assert calls[-1] == (9, 9), "a 64 px image in 24 px tiles is 3x3 tiles"
    difference = np.abs(np.asarray(whole, dtype=int) - np.asarray(tiled, dtype=int))
    assert difference.mean() < 0.5 and difference.max() <= 8


def upscaler_output(mod, upscaler, **kwargs) -> Image.Image:
    return mod.upscale(upscaler, picture(), **kwargs)


def test_x2_safetensors_and_alpha_are_kept(ext, tmp_path):
    import torch
    from safetensors.torch import save_file

    _, mod = ext
    pth = save_tiny_rrdbnet(tmp_path / "x2.pth", scale=2)
    state = torch.load(pth, weights_only=True)["params_ema"]
    save_file(state, tmp_path / "tiny_x2.safetensors")
    upscaler = mod.load_upscaler(tmp_path / "tiny_x2.safetensors")
    rgba = picture(32).convert("RGBA")
    rgba.putalpha(Image.new("L", (32, 32), 100))

    out = mod.upscale(upscaler, rgba, tile=16)

    assert out.mode == "RGBA" and out.size == (64, 64)
    assert out.getchannel("A").getextrema() == (100, 100)


def test_the_models_folder_lists_checkpoints_then_hub_entries_and_resolves_them(ext, tmp_path):
    _, mod = ext
    save_tiny_rrdbnet(tmp_path / "b.pth")
    (tmp_path / "a.safetensors").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a model")
    hub = mod.hub_models({})

    choices = mod.model_choices(tmp_path, hub)

    assert choices[:2] == ["a.safetensors", "b.pth"]
    assert {"hub: Real-ESRGAN x2plus", "hub: Real-ESRGAN x4plus", "hub: Real-ESRGAN x4plus anime 6B"} <= set(
        choices
    )
    assert mod.weights_path("b.pth", tmp_path, hub) == (tmp_path / "b.pth").resolve()
    with pytest.raises(InvalidParams, match="not an upscaler file"):
        mod.weights_path("../escape.pth", tmp_path / "sub", hub)
    configured = mod.hub_models({"hub_models": {"Mine": "me/upscalers/x4/mine.safetensors"}})
    assert configured == {"Mine": ("me/upscalers", "x4/mine.safetensors")}
    assert mod.models_dir({}) == REPO_ROOT / "models" / "upscalers"
    assert mod.models_dir({"models_dir": str(tmp_path)}) == tmp_path


def test_a_hub_model_missing_offline_is_one_clear_sentence(ext, tmp_path, monkeypatch):
    _, mod = ext
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMissing) as caught:
        mod.weights_path("hub: Real-ESRGAN x4plus", tmp_path, mod.hub_models({}))
    message = str(caught.value)
    assert "RealESRGAN_x4plus.pth" in message and "lllyasviel/Annotators" in message
    assert "HF_HUB_OFFLINE" in message and str(tmp_path) in message
    assert "\n" not in message


def test_a_file_that_is_no_upscaler_is_refused_clearly(ext, tmp_path):
    import torch

    _, mod = ext
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(InvalidParams, match="not an upscaler checkpoint"):
        mod.load_upscaler(tmp_path / "other.pth")


def test_the_result_is_saved_as_an_upscale_output_with_its_parameters(ext, tmp_path):
    _, mod = ext
    path = mod.save_upscaled(picture(), tmp_path, "tiny.pth", 4, 512, "/in/put.png")

    assert path.parent.parent.name == "upscale" and path.suffix == ".png"
    meta = read_output_metadata(path)
    assert meta["task"] == "upscale" and meta["model"] == "tiny.pth"
    assert meta["params"] == {"scale": 4, "tile": 512} and meta["inputs"] == {"image": "/in/put.png"}
