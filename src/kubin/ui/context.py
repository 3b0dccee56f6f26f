"""What every tab receives: the engine, the settings, and the model picker shared by all tabs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubin.config import LoadedConfig
from kubin.engine import Engine
from kubin.models.registry import ModelSpec, list_models
from kubin.params import TaskParams


@dataclass
class UIContext:
    engine: Engine
    settings: LoadedConfig
    model_id: str  # the model selected at start
    model_picker: Any = None  # the header's gr.Dropdown, set by app.build_app
    notices: list[str] = field(default_factory=list)
    extensions: list = field(default_factory=list)  # kubin.extensions.loader.Extension, loaded at start
    # Extension send targets: key -> (receiving component, id of the tab it is in); see receive().
    receivers: dict[str, tuple[Any, str]] = field(default_factory=dict)
    building_tab: str = ""  # id of the extension tab being built
    tabs: Any = None  # the gr.Tabs holding every tab (select one with gr.Tabs(selected=id))
    task_tabs: dict[str, Any] = field(default_factory=dict)  # task -> TaskTab, built before extension tabs
    # (function, outputs[, input]) to run on every page load, so a new page shows the state of now, not of
    # the build.
    page_loads: list[tuple] = field(default_factory=list)
    settings_warning_boxes: list[Any] = field(default_factory=list)  # the header's, cleared by a save
    # (gr.State, tab key) of each tab's job owner: what its Cancel cancels. A page load sets them from an
    # id kept in the browser, so a reloaded page can still cancel the jobs it started (see app.build_app).
    owners: list[tuple[Any, str]] = field(default_factory=list)

    def send_to(self, task: str, path: str) -> list:
        """Outputs for an event that sends the image at `path` to the tab of `task` and opens it; wire the
        event's outputs as `ctx.send_outputs(task)`."""
        import gradio as gr

        target = self.task_tabs[task]
        value = target.receive_value(path) if target.receive_value else path
        return [value, gr.Tabs(selected=task)]

    def send_outputs(self, task: str) -> list:
        return [self.task_tabs[task].receive_image, self.tabs]

    def send_targets(self) -> list[tuple[str, str]]:
        """(key, label) of every send target the loaded extensions declared."""
        return [
            t for e in self.extensions if e.status == "ok" and e.api is not None for t in e.api.send_targets
        ]

    def receive(self, key: str, component: Any) -> None:
        """Called by an extension's tab: `component` (an image input) receives what "→ label" buttons send."""
        self.receivers[key] = (component, self.building_tab)

    def models(self) -> list[ModelSpec]:
        specs = list_models()
        if self.model_id not in {s.id for s in specs}:
            try:
                specs.append(self.spec(self.model_id))
            except Exception:  # an unusable startup model is reported in the header, not fatal
                pass
        return specs

    def spec(self, model_id: str) -> ModelSpec:
        return self.engine.manager.spec(model_id)  # the one lookup the engine, UI and API share

    def unused_params(self, model_id: str) -> set[str]:
        """What the model ignores (hidden in its tabs)."""
        try:
            return set(self.spec(model_id).unused_params)
        except Exception:
            return set()

    def resolutions(self, model_id: str) -> tuple[tuple[int, int], ...]:
        try:
            return self.spec(model_id).resolutions
        except Exception:
            return ()

    def defaults(self, model_id: str, params_cls: type[TaskParams]) -> dict[str, Any]:
        """Widget values for a task: the class defaults < the model's recommendations < the user's UI defaults."""
        values = {name: fs.default for name, fs in params_cls.field_specs().items()}
        try:
            values.update(self.spec(model_id).defaults.get(params_cls.task, {}))
        except Exception:
            pass
        values.update(self.settings.get(f"ui.defaults.{params_cls.task}") or {})
        return values
