"""Quantisation of the big parts (runtime/quantize.py): on the tiny models through the real engine, each
backend that runs on the CPU still makes a valid picture close to the unquantised one, quantises the
Linear layers of the parts asked for and nothing else, and says how much memory the weights take before
and after; the bytes are counted from the tensors each library really stores; what cannot work is refused
with a message that says what to do."""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from kubin.engine import DONE, Engine, Job
from kubin.errors import InvalidParams
from kubin.models.manager import ModelManager
from kubin.outputs import video_info
from kubin.runtime.memory import MemoryOptions
from kubin.runtime.quantize import module_bytes, quantize_components, quantize_linears

PROMPT = {"prompt": "a red cat", "steps": 3, "seed": 11}
CPU_MODES = ("torchao-int8", "quanto-int8")  # bitsandbytes needs CUDA (see the tests at the end)
WEIGHT_TYPE = {
    "torchao-int8": "Int8Tensor",
    "quanto-int8": "WeightQBytesTensor",
    "bnb-int8": "Int8Params",
    "bnb-nf4": "Params4bit",
}


@contextmanager
def generated(model_id: str, options: MemoryOptions, tmp_path, task: str = "t2i", **values):
    """One job on a fresh manager with `options`: its pictures (RGB arrays), its notices and the loaded
    model (to look at its layers), unloaded afterwards."""
    manager = ModelManager(device="cpu", dtype="fp32", memory=options)
    engine = Engine(manager, tmp_path / "out")
    try:
        handle = engine.run(Job(task, model_id, {**PROMPT, **values}))
        assert handle.state == DONE
        pictures = []
        for result in handle.results:
            assert result.path.is_file()
            if result.frames:  # a video: its first frame, from the animated preview
                assert video_info(result.path)["frames"] == result.frames
            with Image.open(result.preview if result.frames else result.path) as image:
                pictures.append(np.asarray(image.convert("RGB"), dtype=np.int16))
        yield pictures, list(handle.notices), manager.get(model_id)
    finally:
        engine.close(wait=True)
        manager.unload()


def linear_weight_types(module) -> set[str]:
    return {type(m.weight).__name__ for m in module.modules() if isinstance(m, torch.nn.Linear)}


def a_picture(image: np.ndarray, size: tuple[int, int]) -> bool:
    return image.shape == (*size, 3) and image.std() > 1  # not a flat field


@pytest.fixture(scope="module")
def kd50_plain(tmp_path_factory) -> np.ndarray:
    with generated("tiny-kd50-t2i", MemoryOptions(), tmp_path_factory.mktemp("plain")) as (
        pictures,
        notices,
        _,
    ):
        assert not any("Quantis" in n for n in notices)
        return pictures[0]


@pytest.mark.parametrize("mode", CPU_MODES)
def test_each_backend_still_makes_a_picture_close_to_the_unquantised_one(mode, kd50_plain, tmp_path):
    with generated("tiny-kd50-t2i", MemoryOptions(quantize=mode), tmp_path) as (pictures, notices, model):
        pipe = model.pipe
        # The big parts' Linear layers hold the library's quantised weights...
        assert WEIGHT_TYPE[mode] in linear_weight_types(pipe.transformer)
        assert WEIGHT_TYPE[mode] in linear_weight_types(pipe.text_encoder)
        assert WEIGHT_TYPE[mode] in linear_weight_types(pipe.text_encoder_2)
        # ...except the modules Kandinsky 5 keeps in fp32 (time embeddings, modulations)...
        for name, sub in pipe.transformer.named_modules():
            if isinstance(sub, torch.nn.Linear) and "modulation" in name.split(".")[-2:]:
                assert type(sub.weight) is torch.nn.Parameter, name
        # ...and the VAE is left alone.
        assert linear_weight_types(pipe.vae) <= {"Parameter"}

    quantised = {n.split(" with ")[0] for n in notices if n.startswith("Quantised ")}
    assert quantised == {"Quantised transformer", "Quantised text_encoder", "Quantised text_encoder_2"}
    assert a_picture(pictures[0], kd50_plain.shape[:2])
    difference = np.abs(pictures[0] - kd50_plain).mean()
    # Another rounding of the same picture (random tiny weights amplify it), not another picture.
    assert difference < 6, difference  # (another seed differs by about 40)


