"""The bundled Background remover extension: rembg sessions whose model home is the configured folder, a
custom ONNX model (a tiny one exported here) giving an RGBA cut-out, and clear errors for missing models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from extension_helpers import load_bundled
from PIL import Image

from kubin.errors import InvalidParams, WeightsMissing
from kubin.outputs import read_output_metadata


@pytest.fixture(scope="module")
def ext():
    return load_bundled("rembg")


def export_tiny_matting_model(path: Path) -> Path:
    """A tiny conv net exported with torch.onnx: image [N,3,H,W] in, subject probability [N,1,H,W] out, as
    rembg's U2-Net sessions expect (they read the first input's name and the first output's channel 0)."""
    import warnings

    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)
            with torch.no_grad():  # the subject is what is brighter than the background
                self.conv.weight.fill_(1.0)
                self.conv.bias.fill_(0.0)

        def forward(self, x):
            return torch.sigmoid(self.conv(x))

    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; the new one needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(Tiny().eval(), torch.zeros(1, 3, 320, 320), str(path), input_names=["input.1"],
                          output_names=["mask"], dynamic_axes={"input.1": {0: "n"}, "mask": {0: "n"}},
                          dynamo=False)  # fmt: skip
    return path


def picture() -> Image.Image:
    """A bright square (the subject) on a dark background."""
    image = np.full((64, 64, 3), 20, dtype=np.uint8)
    image[16:48, 16:48] = 235
    return Image.fromarray(image, "RGB")


def test_the_extension_adds_a_tab_and_a_send_to_button(ext):
    loaded, mod = ext
    assert [tab.title for tab in loaded.api.tabs] == ["Remove background"]
    assert ("rembg", "Remove background") in loaded.api.send_targets
    assert "rembg[cpu]==2.0.86" in loaded.manifest["requirements"]
    assert mod.CUSTOM == "custom ONNX file"


def test_neither_setup_nor_a_missing_model_imports_rembg(tmp_path):
    """rembg's first import takes ~30 s: loading the extension must not pay it, nor must the message that a
    model is missing (the files are checked first), which comes at once."""
    import subprocess

    code = (
        "import sys, time\nfrom kubin.config import REPO_ROOT\nfrom kubin.errors import WeightsMissing\n"
        "from kubin.extensions.loader import discover, load_all\n"
        "exts = load_all([e for e in discover(REPO_ROOT / 'extensions') if e.name == 'rembg'])\n"
        "assert exts[0].status == 'ok', exts[0].status_line()\nprint('rembg' in sys.modules, 'onnxruntime' in sys.modules)\n"
        "mod = sys.modules['kubin_extension_rembg']\nstarted = time.monotonic()\n"
        f"try:\n    mod.new_session('isnet-general-use', mod.Path({str(tmp_path)!r}))\n"
        "except WeightsMissing as exc:\n    print(round(time.monotonic() - started, 2), exc, file=sys.stderr)\n"
        "print('rembg' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=os.environ | {"HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    seconds, _, message = out.stderr.strip().splitlines()[-1].partition(" ")
    assert message.startswith("Background remover isnet-general-use needs isnet-general-use.onnx"), out.stderr
    assert out.stdout.split() == ["False", "False", "False", "False"]
    assert float(seconds) < 1.0


def test_a_custom_onnx_model_in_the_models_folder_cuts_out_the_subject_with_alpha(ext, tmp_path):
    _, mod = ext
    export_tiny_matting_model(tmp_path / "tiny.onnx")
    assert mod.custom_files(tmp_path) == ["tiny.onnx"]

    session = mod.new_session(mod.CUSTOM, tmp_path, "tiny.onnx")
    cutout = mod.remove_background(session, picture())

    assert cutout.mode == "RGBA" and cutout.size == (64, 64)
    alpha = np.asarray(cutout.getchannel("A"), dtype=int)
    assert alpha[32, 32] > 200 and alpha[2, 2] < 50, "subject opaque, background transparent"
    assert cutout.getpixel((32, 32))[:3] == (235, 235, 235)
    mask = mod.remove_background(session, picture(), mask_only=True)
    assert mask.mode == "L" and np.asarray(mask)[32, 32] > 200


def test_custom_models_outside_the_models_folder_or_missing_are_refused(ext, tmp_path):
    _, mod = ext
    folder = tmp_path / "rembg"
    folder.mkdir()
    export_tiny_matting_model(tmp_path / "outside.onnx")
    with pytest.raises(InvalidParams, match="must lie in the rembg models folder"):
        mod.custom_path(folder, str(tmp_path / "outside.onnx"))
    with pytest.raises(InvalidParams, match="must lie in the rembg models folder"):
        mod.custom_path(folder, "../outside.onnx")
    with pytest.raises(WeightsMissing, match="No ONNX model nope.onnx"):
        mod.custom_path(folder, "nope.onnx")
    with pytest.raises(InvalidParams, match="Choose a custom .onnx file"):
        mod.custom_path(folder, " ")


def test_a_named_model_is_found_in_the_models_folder(ext, tmp_path):
    """A model file dropped into the folder (rembg's flat layout) is used as that model: no download."""
    _, mod = ext
    export_tiny_matting_model(tmp_path / "u2netp.onnx")
    session = mod.new_session("u2netp", tmp_path)
    assert session.model_name == "u2netp"
    assert mod.remove_background(session, picture()).mode == "RGBA"


def test_a_named_model_missing_offline_is_one_clear_sentence(ext, tmp_path, monkeypatch):
    _, mod = ext
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMissing) as caught:
        mod.new_session("isnet-general-use", tmp_path)
    message = str(caught.value)
    assert "isnet-general-use.onnx" in message and str(tmp_path) in message and "HF_HUB_OFFLINE" in message
    assert "\n" not in message
    assert not (tmp_path / "models").exists(), "nothing was downloaded"


def test_every_offered_model_is_a_rembg_session(ext):
    from rembg.sessions import sessions

    _, mod = ext
    assert set(mod.MODELS) <= set(sessions)


def test_the_cutout_is_saved_as_a_rembg_output_with_its_alpha(ext, tmp_path):
    _, mod = ext
    cutout = picture().convert("RGBA")
    cutout.putalpha(77)
    path = mod.save_cutout(cutout, tmp_path, "u2netp", False, True, "/in.png")

    assert path.parent.parent.name == "rembg"
    assert Image.open(path).mode == "RGBA" and Image.open(path).getpixel((0, 0))[3] == 77
    meta = read_output_metadata(path)
    assert meta["task"] == "rembg" and meta["params"] == {"mask_only": False, "alpha_matting": True}
