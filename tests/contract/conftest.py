"""The cases of the contract suite: every tiny model in the registry with each task it supports, built from
`list_models()` so that a new family's tiny model is covered without an edit here.

A test names the cases it applies to with `@pytest.mark.cases(predicate)` (a function of a Case); without the
marker it runs on every case. Shap-E's cases are marked slow (a job takes 6-50 s on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from kubin.models.registry import ModelSpec, list_models
from kubin.params import MESH_TASKS, VIDEO_TASKS, params_class

STEPS = 2  # every case's job: 2 steps (and 2 prior steps), 64x64, 17 frames
INPUT_TASKS = {"i2i", "inpaint", "outpaint", "i2v", "i2mesh"}  # start from the user's picture


@dataclass(frozen=True)
class Case:
    """One tiny model doing one of its tasks, with the parameters a user of that task can set."""

    spec: ModelSpec
    task: str

    def __str__(self) -> str:
        return f"{self.spec.id}:{self.task}"

    @property
    def fields(self) -> set[str]:
        return set(params_class(self.task).field_specs())

    def sets(self, name: str) -> bool:
        """Whether a user of this case sets `name`: the task has it and the model uses it."""
        return name in self.fields and name not in self.spec.unused_params

    @property
    def video(self) -> bool:
        """Its output is a video (an upscaled one too)."""
        return self.task in VIDEO_TASKS or self.task == "vsr"

    @property
    def mesh(self) -> bool:
        return self.task in MESH_TASKS

    @property
    def slow(self) -> bool:
        return self.mesh

    @property
    def free_size(self) -> bool:
        """The user picks the output size (the other tasks take it from the init image)."""
        return "width" in self.spec.defaults.get(self.task, {}) and self.sets("width")

    @property
    def guidance(self) -> float:
        """The model's recommended guidance, above 1 so that the negative prompt counts."""
        default = float(self.spec.defaults.get(self.task, {}).get("guidance_scale", 4.0))
        return default if default > 1 else 4.0

    def values(self, pictures: SimpleNamespace) -> dict[str, Any]:
        """The parameters of this case's small job, as a client would send them."""
        values: dict[str, Any] = {"seed": 1, "steps": STEPS}
        if self.task == "mix":
            values |= {"images": [pictures.photo], "prompts": ["a dog"], "weights": [0.5, 0.5]}
        elif self.sets("prompt") or "prompt" in self.fields:
            values["prompt"] = "a red cat"
        if self.sets("prior_steps"):
            values["prior_steps"] = STEPS
        if self.sets("guidance_scale"):
            values["guidance_scale"] = self.guidance
        if self.sets("strength"):
            values["strength"] = 1.0  # every step runs; the strength test asks for less
        if self.free_size:
            values |= {"width": 64, "height": 64}
        if self.video and "frames" in self.fields:
            values["frames"] = 17
        if self.task == "vsr":
            values["init_video"] = pictures.video
        if self.task in INPUT_TASKS:
            values["init_image"] = pictures.photo
        if self.task == "inpaint":
            values["mask"] = pictures.mask
        if self.task == "outpaint":
            values["expand"] = [0, 0, 64, 0]
        return values


def every_case() -> list[Case]:
    return [Case(spec, task) for spec in list_models() if spec.tiny for task in spec.tasks]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("cases")
    chosen = [c for c in every_case() if marker is None or marker.args[0](c)]
    params = [pytest.param(c, id=str(c), marks=[pytest.mark.slow] if c.slow else []) for c in chosen]
    # Module scope: pytest runs the tests of one case together, so each tiny model loads about once.
    metafunc.parametrize("case", params, scope="module")


@pytest.fixture(scope="module")
def manager(fresh_manager):
    """The suite's own manager: one model at a time, loaded once for all tests of its cases."""
    return fresh_manager


@pytest.fixture(scope="module")
def engine(manager, tmp_path_factory):
    """One engine for the module, saving under one folder (each test reads its own job's results)."""
    from kubin.engine import Engine

    engine = Engine(manager, tmp_path_factory.mktemp("output"))
    yield engine
    engine.close(wait=True)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> SimpleNamespace:
    """A user's files: a 64x64 photo, a mask repainting its middle, and a 16x16 video of 9 frames with sound
    (for the upscalers)."""
    from kubin.outputs import save_video

    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    photo.save(folder / "photo.png")
    mask.save(folder / "mask.png")
    frames = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(9)]
    tone = np.sin(np.arange(18_000) * 2 * np.pi * 440 / 16_000)[None].astype(np.float32) * 0.5
    video, _ = save_video(frames, 8, folder, "video", {"seed": 0}, audio=(tone, 16_000))
    return SimpleNamespace(
        photo=str(folder / "photo.png"), mask=str(folder / "mask.png"), video=str(video), folder=Path(folder)
    )
