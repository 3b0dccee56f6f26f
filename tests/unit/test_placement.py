"""The placement rules (runtime/placement.py), checked against a fake CUDA device: on a GPU the offload a
user asked for is what happens (a pipeline is not simply moved), native parts rest and visit as their
options say, and nothing is offloaded where there is nothing to offload to."""

from __future__ import annotations

import pytest

from kubin.runtime import placement as placing
from kubin.runtime.device import Placement
from kubin.runtime.memory import MemoryOptions


class FakePipeline:
    """Records how it was placed, as a diffusers pipeline would be."""

    def __init__(self):
        self.calls = []
        self.components = {}

    def to(self, device):
        self.calls.append(("to", device))
        return self

    def enable_model_cpu_offload(self, device):
        self.calls.append(("model offload", device))

    def enable_sequential_cpu_offload(self, device):
        self.calls.append(("sequential offload", device))


class FakePart:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def to(self, where):
        self.log.append((self.name, where))
        return self


@pytest.fixture
def fake_cuda(monkeypatch):
    """ "cuda" counts as an accelerator here, whatever this machine has."""
    monkeypatch.setattr(placing, "offload_supported", lambda device: not device.startswith("cpu"))
    monkeypatch.setattr(placing, "empty_device_cache", lambda device: None)


@pytest.mark.parametrize(
    ("offload", "expected"),
    [
        ("none", ("to", "cuda")),
        ("model", ("model offload", "cuda")),
        ("sequential", ("sequential offload", "cuda")),
    ],
)
def test_a_pipeline_on_a_gpu_gets_the_offload_asked_for(fake_cuda, offload, expected):
    pipe = FakePipeline()

    notices = placing.place_pipeline(pipe, "cuda", MemoryOptions(offload=offload))

    assert pipe.calls == [expected] and notices == []


def test_offload_on_the_cpu_is_skipped_with_a_notice():
    pipe = FakePipeline()

    notices = placing.place_pipeline(pipe, "cpu", MemoryOptions(offload="model"))

    assert pipe.calls == [("to", "cpu")]
    assert notices == ["CPU offload (model) needs a GPU; the model runs on the cpu as it is."]


def test_native_parts_rest_on_the_cpu_with_model_offload_and_visit_the_device_while_they_run(fake_cuda):
    log = []
    unet, vae = FakePart("unet", log), FakePart("vae", log)
    where = Placement("cuda", "fp16", MemoryOptions(offload="model"))

    placing.place_modules({"unet": unet, "vae": vae}, where)
    assert log == [("unet", "cpu"), ("vae", "cpu")]
    log.clear()

    with placing.on_device(unet, where):
        assert log == [("unet", "cuda")]
    assert log == [("unet", "cuda"), ("unet", "cpu")]


def test_native_parts_stay_on_the_gpu_without_offload_and_a_freed_text_encoder_visits(fake_cuda):
    log = []
    unet, encoder = FakePart("unet", log), FakePart("text_encoder", log)
    where = Placement("cuda", "fp16", MemoryOptions(free_text_encoder=True))

    placing.place_modules({"unet": unet, "text_encoder": encoder}, where, visiting=("text_encoder",))
    with placing.on_device(unet, where):
        pass
    with placing.on_device(encoder, where, visiting=True):
        pass

    assert log == [
        ("unet", "cuda"), ("text_encoder", "cpu"),  # placed
        ("text_encoder", "cuda"), ("text_encoder", "cpu"),  # the prompt is encoded, then it leaves
    ]  # fmt: skip


def test_sequential_offload_of_native_parts_goes_through_accelerate(fake_cuda, monkeypatch):
    import accelerate

    hooked = []
    monkeypatch.setattr(
        accelerate,
        "cpu_offload",
        lambda part, execution_device: hooked.append((part.name, str(execution_device))),
    )
    log = []
    where = Placement("cuda", "fp16", MemoryOptions(offload="sequential"))

    placing.place_modules({"unet": FakePart("unet", log)}, where)
    with placing.on_device(FakePart("vae", log), where):
        pass

    assert hooked == [("unet", "cuda")] and log == []  # the hooks move the layers; nothing else does
