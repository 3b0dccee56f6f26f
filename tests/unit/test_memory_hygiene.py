"""Memory hygiene: switching models gives the previous one's memory back, and a job that runs out of
memory fails with advice, frees what it held, and leaves the app ready for the next job.

A "big" test family (a registry entry whose module holds 128 MB of weights and, on request, makes a
128 MB activation and then raises torch.OutOfMemoryError) makes the memory visible in the process's
resident size; the tiny pipelines show that nothing of a real pipeline outlives a switch.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from kubin.engine import DONE, FAILED, Engine, Job
from kubin.errors import OutOfMemory
from kubin.models import registry
from kubin.models.manager import ModelManager
from kubin.runtime.memory import MemoryOptions

MB = 1024 * 1024
BIG = 128 * MB  # weights of the big test model, and the activation its failing job makes
SMALL = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2}
STATM = Path("/proc/self/statm")


def rss() -> int:
    """This process's resident memory in bytes (Linux)."""
    gc.collect()
    import resource  # noqa: F401  (Linux only, like /proc)

    return int(STATM.read_text().split()[1]) * resource.getpagesize()


needs_proc = pytest.mark.skipif(not STATM.exists(), reason="resident memory is read from /proc (Linux)")


class BigModel:
    """Holds BIG bytes of weights; its generate can run out of memory once, as a GPU job does."""

    def __init__(self, spec, placement, out_of_memory_once: bool):
        self.spec = spec
        self.placement = placement
        # ones, not zeros: zeroed pages may never be touched and then count for nothing in RSS.
        self.weights = torch.nn.Linear(BIG // 4 // 1024, 1024, bias=False, device=placement.device)
        torch.nn.init.ones_(self.weights.weight)
        self.fail_next = out_of_memory_once
        self.activations: list[weakref.ref] = []  # weakrefs to what each failing job allocated

    def schedulers(self, task: str = "t2i") -> list[str]:
        return ["fake"]

    def generate(self, task, params, prepared, seeds, on_step):
        activation = torch.ones(BIG // 4, device=self.placement.device)
        self.activations.append(weakref.ref(activation))
        if self.fail_next:
            self.fail_next = False
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        on_step("decoder", 0)
        return [Image.new("RGB", prepared.size, "gray") for _ in seeds], "fake"

    def release(self) -> None:
        self.weights = None


def big_module(out_of_memory_once: bool) -> types.ModuleType:
    module = types.ModuleType("kubin.models.big_test_family")
    module.load = lambda spec, sources, placement: BigModel(spec, placement, out_of_memory_once)
    return module


@pytest.fixture
def big_model(monkeypatch) -> str:
    """A registry entry "big-test" (family kd22) whose family module is `big_module`."""
    spec = replace(
        registry.MODELS["tiny-kd22"],
        id="big-test",
        module="kubin.models.big_test_family",
        tiny=False,
        sources={},
    )
    monkeypatch.setitem(registry.MODELS, spec.id, spec)
    monkeypatch.setitem(sys.modules, "kubin.models.big_test_family", big_module(out_of_memory_once=True))
    return spec.id


@needs_proc
def test_switching_models_gives_the_previous_ones_memory_back(big_model):
    manager = ModelManager(device="cpu", dtype="fp32")
    manager.get("tiny-kd22")  # imports and the tiny model's own few MB, paid before measuring
    manager.unload()
    before = rss()

    big = manager.get(big_model)
    weights = weakref.ref(big.weights)
    loaded = rss()
    del big
    manager.get("tiny-kd22")
    switched = rss()

    assert loaded - before > 0.9 * BIG  # the measurement sees the model
    assert weights() is None
    assert switched - before < 0.25 * BIG, f"{(switched - before) / MB:.0f} MB still held after the switch"
    manager.unload()


@pytest.mark.parametrize("model_id", ["tiny-kd22", "tiny-kd30", "tiny-kd50-t2i"])
def test_no_module_of_a_pipeline_outlives_a_switch_after_a_job(model_id, tmp_path, big_model):
    manager = ModelManager(device="cpu", dtype="fp32")
    engine = Engine(manager, tmp_path)
    engine.run(Job("t2i", model_id, dict(SMALL)))
    model = manager.get(model_id)
    pipelines = [v for v in vars(model).values() if hasattr(v, "components")]
    modules = [
        weakref.ref(part)
        for pipe in pipelines
        for part in pipe.components.values()
        if isinstance(part, torch.nn.Module)
    ]
    assert modules, "the model's pipelines hold torch modules"
    del model, pipelines

    manager.get(big_model)  # the user switches to another model
    gc.collect()

    alive = [ref() for ref in modules if ref() is not None]
    assert not alive, (
        f"{len(alive)} module(s) of {model_id} are still alive: {[type(m).__name__ for m in alive]}"
    )
    engine.close(wait=True)
    manager.unload()


@needs_proc
def test_a_job_out_of_memory_fails_with_advice_frees_what_it_held_and_the_next_job_runs(
    big_model, tmp_path, monkeypatch
):
    manager = ModelManager(device="cpu", dtype="fp32")
    engine = Engine(manager, tmp_path)
    model = manager.get(big_model)
    freed_when_told: list[bool] = []
    finish = engine._finish

    def finish_and_look(handle, state, error):  # the moment the user is told
        if state == FAILED:
            freed_when_told.append(all(ref() is None for ref in model.activations))
        finish(handle, state, error)

    monkeypatch.setattr(engine, "_finish", finish_and_look)
    before = rss()

    failed = engine.submit(Job("t2i", big_model, dict(SMALL)))
    failed.wait(60)
    after_failure = rss()

    assert failed.state == FAILED and isinstance(failed.error, OutOfMemory)
    message = str(failed.error)
    assert message.startswith(
        "Out of memory: try --offload model, --attention-slicing, --medvram or --lowvram"
    )
    assert "--medvram or --lowvram" in message and "a smaller size or batch size" in message
    assert freed_when_told == [True]  # freed before the user is told, not whenever the traceback goes
    assert after_failure - before < 0.25 * BIG

    done = engine.run(Job("t2i", big_model, dict(SMALL)))
    assert done.state == DONE and len(done.results) == 1
    assert manager.loaded_id == big_model  # the model stayed loaded: no reload after the failure
    engine.close(wait=True)
    manager.unload()


def test_out_of_memory_advice_names_only_what_is_not_on_yet(big_model, tmp_path):
    manager = ModelManager(device="cpu", dtype="fp32", memory=MemoryOptions(preset="lowvram"))
    engine = Engine(manager, tmp_path)

    handle = engine.submit(Job("t2i", big_model, dict(SMALL)))
    handle.wait(60)

    # lowvram already offloads layer by layer and slices: what is left is a smaller job.
    assert str(handle.error) == (
        "Out of memory: try a smaller size or batch size. The memory it held is freed; the next job can run."
    )
    engine.close(wait=True)
    manager.unload()


def test_an_older_cuda_out_of_memory_runtime_error_is_caught_the_same_way(big_model, tmp_path, monkeypatch):
    manager = ModelManager(device="cpu", dtype="fp32")
    engine = Engine(manager, tmp_path)
    model = manager.get(big_model)

    def fail(*args, **kwargs):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(model, "generate", fail)
    handle = engine.submit(Job("t2i", big_model, dict(SMALL)))
    handle.wait(60)

    assert isinstance(handle.error, OutOfMemory)
    assert str(handle.error).startswith("Out of memory: try --offload model")
    engine.close(wait=True)
    manager.unload()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_switching_models_on_a_gpu_gives_the_cuda_memory_back(big_model):
    manager = ModelManager(device="cuda", dtype="fp32")
    manager.get("tiny-kd22")
    manager.unload()
    before = torch.cuda.memory_allocated()

    manager.get(big_model)
    loaded = torch.cuda.memory_allocated()
    manager.get("tiny-kd22")
    switched = torch.cuda.memory_allocated()

    assert loaded - before >= BIG
    assert switched - before < 0.1 * BIG
    assert torch.cuda.memory_reserved() - switched < BIG  # the cache was emptied, not kept
    manager.unload()
