"""The memory and speed options the engine and the 2.x families apply themselves: the prior on the CPU,
channels-last, the notices of a model load (shown once, with the job that loaded it), torch.compile's
warm-up report, the options recorded with each output, and how the options are read from the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kubin.cli import build_parser, load_settings
from kubin.engine import DONE, Engine, Job, JobHandle, compile_warmup_notice
from kubin.errors import InvalidParams
from kubin.models.manager import ModelManager
from kubin.outputs import read_output_metadata
from kubin.params import Text2ImageParams
from kubin.runtime.memory import MemoryOptions

PROMPT = {"prompt": "a red cat", "steps": 3, "seed": 11}


def run(manager: ModelManager, tmp_path, model_id="tiny-kd22", **values):
    engine = Engine(manager, tmp_path / "out")
    try:
        handle = engine.run(Job("t2i", model_id, {**PROMPT, **values}))
        assert handle.state == DONE, handle.error
        return handle
    finally:
        engine.close(wait=True)


def pixels(handle) -> np.ndarray:
    with Image.open(handle.results[0].path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_new_options_are_read_from_config_strings_and_bad_values_are_named():
    options = MemoryOptions.from_dict(
        {"cache": "First-Block", "cache_threshold": "0.1", "quantize": "TorchAO-Int8", "compile": "yes"}
    )

    assert (options.cache, options.cache_threshold, options.quantize, options.compile) == (
        "first_block",
        0.1,
        "torchao-int8",
        True,
    )
    assert MemoryOptions.from_dict({"quantize_parts": "text-encoder"}).quantize_parts == "text_encoder"
    with pytest.raises(InvalidParams, match="Unknown quantisation 'int3'; use one of none, torchao-int8"):
        MemoryOptions(quantize="int3")
    with pytest.raises(InvalidParams, match="Unknown step cache 'mag'"):
        MemoryOptions.from_dict({"cache": "mag"})
    with pytest.raises(InvalidParams, match="cache_threshold must be a number"):
        MemoryOptions.from_dict({"cache_threshold": "fast"})
    with pytest.raises(InvalidParams, match="between 0 and 10"):
        MemoryOptions(cache_threshold=-1)


def test_the_cli_flags_reach_the_memory_options(tmp_path):
    args = build_parser().parse_args(
        ["--config", str(tmp_path / "none.yaml"), "--channels-last", "--prior-on-cpu", "--compile",
         "--cache", "taylorseer", "--cache-threshold", "0.3", "--quantize", "quanto-int8",
         "--quantize-parts", "denoiser"]
    )  # fmt: skip

    options = MemoryOptions.from_dict(load_settings(args).get("memory"))

    assert options == MemoryOptions(
        channels_last=True,
        prior_on_cpu=True,
        compile=True,
        cache="taylorseer",
        cache_threshold=0.3,
        quantize="quanto-int8",
        quantize_parts="denoiser",
    )


@pytest.mark.parametrize(
    ("model_id", "unet_of"), [("tiny-kd22", lambda m: m.decoder.unet), ("tiny-kd20", lambda m: m.unet)]
)
def test_channels_last_puts_the_unet_weights_in_channels_last_order(model_id, unet_of, tmp_path):
    manager = ModelManager(device="cpu", dtype="fp32", memory=MemoryOptions(channels_last=True))
    try:
        handle = run(manager, tmp_path, model_id)
        unet = unet_of(manager.get(model_id))
        convs = [p for p in unet.parameters() if p.dim() == 4]

        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        assert not all(p.is_contiguous() for p in convs)  # really another layout, not a 1x1 no-op
        assert pixels(handle).std() > 0
        assert handle.results[0].meta["runtime"] == {"device": "cpu", "dtype": "fp32", "channels_last": True}
    finally:
        manager.unload()


def test_prior_on_cpu_keeps_the_prior_in_fp32_while_the_decoder_runs_in_bf16(tmp_path):
    """bf16 on the CPU stands in for a GPU's half precision: the prior's fp32 embeddings must be cast
    for the decoder, which the pipeline itself does only when guidance is on (here it is off)."""
    manager = ModelManager(device="cpu", dtype="bf16", memory=MemoryOptions(prior_on_cpu=True))
    try:
        handle = run(manager, tmp_path, guidance_scale=1.0, width=64, height=64)
        model = manager.get("tiny-kd22")

        assert model.prior.prior.dtype == torch.float32 and model.prior.text_encoder.dtype == torch.float32
        assert model.decoder.unet.dtype == torch.bfloat16
        assert handle.notices == [
            "The prior runs on the CPU in fp32 (prior on CPU); the decoder on the cpu in bf16."
        ]
        image = pixels(handle)
        assert image.shape == (64, 64, 3) and image.std() > 0
        meta = read_output_metadata(handle.results[0].path)  # as saved in the PNG
        assert meta["runtime"] == {"device": "cpu", "dtype": "bf16", "prior_on_cpu": True}
    finally:
        manager.unload()


def test_a_load_notice_is_shown_with_the_job_that_loaded_the_model_only(tmp_path):
    manager = ModelManager(device="cpu", dtype="fp32", memory=MemoryOptions(offload="model"))
    try:
        first = run(manager, tmp_path)
        second = run(manager, tmp_path)
    finally:
        manager.unload()

    skipped = "CPU offload (model) needs a GPU; the model runs on the cpu as it is."
    assert skipped in first.notices
    assert skipped in first.results[0].meta["notices"]
    assert skipped not in second.notices


def _handle_with_marks(marks: list[tuple[str, float]]) -> JobHandle:
    handle = JobHandle(
        id="x", job=Job("t2i", "tiny-kd22", {}), params=Text2ImageParams(), seed=1, total_steps=4
    )
    handle.started_at = 100.0
    handle.step_marks = marks
    return handle


def test_the_compile_warmup_is_the_first_denoising_step_against_the_next_ones():
    # A prior's two steps, then the decoder: its first step compiled (12 s), the next ones 0.5 s.
    marks = [("prior", 101.0), ("prior", 101.5), ("decoder", 113.5), ("decoder", 114.0), ("decoder", 114.5)]

    notice = compile_warmup_notice(_handle_with_marks(marks))

    assert notice == [
        "torch.compile warm-up: the first step took 12.0 s (compiling the denoiser), the next ones 0.50 s "
        "each. A new size or batch compiles again once."
    ]
    assert compile_warmup_notice(_handle_with_marks([("denoise", 103.0)])) == [
        "torch.compile warm-up: the first step took 3.0 s (compiling the denoiser)."
    ]
    assert compile_warmup_notice(_handle_with_marks([])) == []


def test_the_prior_on_the_cpu_is_not_given_to_bitsandbytes_which_needs_cuda():
    from kubin.models.prior_decoder import prior_placement_for
    from kubin.runtime.device import Placement

    on_gpu = Placement("cuda", "fp16", MemoryOptions(prior_on_cpu=True, quantize="bnb-nf4", offload="model"))
    torchao = Placement("cuda", "fp16", MemoryOptions(prior_on_cpu=True, quantize="torchao-int8"))

    assert prior_placement_for(on_gpu) == Placement("cpu", "fp32", MemoryOptions(prior_on_cpu=True))
    assert prior_placement_for(torchao).memory.quantize == "torchao-int8"  # runs on the CPU too
    assert prior_placement_for(Placement("cuda", "fp16", MemoryOptions())) == Placement("cuda", "fp16")


def test_no_warmup_is_reported_when_compile_was_refused(tmp_path, monkeypatch):
    from kubin.runtime import speed

    monkeypatch.setattr(speed.shutil, "which", lambda name: None)  # no C compiler on this machine
    manager = ModelManager(device="cpu", dtype="fp32", memory=MemoryOptions(compile=True))
    try:
        handle = run(manager, tmp_path)
    finally:
        manager.unload()

    assert any("torch.compile needs a C/C++ compiler" in n for n in handle.notices), handle.notices
    assert not any("warm-up" in n for n in handle.notices)
