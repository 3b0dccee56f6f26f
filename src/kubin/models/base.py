"""The contract every loaded model keeps with the engine, whatever its family: `LoadedModel`.

A family's `load(spec, sources, placement)` returns one. The engine checks the task and the scheduler
against the spec before a job runs, then calls `generate` once per batch: it returns one output per seed
(a PIL image; a `kubin.outputs.Video` for a video; a `kubin.outputs.Mesh` for 3D) and the name of the scheduler
that ran. `on_step(phase, step)` is called after every denoising step; raising from it (a cancel) stops
the job there.

What one batch reports through `on_step` is declared up front by the family's model module, as a list of
`Phase`s: `step_phases(task, params)` (a module with only `steps_per_batch(task, params)` reports one phase,
"denoise"). The engine counts each phase's steps against it, so a user reads "Prior 20/25", "Decoder 3/500" or
"Rendering the turntable…" rather than one sum of every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

StepCallback = Callable[[str, int], None]  # (phase, index of the step just finished)
# What a user reads for the usual phase names; another name shows capitalised.
PHASE_LABELS = {"prior": "Prior", "decoder": "Decoder", "denoise": "Step"}


@dataclass(frozen=True)
class Phase:
    """One part of a batch's work, in the order it runs: the phase name the model passes to `on_step`, how
    many steps it reports, and what the user reads while it runs. A phase that is one piece of work (a
    render, a mesh extraction) is not `counted`: it shows as "Rendering the turntable…", not "1/1"."""

    name: str
    steps: int
    label: str = ""
    counted: bool = True

    @property
    def title(self) -> str:
        return self.label or PHASE_LABELS.get(self.name, self.name.capitalize())


class LoadedModel:
    """A model in memory: its spec, where it was placed, and what it can do."""

    spec: Any  # kubin.models.spec.ModelSpec
    placement: Any  # kubin.runtime.device.Placement

    def schedulers(self, task: str | None = None) -> list[str]:
        """The scheduler names this model offers for `task`, its own first."""
        return list(self.spec.schedulers)

    def generate(
        self, task: str, params: Any, prepared: Any, seeds: Sequence[int], on_step: StepCallback
    ) -> tuple[list[Any], str]:
        raise NotImplementedError

    def save(self, folder: str | Path) -> Path:
        """Write the model to `folder` so that the folder loads as a model id (`kubin save`)."""
        raise NotImplementedError(f"{self.spec.title} cannot be saved to a folder.")

    def lora_modules(self) -> dict[str, Any]:
        """The parts that take LoRA adapters, by the part names of the family's `lora_parts`: diffusers
        modules with peft support (`load_lora_adapter`, `set_adapters`). Empty: the model takes none."""
        return {}

    def set_loras(self, loras: Sequence[Any], fuse: bool = False) -> list[str]:
        """Switch on this job's adapters (kubin.models.lora.ActiveLora, each loaded once and kept), or,
        for a job without any, switch every loaded one off: the model then gives its own pixels. `fuse`
        merges them into the weights (kept merged while the next job has the same set and weights; not into
        quantised weights). Returns notices for the job."""
        from kubin.errors import InvalidParams
        from kubin.models.lora import AdapterSlots

        modules = self.lora_modules()
        if not modules:
            if loras:
                raise InvalidParams(f"{self.spec.title} takes no LoRA adapters.")
            return []
        slots = self.__dict__.setdefault("_lora_slots", AdapterSlots())
        notices = slots.activate(modules, list(loras), fuse)
        self.active_loras = list(loras)
        return notices

    def caption(self, image: Any, mode: str) -> str:
        """What `image` shows, in words, from the model's own vision-language text encoder (a model whose
        spec has the OWN_VLM feature; kubin.tools.vlm)."""
        raise NotImplementedError(f"{self.spec.title} has no vision-language encoder to caption with.")

    def expand_prompt(self, prompt: str) -> str:
        """`prompt` rewritten in detail for this model by its own vision-language text encoder (OWN_VLM)."""
        raise NotImplementedError(f"{self.spec.title} has no vision-language encoder to expand prompts with.")

    def release(self) -> None:
        """Drop the weights (the manager frees the memory after)."""