def test_quantize_parts_chooses_the_denoiser_or_the_text_encoders(tmp_path):
    only_text = MemoryOptions(quantize="quanto-int8", quantize_parts="text_encoder")
    with generated("tiny-kd50-t2i", only_text, tmp_path / "text") as (pictures, notices, model):
        assert linear_weight_types(model.pipe.transformer) == {"Parameter"}
        assert "WeightQBytesTensor" in linear_weight_types(model.pipe.text_encoder)
        assert a_picture(pictures[0], (64, 64))
    assert [n.split(" with ")[0] for n in notices if n.startswith("Quantised")] == [
        "Quantised text_encoder",
        "Quantised text_encoder_2",
    ]

    only_denoiser = MemoryOptions(quantize="torchao-int8", quantize_parts="denoiser")
    with generated("tiny-kd50-t2i", only_denoiser, tmp_path / "denoiser") as (_, notices, model):
        assert "Int8Tensor" in linear_weight_types(model.pipe.transformer)
        assert linear_weight_types(model.pipe.text_encoder) == {"Parameter"}
    assert [n.split(" with ")[0] for n in notices if n.startswith("Quantised")] == ["Quantised transformer"]


def test_kandinsky_22_quantises_its_prior_text_encoder_and_unet_not_the_image_encoder(tmp_path):
    with generated("tiny-kd22", MemoryOptions(quantize="torchao-int8"), tmp_path) as (
        pictures,
        notices,
        model,
    ):
        assert "Int8Tensor" in linear_weight_types(model.prior.prior)
        assert "Int8Tensor" in linear_weight_types(model.prior.text_encoder)
        assert "Int8Tensor" in linear_weight_types(model.decoder.unet)
        assert linear_weight_types(model.prior.image_encoder) == {"Parameter"}
        assert linear_weight_types(model.decoder.movq) <= {"Parameter"}
        assert a_picture(pictures[0], (64, 64))
    assert sorted(n.split(" with ")[0] for n in notices if n.startswith("Quantised")) == [
        "Quantised prior",
        "Quantised text_encoder",
        "Quantised unet",
    ]


def test_a_native_model_kandinsky_20_quantises_its_unet_and_both_text_encoders(tmp_path):
    with generated("tiny-kd20", MemoryOptions(quantize="quanto-int8"), tmp_path) as (
        pictures,
        notices,
        model,
    ):
        assert "WeightQBytesTensor" in linear_weight_types(model.unet)
        assert "WeightQBytesTensor" in linear_weight_types(model.text_encoder1)
        assert "WeightQBytesTensor" in linear_weight_types(model.text_encoder2)
        assert linear_weight_types(model.vae) <= {"Parameter"}
        assert a_picture(pictures[0], (pictures[0].shape[0], pictures[0].shape[1]))
    assert sorted(n.split(" with ")[0] for n in notices if n.startswith("Quantised")) == [
        "Quantised text_encoder",
        "Quantised text_encoder_2",
        "Quantised unet",
    ]


def test_a_native_model_kandinsky_40_quantises_its_transformer_and_makes_a_video(tmp_path):
    options = MemoryOptions(quantize="torchao-int8", quantize_parts="denoiser")
    values = {"steps": 2, "seed": 1, "frames": 9}
    with generated("tiny-kd40", options, tmp_path, task="t2v", **values) as (frames, notices, model):
        assert "Int8Tensor" in linear_weight_types(model.dit)
        assert frames[0].std() > 1
        assert linear_weight_types(model.text_encoder) == {"Parameter"}
    assert [n.split(" with ")[0] for n in notices if n.startswith("Quantised")] == ["Quantised transformer"]


