"""What every tab receives: the engine, the settings, and the model picker shared by all tabs."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from kubin.config import LoadedConfig
from kubin.engine import QUEUED, RUNNING, Engine
from kubin.models.registry import ModelSpec, list_models
from kubin.params import FieldSpec, TaskParams

MAX_ENHANCEMENTS = 1000


def saved_prompt(path: str) -> str:
    """The prompt saved in a Kubin output (a frame taken from a video carries the video's), "" when none;
    for a prompt made from a template, the prompt as made (the template is in its parameters)."""
    from kubin.errors import KubinError
    from kubin.outputs import read_output_metadata

    try:
        meta = read_output_metadata(path)
    except KubinError:
        return ""
    params = meta.get("params", {})
    return (
        meta.get("prompt")
        or params.get("prompt")
        or " | ".join(meta.get("prompts", params.get("prompts", [])))
    )


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
    # The gr.Tab(s) whose click shows the extension tab being built (Tools, then its own): see on_open().
    opened_by: list[Any] = field(default_factory=list)
    tabs: Any = None  # the gr.Tabs of the top row (select one with gr.Tabs(selected=id))
    # Tab id -> the (gr.Tabs, id) to select, outermost first, to show a tab nested in another (an extension's
    # tab inside Tools); a tab not listed stands in the top row.
    tab_paths: dict[str, list[tuple[Any, str]]] = field(default_factory=dict)
    task_tabs: dict[str, Any] = field(default_factory=dict)  # task -> TaskTab, built before extension tabs
    # (function, outputs[, input]) to run on every page load, so a new page shows the state of now, not of
    # the build.
    page_loads: list[tuple] = field(default_factory=list)
    settings_warning_boxes: list[Any] = field(default_factory=list)  # the header's, cleared by a save
    # (gr.State, tab key) of each tab's job owner: what its Cancel cancels. A page load sets them from an
    # id kept in the browser, so a reloaded page can still cancel the jobs it started (see app.build_app).
    owners: list[tuple[Any, str]] = field(default_factory=list)
    # (Cancel button, tab key of its owner): active only while that owner has a job (a page load sets them).
    cancel_buttons: list[tuple[Any, str]] = field(default_factory=list)
    # Each tab's last prompt expansion, by its job owner: (original, enhanced, model), for the metadata of its
    # next outputs (kubin.ui.vision_tools); the oldest are forgotten past MAX_ENHANCEMENTS.
    enhancements: OrderedDict[str, tuple[str, str, str]] = field(default_factory=OrderedDict)

    def remember_enhancement(self, owner: str, value: tuple[str, str, str]) -> None:
        self.enhancements[owner] = value
        self.enhancements.move_to_end(owner)
        while len(self.enhancements) > MAX_ENHANCEMENTS:
            self.enhancements.popitem(last=False)

    def send_to(self, task: str, path: str) -> list:
        """Outputs for an event that sends the image at `path`, with the prompt saved in it, to the tab of
        `task` and opens it; wire the event's outputs as `ctx.send_outputs(task)`."""
        import gradio as gr

        target = self.task_tabs[task]
        value = target.receive_value(path) if target.receive_value else path
        sent = [value, *self.opening(task)]
        if target.prompt is not None:
            prompt = saved_prompt(path)
            sent.append(gr.update(value=prompt) if prompt else gr.update())
        return sent

    def send_outputs(self, task: str) -> list:
        target = self.task_tabs[task]
        return [target.receive_image, *self.tabs_of(task)] + (
            [target.prompt] if target.prompt is not None else []
        )

    def tabs_of(self, tab_id: str) -> list:
        """The gr.Tabs to update to show the tab `tab_id` (outputs for `opening`)."""
        return [tabs for tabs, _ in self.tab_paths.get(tab_id, [(self.tabs, tab_id)])]

    def opening(self, tab_id: str) -> list:
        """Updates of `tabs_of(tab_id)` that show the tab `tab_id`."""
        import gradio as gr

        return [gr.Tabs(selected=i) for _, i in self.tab_paths.get(tab_id, [(self.tabs, tab_id)])]

    def on_open(self, fn: Any, inputs: list, outputs: list) -> None:
        """Called by an extension's tab: run `fn(*inputs)` into `outputs` when the page loads and each time
        the user opens this tab, so it shows the state of now (new outputs, changed files)."""
        for tab in self.opened_by:
            tab.select(fn, inputs, outputs, queue=False, show_progress="hidden", api_visibility="private")
        self.page_loads.append((fn, outputs, *inputs))

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

    def field_spec(self, model_id: str, fs: FieldSpec) -> FieldSpec:
        """`fs` with the range the model allows: its limits narrow the params' own (a video model's frames)."""
        try:
            spec = self.spec(model_id)
        except Exception:
            return fs
        minimum, maximum, step = spec.field_range(fs.name, fs.minimum, fs.maximum, fs.step)
        return dataclasses.replace(fs, minimum=minimum, maximum=maximum, step=step)

    def has_jobs(self, owner: str) -> bool:
        """Whether `owner` (one tab of one browser) has a job queued or running."""
        return any(handle.state in (QUEUED, RUNNING) for handle in self.engine.jobs_of(owner))

    def lora_choices(self, model_id: str, refresh: bool = False) -> list[tuple[str, str]]:
        """The LoRA picker's choices for a model: (label, "name:1") for each adapter of the LoRA folder
        that fits one of its family's parts; none when the family takes no adapters."""
        from kubin.models.registry import family_of

        try:
            family = family_of(self.spec(model_id))
        except Exception:
            return []
        if not family.lora_parts:
            return []
        library = self.engine.loras
        found = library.refresh() if refresh else library.list()
        parts = {part.name: part.title for part in family.lora_parts}
        return [
            (f"{f.name} ({parts[f.part]}, rank {f.rank})", f"{f.name}:1")
            for f in found
            if f.fits_family(family.id) and f.part in parts
        ]

    def missing_loras(self, entries: list[str]) -> list[str]:
        """The names of restored adapters ("name:weight") that the LoRA folder does not hold."""
        from kubin.errors import KubinError
        from kubin.models.lora import parse_entry

        missing = []
        for entry in entries:
            name = parse_entry(entry)[0]
            try:
                self.engine.loras.find(name)
            except KubinError:
                missing.append(name)
        return missing

    def takes_loras(self, model_id: str) -> bool:
        from kubin.models.registry import family_of

        try:
            return bool(family_of(self.spec(model_id)).lora_parts)
        except Exception:
            return False

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
