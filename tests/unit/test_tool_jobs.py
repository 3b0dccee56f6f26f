"""Tool models (upscaler, segmenter, background remover) run as jobs in the engine's one queue: an
upscale asked for while an image is being generated waits for it, so the two never share the device,
and the tool models the manager keeps are freed when a generation model needs the memory."""

from __future__ import annotations

import sys
import threading
import types
from dataclasses import replace

import pytest
from PIL import Image

from kubin.engine import CANCELLED, DONE, Engine, Job, ToolJob
from kubin.errors import InvalidParams, KubinError
from kubin.models import registry
from kubin.models.manager import ModelManager


class GatedModel:
    """Generates only when the test opens its gate, and says when it has started."""

    def __init__(self, spec, placement, events):
        self.spec, self.placement, self.events = spec, placement, events

    def schedulers(self, task=None):
        return list(self.spec.schedulers)

    def generate(self, task, params, prepared, seeds, on_step):
        self.events["log"].append("generation started")
        self.events["started"].set()
        assert self.events["gate"].wait(30), "the test never opened the gate"
        on_step("decoder", 0)
        self.events["log"].append("generation done")
        return [Image.new("RGB", prepared.size, "gray") for _ in seeds], "DDIM"

    def release(self):
        pass


@pytest.fixture
def gated(monkeypatch, tmp_path):
    events = {"log": [], "started": threading.Event(), "gate": threading.Event()}
    module = types.ModuleType("kubin.models.gated_test_family")
    module.load = lambda spec, sources, placement: GatedModel(spec, placement, events)
    spec = replace(
        registry.MODELS["tiny-kd22"], id="gated-test", module=module.__name__, tiny=False, sources={}
    )
    monkeypatch.setitem(registry.MODELS, spec.id, spec)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    engine = Engine(ModelManager(device="cpu"), tmp_path / "out")
    yield engine, events
    events["gate"].set()
    engine.close(wait=True)


def test_an_upscale_asked_for_during_a_generation_starts_after_it(gated):
    engine, events = gated
    generation = engine.submit(Job("t2i", "gated-test", {"prompt": "a cat", "width": 64, "height": 64}))
    assert events["started"].wait(30)

    def upscale(tool):
        events["log"].append(f"upscale started on {tool.device}")
        return "upscaled"

    tool = engine.submit_tool(ToolJob("Upscale", upscale))
    assert not tool.wait(0.5)  # the generation holds the device
    assert engine.position(tool) == 1 and events["log"] == ["generation started"]

    events["gate"].set()
    assert tool.wait(30) and generation.wait(30)

    assert events["log"] == ["generation started", "generation done", "upscale started on cpu"]
    assert (generation.state, tool.state, tool.value) == (DONE, DONE, "upscaled")
    assert engine.pending() == []  # tool jobs are not listed as generation jobs


def test_a_tool_job_reports_progress_can_be_cancelled_and_its_user_errors_reach_the_caller(gated):
    engine, events = gated
    events["gate"].set()

    with pytest.raises(InvalidParams, match="too large"):
        engine.run_tool(
            "Upscale", lambda tool: (_ for _ in ()).throw(InvalidParams("The image is too large."))
        )

    release = threading.Event()

    def tiles(tool):
        for done in range(1, 100):
            tool.progress(done, 99)
            release.wait(0.01)
        return "finished"

    handle = engine.submit_tool(ToolJob("Upscale", tiles))
    engine.cancel(handle)
    assert handle.wait(30)
    assert handle.state == CANCELLED and handle.value is None
    assert engine.run_tool("Upscale", lambda tool: "still works") == "still works"


def test_a_tool_job_that_fails_unexpectedly_says_why_without_the_servers_folders(gated, tmp_path):
    engine, events = gated
    events["gate"].set()

    with pytest.raises(KubinError) as failed:
        engine.run_tool("Upscale", lambda tool: (tmp_path / "gone" / "photo.png").read_bytes())

    message = str(failed.value)
    assert message.startswith("Upscale failed: FileNotFoundError:") and "'photo.png'" in message
    assert str(tmp_path) not in message, "the log has the path; the user sees the file's name"


def test_tool_models_are_kept_between_jobs_and_freed_when_a_generation_model_loads(gated):
    engine, events = gated
    events["gate"].set()
    loads = []

    def load(device):
        loads.append(device)
        return object()

    first = engine.run_tool("Upscale", lambda tool: tool.model("upscaler:x4", load))
    second = engine.run_tool("Upscale", lambda tool: tool.model("upscaler:x4", load))
    assert first is second and loads == ["cpu"]  # kept between clicks

    engine.run(Job("t2i", "gated-test", {"prompt": "a cat", "width": 64, "height": 64}))

    third = engine.run_tool("Upscale", lambda tool: tool.model("upscaler:x4", load))
    assert third is not first and loads == ["cpu", "cpu"]  # freed for the generation model, loaded again