def test_the_notice_reports_the_bytes_the_weights_take_before_and_after():
    layer = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 128))
    before = module_bytes(layer)
    assert before == (256 * 256 + 256 + 256 * 128 + 128) * 4  # fp32 weights and biases

    notices = quantize_components({"unet": layer}, MemoryOptions(quantize="torchao-int8"), "cpu")

    # int8 weights (1 byte each) plus per output row an fp32 scale and an int8 zero point; the biases
    # stay fp32.
    after = (256 * 256 + 256 * 128) + (256 + 128) * (4 + 1) + (256 + 128) * 4
    assert module_bytes(layer) == after
    assert after / before < 0.27  # about a quarter of fp32
    assert notices == [
        f"Quantised unet with torchao int8: {before / 1e6:.2f} MB → {after / 1e6:.2f} MB (2 Linear layers)"
    ]


@pytest.mark.parametrize(
    ("mode", "stored"),
    [
        # int8 data + per output row an fp32 scale and an int8 zero point (all 0: symmetric)
        ("torchao-int8", 64 * 128 + 64 * 4 + 64),
        # int8 _data + fp32 _scale per row, and QLinear's two scalar activation scales (fp32)
        ("quanto-int8", 64 * 128 + 64 * 4 + 2 * 4),
        # int8 data (CB) + fp32 SCB per row
        ("bnb-int8", 64 * 128 + 64 * 4),
        # 4-bit data (2 per byte) + per 64-block absmax in uint8 (nested), the 16-entry nf4 code (fp32),
        # the nested absmax's offset (fp32) and its own statistics: one fp32 absmax per 256 blocks and a
        # 256-entry fp32 code
        ("bnb-nf4", 64 * 128 // 2 + 64 * 128 // 64 + 16 * 4 + 4 + 4 + 256 * 4),
    ],
)
def test_module_bytes_counts_the_tensors_inside_each_quantised_weight(mode, stored):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 64))
    x = torch.randn(3, 128)
    expected = model(x)
    bias = 64 * 4

    # (quantize_linears is what quantize_components runs after its checks; bitsandbytes' layers are
    # built and quantised on the CPU here, as they are before a move to the GPU.)
    quantize_linears(model, ["0"], mode, "cpu")

    assert type(model[0].weight).__name__ == WEIGHT_TYPE[mode]
    assert module_bytes(model) == stored + bias
    with torch.no_grad():
        error = (model(x) - expected).abs().max().item()
    assert 0 < error < (0.3 if mode == "bnb-nf4" else 0.02)  # rounded weights, the same layer


def test_a_pipeline_without_the_part_asked_for_gets_a_notice_not_an_error():
    decoder = {"unet": torch.nn.Linear(64, 64), "movq": torch.nn.Conv2d(3, 3, 1), "scheduler": object()}

    notices = quantize_components(
        decoder, MemoryOptions(quantize="torchao-int8", quantize_parts="text_encoder"), "cpu"
    )

    assert notices == [
        "Quantisation (torchao-int8): this model has no text encoder (its modules: unet, movq); "
        "nothing was quantised."
    ]
    assert type(decoder["unet"].weight) is torch.nn.Parameter


def test_a_module_two_pipelines_share_is_quantised_once():
    shared = torch.nn.Sequential(torch.nn.Linear(64, 64))
    options = MemoryOptions(quantize="quanto-int8")

    first = quantize_components({"text_encoder": shared}, options, "cpu")
    weight = shared[0].weight
    second = quantize_components({"text_encoder": shared}, options, "cpu")

    assert len(first) == 1 and second == []
    assert shared[0].weight is weight


def test_an_unknown_mode_is_refused():
    with pytest.raises(InvalidParams, match="Unknown quantisation 'int3'"):
        MemoryOptions(quantize="int3")
    with pytest.raises(InvalidParams, match="Unknown part to quantise 'vae'"):
        MemoryOptions(quantize="torchao-int8", quantize_parts="vae")


