"""torch.compile and diffusers' step caches (runtime/speed.py) through the engine on the tiny models: a
valid image of the asked size, Kandinsky 5's transformer blocks really run less often with a cache, the
same seed gives the same pixels job after job, and the options a model cannot take are said, not raised."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kubin.engine import DONE, Engine, Job
from kubin.models.manager import ModelManager
from kubin.runtime.memory import MemoryOptions
from kubin.runtime.speed import is_compiled

KD5 = "tiny-kd50-t2i"
JOB = {"prompt": "a red cat", "steps": 10, "seed": 5}
# Measured on the tiny transformer in a 10-step job: at 0.3 about a third of the block work is skipped,
# at diffusers' default 0.05 none is.
SKIPPING_THRESHOLD = 0.3


class KD5Run:
    """An engine on a ModelManager of its own with `memory`, counting the work done inside the
    transformer's visual blocks (their innermost layers: a skipped or predicted block runs none)."""

    def __init__(self, tmp_path, memory: MemoryOptions):
        self.manager = ModelManager(device="cpu", dtype="fp32", memory=memory)
        self.engine = Engine(self.manager, tmp_path / "output")
        self.layer_calls = 0
        self.handles = []

    def job(self, model=KD5, **values):
        handle = self.engine.run(Job("t2i", model, {**JOB, **values}))
        assert handle.state == DONE and handle.error is None
        return handle

    def count_block_layers(self):
        transformer = self.manager.get(KD5, "t2i").pipe.transformer
        for block in transformer.visual_transformer_blocks:
            for layer in block.modules():
                if layer is not block and not list(layer.children()):
                    self.handles.append(layer.register_forward_hook(self._count))

    def _count(self, *args):
        self.layer_calls += 1

    def calls_in(self, **values):
        self.layer_calls = 0
        handle = self.job(**values)
        return self.layer_calls, handle

    def close(self):
        for handle in self.handles:
            handle.remove()
        self.engine.close(wait=True)
        self.manager.unload()


@pytest.fixture
def run(tmp_path):
    runs = []

    def start(**memory):
        runs.append(KD5Run(tmp_path / str(len(runs)), MemoryOptions(**memory)))
        return runs[-1]

    yield start
    for each in runs:
        each.close()


def pixels(handle) -> np.ndarray:
    with Image.open(handle.results[0].path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_first_block_cache_skips_blocks_and_repeats_its_pixels_for_the_same_seed(run):
    plain, cached, default = (
        run(),
        run(cache="first_block", cache_threshold=SKIPPING_THRESHOLD),
        run(cache="first_block"),
    )
    plain.job(), default.job()
    first = cached.job()  # loads the model: its notices come with this job
    for each in (plain, cached, default):
        each.count_block_layers()

    full, reference = plain.calls_in()
    skipped, second = cached.calls_in()
    third = cached.job()
    at_default, at_default_handle = default.calls_in()

    assert any("Step cache first_block (threshold 0.3) is on" in n for n in first.notices), first.notices
    assert (second.results[0].width, second.results[0].height) == (64, 64)
    assert 0 < skipped < 0.8 * full, (skipped, full)
    # Two jobs after each other with the same seed: the cache starts afresh for each.
    assert np.array_equal(pixels(first), pixels(second)) and np.array_equal(pixels(second), pixels(third))
    assert not np.array_equal(pixels(second), pixels(reference))  # blocks were skipped: other pixels
    assert pixels(second).std() > 1  # an image, not a flat field
    # cache_threshold changes what is skipped: at diffusers' default nothing is on the tiny model.
    assert at_default == full
    assert np.array_equal(pixels(at_default_handle), pixels(reference))


def test_taylorseer_predicts_the_blocks_between_full_steps_and_its_interval_is_the_threshold(run):
    plain, every5, every2 = run(), run(cache="taylorseer"), run(cache="taylorseer", cache_threshold=2)
    first = every5.job()
    plain.job(), every2.job()
    for each in (plain, every5, every2):
        each.count_block_layers()

    full, reference = plain.calls_in()
    at_5, second = every5.calls_in()
    at_2, _ = every2.calls_in()

    assert any("Step cache taylorseer (every 5 steps) is on" in n for n in first.notices), first.notices
    assert at_5 < at_2 < full, (at_5, at_2, full)
    assert np.array_equal(pixels(first), pixels(second))
    assert not np.array_equal(pixels(second), pixels(reference))
    assert pixels(second).std() > 1


def test_a_step_cache_on_a_unet_model_is_a_notice_and_the_image_is_the_usual_one(
    run, model_manager, tmp_path
):
    cached = run(cache="first_block")

    handle = cached.job(model="tiny-kd22", steps=2)
    usual = Engine(model_manager, tmp_path / "usual").run(Job("t2i", "tiny-kd22", {**JOB, "steps": 2}))

    assert "Step caches apply to Kandinsky 5 only; ignored for UNet2DConditionModel." in handle.notices
    assert np.array_equal(pixels(handle), pixels(usual))


@pytest.mark.slow  # torch.compile builds C++ kernels: about a minute on a 2-core CPU
def test_compile_compiles_the_transformer_in_place_and_keeps_the_image(run):
    import torch._dynamo

    plain, compiled = run(), run(compile=True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()

    reference = plain.job(steps=2)
    handle = compiled.job(steps=2)

    transformer = compiled.manager.get(KD5, "t2i").pipe.transformer
    assert is_compiled(transformer) and not is_compiled(plain.manager.get(KD5, "t2i").pipe.transformer)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # dynamo really traced it
    assert any("compiled with torch.compile" in n for n in handle.notices), handle.notices
    # The engine reports the warm-up with the first job after the load, and only then.
    assert any(n.startswith("torch.compile warm-up: the first step took") for n in handle.notices)
    assert not any("warm-up" in n for n in compiled.job(steps=2).notices)
    # Inductor fuses and reorders float arithmetic: at most 2 of 255 per pixel channel apart.
    assert np.abs(pixels(handle) - pixels(reference)).max() <= 2
    assert transformer.dtype == torch.float32 and transformer.config.num_visual_blocks > 0


def test_without_a_c_compiler_compile_is_a_notice_and_the_model_runs_uncompiled(monkeypatch):
    import torch

    from kubin.runtime import speed

    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    unet = torch.nn.Linear(2, 2)

    notices = speed.speed_up({"unet": unet}, MemoryOptions(compile=True))

    assert "torch.compile needs a C/C++ compiler" in notices[0] and not is_compiled(unet)


def test_compile_is_refused_with_a_notice_under_sequential_offload():
    import torch

    from kubin.runtime import speed

    unet = torch.nn.Sequential(torch.nn.Linear(2, 2))
    unet[0]._hf_hook = object()  # what accelerate's enable_sequential_cpu_offload leaves on each layer

    notices = speed.speed_up({"unet": unet}, MemoryOptions(compile=True))

    assert "does not work with sequential CPU offload" in notices[0] and not is_compiled(unet)


def test_a_generation_stopped_half_way_leaves_no_cache_state_behind(run):
    import torch

    cached = run(cache="taylorseer", cache_threshold=2)
    before = cached.job()
    pipe = cached.manager.get(KD5, "t2i").pipe

    def stop(pipe, step, timestep, tensors):
        if step == 4:
            raise RuntimeError("stopped")  # as a cancelled job's step callback does
        return tensors

    with pytest.raises(RuntimeError, match="stopped"), torch.no_grad():
        pipe(prompt=["a red cat"], width=64, height=64, num_inference_steps=10, callback_on_step_end=stop)
    after = cached.job()

    assert np.array_equal(pixels(before), pixels(after))
