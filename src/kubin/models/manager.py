"""The ModelManager keeps one model loaded (by default), frees it on switch, and places it on a device."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubin.errors import UnsupportedTask
from kubin.models.registry import ModelSpec, family_of, resolve_model
from kubin.models.tiny import tiny_model_folder
from kubin.runtime.device import Placement, resolve_placement
from kubin.runtime.memory import MemoryOptions
from kubin.runtime.placement import collect_load_notices, free_memory
from kubin.runtime.presets import apply_preset

log = logging.getLogger(__name__)


class ModelManager:
    def __init__(
        self,
        device: str = "auto",
        dtype: str = "auto",
        sources: dict[str, dict[str, str]] | None = None,
        memory: MemoryOptions | None = None,
    ):
        self.device = device
        self.dtype = dtype
        self.memory = memory or MemoryOptions()
        self.sources = sources or {}
        self._loaded: Any = None
        self._loaded_id: str | None = None
        self._stale = False
        self._load_notices: list[str] | None = None
        self._tools: dict[str, Any] = {}  # tool models (upscalers, segmenters, ...) by key
        self._lock = threading.RLock()
        # Called as listener(event, model_id) with event "model_loaded" or "model_unloaded" (extension hooks).
        self.listeners: list[Callable[[str, str], None]] = []

    def spec(self, model_id: str) -> ModelSpec:
        return resolve_model(model_id, self.sources)

    @property
    def loaded_id(self) -> str | None:
        return self._loaded_id

    def configure(self, device: str, dtype: str, memory: MemoryOptions | None = None) -> None:
        """New device/dtype/memory options for the next load; the loaded model is swapped between jobs,
        never during one."""
        memory = memory or self.memory
        with self._lock:
            if (device, dtype, memory) != (self.device, self.dtype, self.memory):
                self.device, self.dtype, self.memory = device, dtype, memory
                self._stale = True

    def placement(self) -> Placement:
        return resolve_placement(self.device, self.dtype, self.memory)

    def placement_for(self, spec: ModelSpec) -> Placement:
        """The placement for a model: "auto" gives a model published in bf16 bf16 on a GPU that has it."""
        # --medvram / --lowvram switch on the options that suit this model's family.
        return resolve_placement(
            self.device, self.dtype, apply_preset(self.memory, family_of(spec)), spec.dtype
        )

    def get(self, model_id: str, task: str | None = None):
        """The loaded model for `model_id`, loading it (and unloading another) if needed. Its weights are
        found (or fetched) first: missing ones raise WeightsMissing with the model in use still loaded."""
        spec = self.spec(model_id)
        if task is not None and not spec.supports(task):
            raise UnsupportedTask(f"{spec.title} cannot do {task}; it supports: {', '.join(spec.tasks)}.")
        with self._lock:
            if self._loaded_id == spec.id and not self._stale:
                return self._loaded
            placement = self.placement_for(spec)
            sources = spec.sources
            if spec.tiny:
                folder = tiny_model_folder(spec.id)
                sources = {sub.name: str(sub) for sub in folder.iterdir() if sub.is_dir()}
            module = importlib.import_module(spec.module)
            find_weights = getattr(module, "find_weights", None)
            if find_weights is not None:
                find_weights(spec, sources, placement, task)
            self.unload()
            self.free_tool_models()  # the generation model needs the memory more
            log.info("Loading %s ...", spec.id)
            with collect_load_notices() as notices:
                self._loaded = module.load(spec, sources, placement)
            self._load_notices = notices
            self._stale = False
            self._loaded_id = spec.id
            self._notify("model_loaded", spec.id)
            return self._loaded

    def tool_model(self, key: str, load: Callable[[], Any]) -> Any:
        """A tool model kept beside the generation model (an upscaler, a segmenter): loaded with `load()`
        on first use; freed by `free_tool_models`, which a generation model's load calls first."""
        with self._lock:
            if key not in self._tools:
                self._tools[key] = load()
            return self._tools[key]

    def free_tool_models(self) -> None:
        with self._lock:
            if self._tools:
                log.info("Freeing %d tool model(s)", len(self._tools))
                self._tools.clear()
                free_memory()

    def take_load_notices(self) -> list[str] | None:
        """What the last load said (options skipped, parts quantised, ...) for the job that caused it:
        a list once after each load, None otherwise."""
        with self._lock:
            notices, self._load_notices = self._load_notices, None
            return notices

    def unload(self) -> None:
        """Drop the loaded model and give its memory back to the system and the GPU."""
        with self._lock:
            if self._loaded is None:
                return
            log.info("Unloading %s", self._loaded_id)
            self._loaded.release()
            unloaded, self._loaded, self._loaded_id = self._loaded_id, None, None
            free_memory()
            self._notify("model_unloaded", unloaded)

    def _notify(self, event: str, model_id: str) -> None:
        for listener in self.listeners:
            try:
                listener(event, model_id)
            except Exception:  # a listener's failure is its own; loading goes on
                log.exception("A %s listener failed", event)

    def save(self, model_id: str, folder: str | Path) -> Path:
        return self.get(model_id).save(folder)