@pytest.mark.parametrize(
    ("mode", "module", "package"),
    [
        ("torchao-int8", "torchao", "torchao"),
        ("quanto-int8", "optimum.quanto", "optimum-quanto"),
        ("bnb-nf4", "bitsandbytes", "bitsandbytes"),
    ],
)
def test_a_missing_library_names_the_package_to_install(mode, module, package, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    layer = torch.nn.Linear(64, 64)
    device = "cuda" if mode.startswith("bnb") else "cpu"  # (refused before the import: nothing runs there)

    with pytest.raises(InvalidParams, match=re.escape(f"pip install {package}")):
        quantize_components({"unet": layer}, MemoryOptions(quantize=mode), device)
    assert type(layer.weight) is torch.nn.Parameter
    if device != "cpu":
        return

    # Through the engine the job fails with the same sentence.
    manager = ModelManager(device="cpu", dtype="fp32", memory=MemoryOptions(quantize=mode))
    engine = Engine(manager, tmp_path / "out")
    try:
        with pytest.raises(InvalidParams, match=re.escape(f"pip install {package}")):
            engine.run(Job("t2i", "tiny-kd50-t2i", PROMPT))
    finally:
        engine.close(wait=True)
        manager.unload()


@pytest.mark.parametrize("mode", ["bnb-int8", "bnb-nf4"])
def test_bitsandbytes_is_refused_off_cuda(mode):
    layer = torch.nn.Linear(64, 64)

    # bitsandbytes 0.50's CPU backend fails on Kandinsky 5's 4-D activations (int8) and on layers
    # narrower than its 4-bit blocks, so it is refused there rather than failing in the first step.
    for device in ("cpu", "mps"):
        message = f"bitsandbytes needs a CUDA GPU; on this device ({device}) use torchao-int8 or quanto-int8."
        with pytest.raises(InvalidParams, match=re.escape(message)):
            quantize_components({"unet": layer}, MemoryOptions(quantize=mode), device)
    assert type(layer.weight) is torch.nn.Parameter


@pytest.mark.parametrize("mode", ["quanto-int8", "bnb-int8", "bnb-nf4"])
def test_sequential_offload_is_refused_where_the_quantised_weights_do_not_survive_its_hooks(mode):
    layer = torch.nn.Linear(64, 64)
    sequential = MemoryOptions(quantize=mode, offload="sequential")

    # Checked before anything moves to the GPU, so this machine needs none.
    with pytest.raises(InvalidParams, match="does not work with sequential CPU offload; use model offload"):
        quantize_components({"unet": layer}, sequential, "cuda")
    assert type(layer.weight) is torch.nn.Parameter


def test_quanto_weights_break_accelerates_layer_hooks_and_torchao_weights_do_not():
    """Why the rule above spares torchao: accelerate's sequential offload (run here with the CPU as its
    execution device) rebuilds every weight as its own type, which quanto's weights refuse."""
    from accelerate import cpu_offload

    x = torch.randn(2, 64)
    for mode, works in (("torchao-int8", True), ("quanto-int8", False)):
        model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 64))
        expected = model(x)
        quantize_components({"unet": model}, MemoryOptions(quantize=mode), "cpu")
        if works:
            cpu_offload(model, execution_device=torch.device("cpu"))
            assert (model(x) - expected).abs().max() < 0.02
        else:
            with pytest.raises(TypeError, match="WeightQBytesTensor"):
                cpu_offload(model, execution_device=torch.device("cpu"))
    # On the CPU offload is skipped (nothing to offload to), so no mode is refused for it there.
    assert quantize_components(
        {"unet": torch.nn.Linear(64, 64)}, MemoryOptions(quantize="quanto-int8", offload="sequential"), "cpu"
    )


def test_bitsandbytes_on_the_cpu_fails_the_job_with_the_reason(tmp_path):
    manager = ModelManager(device="cpu", dtype="fp32", memory=MemoryOptions(quantize="bnb-nf4"))
    engine = Engine(manager, tmp_path / "out")
    try:
        with pytest.raises(InvalidParams, match="bitsandbytes needs a CUDA GPU"):
            engine.run(Job("t2i", "tiny-kd50-t2i", PROMPT))
    finally:
        engine.close(wait=True)
        manager.unload()
