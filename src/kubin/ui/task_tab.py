"""The layout and wiring every generation tab shares: model, prompt, Generate/Cancel, the sampling
controls, the result gallery with its info, send-to buttons and "restore parameters".

A tab module only adds its own inputs (init image, mask, mix items...) through two builder hooks and
says how widget values become task parameters. Widgets are registered by parameter name, which is
also their order in the tab's API endpoint (after the model).
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from kubin.engine import Job
from kubin.errors import KubinError
from kubin.outputs import read_output_metadata
from kubin.params import TASK_LABELS, VIDEO_TASKS, params_class
from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.job_view import GENERATE_WAITERS, follow_job, new_owner, outputs
from kubin.ui.vision_tools import (
    depth_box,
    describable_image,
    describe_button,
    enhance_button,
    enhancement_meta,
    wire_describe,
    wire_enhance,
)

# Fields the shared part shows when the task has them, in this order, two per row.
SAMPLING_FIELDS = ["steps", "guidance_scale", "prior_steps", "prior_guidance_scale"]
VIDEO_FIELDS = ["frames", "fps"]
# On/off options of the video tasks, under the frames: only models with a soundtrack show them.
SWITCH_FIELDS = ["sample_audio", "expand_prompt"]
BATCH_FIELDS = ["batch_count", "batch_size"]
# Tabs a result can be sent to (a video sends one of its frames).
SEND_TARGETS = ["i2i", "mix", "inpaint", "outpaint", "i2v"]


@dataclass
class TaskTab:
    """What app.py needs from a built tab to wire tabs together."""

    task: str
    widgets: dict[str, Any]  # parameter name -> component (plus extra names a tab converts itself)
    model: gr.Dropdown
    gallery: gr.Gallery
    results: gr.State  # paths of the last results
    selected: gr.State  # index of the selected result
    send_buttons: dict[str, gr.Button] = field(default_factory=dict)
    send_frame: Any = None  # video tabs: which frame of the selected video the send buttons take
    # Where an image sent from another tab lands, and how a file path becomes that component's value.
    receive_image: Any = None
    receive_value: Callable[[str], Any] | None = None
    owner: Any = None  # the gr.State of the tab's job owner (what its Cancel cancels)

    @property
    def prompt(self):
        return self.widgets.get("prompt")


def build_task_tab(
    ctx: UIContext,
    task: str,
    inputs: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    options: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    to_params: Callable[[dict[str, Any]], dict[str, Any]] = dict,
    has_prompt: bool = True,
    prompts_file: bool = False,
    grid: bool = False,
    folder: bool = False,
) -> TaskTab:
    """Build one tab. `inputs` adds widgets above the prompt, `options` below Generate; each returns
    {name: component}. `to_params` turns {name: value} into the task's parameter dict. With
    `prompts_file`, a prompts file queues one job per line (kubin.ui.prompts_file); with `grid`, an X/Y/Z
    grid queues one per combination (kubin.ui.grid_panel); with `folder`, every image of a folder is the
    task's input image of one job (kubin.ui.folder_batch)."""
    params_cls = params_class(task)
    specs = params_cls.field_specs()
    video = task in VIDEO_TASKS
    with gr.Tab(TASK_LABELS[task], id=task, elem_id=f"tab-{task}"):
        model = ui.model_picker(ctx, task, f"{task}-model")
        values = ctx.defaults(model.value, params_cls)
        hidden = ctx.unused_params(model.value)
        owner = gr.State(new_owner)  # what Cancel cancels: per session, then per browser once the page loads
        ctx.owners.append((owner, task))
        last_seed = gr.State(-1)
        results = gr.State([])
        selected = gr.State(0)
        widgets: dict[str, Any] = {}
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                if inputs:
                    widgets.update(inputs(values))
                # Describe under the input image; Enhance prompt under the prompt (kubin.ui.vision_tools).
                describable = describable_image(widgets)
                describe = describe_button(task) if describable is not None else None
                enhance = None
                if has_prompt:
                    widgets["prompt"] = ui.prompt_box(values, task)
                    enhance = enhance_button(task)
                widgets["negative_prompt"] = ui.negative_prompt_box(values, task)
                with gr.Row():
                    generate_btn = ui.generate_button(f"{task}-generate")
                    cancel_btn = ui.cancel_button(f"{task}-cancel")
                ctx.cancel_buttons.append((cancel_btn, task))
                # Not the info box: the job's last message and this reply can arrive in either order.
                cancel_status = gr.Markdown(elem_id=f"{task}-cancel-status")
                if options:
                    widgets.update(options(values))
                if "width" in specs:
                    _, widgets["width"], widgets["height"] = ui.size_picker(
                        specs, values, task, ctx.resolutions(model.value)
                    )
                switches: dict[str, Any] = {}
                for group in (VIDEO_FIELDS, SAMPLING_FIELDS[:2], SAMPLING_FIELDS[2:]):
                    with gr.Row():
                        for name in (n for n in group if n in specs):
                            widgets[name] = ui.slider(specs[name], values[name],
                                                      min_width=200 if name in VIDEO_FIELDS else 160,
                                                      elem_id=ui.eid(task, name.replace("_", "-")),
                                                      visible=name not in hidden)  # fmt: skip
                    if group is VIDEO_FIELDS and any(n in specs for n in SWITCH_FIELDS):
                        with gr.Row(elem_id=f"{task}-switches"):
                            for name in (n for n in SWITCH_FIELDS if n in specs):
                                switches[name] = ui.switch(specs[name], values[name], task,
                                                           visible=name not in hidden)  # fmt: skip
                widgets["seed"], reuse_seed = ui.seed_row(specs["seed"], values["seed"], task)
                with gr.Row():
                    for name in (n for n in BATCH_FIELDS if n in specs):
                        widgets[name] = ui.slider(specs[name], values[name], min_width=160,
                                                  visible=name not in hidden)  # fmt: skip
                    prompt_mode = None
                    if "prompt_mode" in specs:
                        prompt_mode = ui.prompt_mode_picker(specs["prompt_mode"], values["prompt_mode"], task)
                widgets["scheduler"] = gr.Dropdown(
                    ui.scheduler_choices(ctx, model.value),
                    value="",
                    label="Scheduler",
                    elem_id=f"{task}-scheduler",
                )
                lora_picker = None
                if "loras" in specs:
                    with gr.Row(equal_height=True, visible=ctx.takes_loras(model.value)) as lora_row:
                        lora_picker = gr.Dropdown(
                            ctx.lora_choices(model.value), value=[], multiselect=True, allow_custom_value=True,
                            label="LoRA", info="each with its weight below (or type ink:0.6), or write <lora:ink:0.6> "
                            "in the prompt", elem_id=f"{task}-loras", scale=5,
                        )  # fmt: skip
                        lora_refresh = gr.Button(
                            "↻", size="sm", min_width=56, scale=0, elem_id=f"{task}-loras-refresh"
                        )
                    ui.lora_weight_sliders(task, lora_picker)
                if "negative_prior_prompt" in specs:
                    fs = specs["negative_prior_prompt"]
                    widgets["negative_prior_prompt"] = gr.Textbox(
                        label=fs.label, info=fs.help, lines=1, elem_id=f"{task}-negative-prior-prompt",
                        visible="negative_prior_prompt" not in hidden,
                    )  # fmt: skip
                hint_box = None
                if "hint_image" in specs:
                    hint_box = gr.Accordion(
                        "ControlNet (depth)", open=False, visible="hint_image" not in hidden
                    )
                    with hint_box:
                        widgets.update(
                            depth_box(ctx, task, specs["estimate_depth"], values["estimate_depth"])
                        )
                if prompt_mode is not None:  # registered after the scheduler: optional for API callers
                    widgets["prompt_mode"] = prompt_mode
                if lora_picker is not None:  # optional for API callers, like the prompt mode
                    widgets["loras"] = lora_picker
                widgets.update(
                    switches
                )  # after the scheduler too: shown under the frames, optional in the API
                if prompts_file:
                    from kubin.ui.prompts_file import prompts_file_box

                    file_box = prompts_file_box(task)
                if grid:
                    from kubin.ui.grid_panel import grid_panel

                    panel = grid_panel(task)
                if folder:
                    from kubin.ui.folder_batch import folder_box

                    batch_box = folder_box(task, masks="mask" in specs)
                extension_widgets = build_extension_controls(ctx, task, widgets)
                widgets.update(extension_widgets)
            with gr.Column(scale=1, min_width=300):
                gallery = ui.result_gallery(f"{task}-gallery", video=video)
                info = gr.Markdown(elem_id=f"{task}-info")
                send_buttons = {}
                send_frame = None
                if video:
                    send_frame = gr.Number(
                        value=-1, precision=0, label="Frame to send", info="0 is the first, -1 the last",
                        elem_id=f"{task}-send-frame", min_width=160,
                    )  # fmt: skip
                with gr.Row(elem_id=f"{task}-send"):
                    for target in (t for t in SEND_TARGETS if t != task):
                        send_buttons[target] = gr.Button(
                            f"→ {TASK_LABELS[target]}",
                            size="sm",
                            min_width=90,
                            elem_id=f"{task}-send-{target}",
                        )
                    if video:  # the whole video, to the Video upscale tab
                        send_buttons["vsr"] = gr.Button(
                            "→ Upscale video", size="sm", min_width=90, elem_id=f"{task}-send-vsr"
                        )
                    for key, label in ctx.send_targets():  # extensions' tabs (upscaler, ...)
                        send_buttons[f"ext:{key}"] = gr.Button(
                            f"→ {label}", size="sm", min_width=90, elem_id=f"{task}-send-ext-{key}"
                        )
                with gr.Accordion("Generation info", open=False):
                    details = gr.JSON(label="Outputs and parameters", elem_id=f"{task}-details")
                with gr.Accordion(
                    f"Restore parameters from a Kubin {'video' if video else 'image'}", open=False
                ):
                    restore_file = gr.File(
                        label="MP4 made by Kubin" if video else "PNG made by Kubin",
                        file_types=[".mp4", ".json"] if video else ["image"],
                        type="filepath",
                        elem_id=f"{task}-restore-file",
                    )
                    restore_status = gr.Markdown(elem_id=f"{task}-restore-status")

    names = list(widgets)
    components = [widgets[n] for n in names]

    def generate(owner_id, model_id, *widget_values, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        try:
            values = dict(zip(names, widget_values, strict=True))
            extension_values: dict[str, dict[str, Any]] = {}
            for name, (ext_name, control) in extension_widgets.keys_by_name.items():
                extension_values.setdefault(ext_name, {})[control] = values.pop(name)
            meta = enhancement_meta(ctx, owner_id, str(values.get("prompt") or ""))
            params = to_params(values)
            handle = ctx.engine.submit(
                Job(task, model_id, params, owner=owner_id, extension_values=extension_values, meta=meta)
            )
        except KubinError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        yield from follow_job(ctx, handle, progress, outputs)

    # Name the API's parameters after the widgets (gradio_client shows them) instead of *widget_values.
    # Inputs after the scheduler (negative prior prompt, ControlNet hint) are optional for API clients,
    # defaulting to the widget's initial value, so calls written before they existed keep working.
    optional = names.index("scheduler") + 1
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    generate.__signature__ = inspect.Signature(
        [inspect.Parameter(n, positional) for n in ("owner_id", "model_id", *names[:optional])]
        + [inspect.Parameter(n, positional, default=widgets[n].value) for n in names[optional:]]
        + [inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=gr.Progress())]
    )
    event_outputs = [gallery, info, details, last_seed, results, selected]
    # Ctrl/Cmd+Enter in the tab's text boxes clicks Generate (kubin.js); Enter adds a line.
    generate_btn.click(
        lambda: ("", gr.update(interactive=True)), None, [cancel_status, cancel_btn],
        queue=False, show_progress="hidden", api_visibility="private",
    )  # fmt: skip
    generate_btn.click(
        generate, [owner, model, *components], event_outputs,
        api_name=_api_name(task), concurrency_limit=GENERATE_WAITERS, concurrency_id="generate",
    ).then(
        lambda owner_id: ui.cancel_state(ctx, owner_id), owner, cancel_btn,
        queue=False, show_progress="hidden", api_visibility="private",
    )  # fmt: skip

    def cancel(owner_id: str) -> str:
        n = ctx.engine.cancel_owner(owner_id)
        return "Cancel requested: the job stops after the step under way." if n else "Nothing to cancel."

    if prompts_file:
        from kubin.ui.prompts_file import wire_prompts_file

        wire_prompts_file(ctx, task, file_box, owner, model, names, components, event_outputs, to_params,
                          extension_widgets.keys_by_name)  # fmt: skip
    if grid:
        from kubin.ui.grid_panel import wire_grid_panel

        wire_grid_panel(ctx, task, panel, owner, model, names, components, event_outputs, to_params,
                        extension_widgets.keys_by_name, restore_file, (cancel_btn, cancel_status))  # fmt: skip

    if folder:
        from kubin.ui.folder_batch import wire_folder_batch

        wire_folder_batch(ctx, task, batch_box, owner, model, names, components, event_outputs, to_params,
                          extension_widgets.keys_by_name, (cancel_btn, cancel_status))  # fmt: skip

    cancel_btn.click(cancel, owner, cancel_status, api_name=f"{task}_cancel", queue=False)
    if describe is not None and "prompt" in widgets:
        wire_describe(ctx, task, describe, describable, widgets["prompt"], model, owner)
    if enhance is not None:
        wire_enhance(ctx, task, enhance, widgets["prompt"], model, owner)
    reuse_seed.click(
        lambda s: s, last_seed, widgets["seed"], queue=False, show_progress="hidden", api_visibility="private"
    )

    def on_select(evt: gr.SelectData) -> int:
        return evt.index

    gallery.select(on_select, None, selected, queue=False, show_progress="hidden", api_visibility="private")

    default_names = [n for n in names if n in specs and n not in params_cls.image_fields()]
    # Widgets a model may hide (its unused params); the ControlNet box stands for hint_image and what is in it.
    in_box = ("estimate_depth",)
    toggled = {
        n: widgets[n]
        for n in names
        if n in specs and n not in ("prompt", "seed", "scheduler", "loras", *in_box)
    }
    if hint_box is not None:
        toggled["hint_image"] = hint_box

    # Sliders whose range the model may narrow (frames: the model's length limit and frame step).
    ranged = [n for n in default_names if isinstance(widgets[n], gr.Slider)]

    def ranges(model_id: str) -> dict[str, dict[str, Any]]:
        return {n: ui.slider_range(ctx.field_spec(model_id, specs[n])) for n in ranged}

    def on_model_change(model_id: str):
        vals = ctx.defaults(model_id, params_cls)
        unused = ctx.unused_params(model_id)
        limits = ranges(model_id)
        updates = [
            gr.update(**limits.get(n, {}), **({"value": vals[n]} if n in vals and n != "scheduler" else {}))
            for n in default_names
        ]
        shown = [gr.update(visible=n not in unused) for n in toggled]
        if lora_picker is not None:  # the adapters that fit the model; kept where the model takes them
            at = default_names.index("loras")
            updates[at] = gr.update(choices=ctx.lora_choices(model_id))
            shown.append(gr.update(visible=ctx.takes_loras(model_id)))
        return [*updates, gr.update(choices=ui.scheduler_choices(ctx, model_id), value=""), *shown]

    # A page shows the ranges of the model it opens with (the widgets are built with the widest, which the
    # tab's API endpoint keeps for every model).
    ctx.page_loads.append(
        (
            lambda model_id: [gr.update(**r) for r in ranges(model_id).values()],
            [widgets[n] for n in ranged],
            model,
        )
    )

    lora_outputs = [lora_row] if lora_picker is not None else []
    model.change(
        on_model_change, model,
        [*(widgets[n] for n in default_names), widgets["scheduler"], *toggled.values(), *lora_outputs],
        queue=False, show_progress="hidden", api_visibility="private",
    )  # fmt: skip
    if lora_picker is not None:
        lora_refresh.click(
            lambda model_id: gr.update(choices=ctx.lora_choices(model_id, refresh=True)), model, lora_picker,
            queue=False, show_progress="hidden", api_visibility="private",
        )  # fmt: skip

    def restore(path: str | None):
        if not path:
            return [gr.update()] * (len(default_names) + 1) + [""]
        try:
            meta = read_output_metadata(path)
        except KubinError as exc:
            return [gr.update()] * (len(default_names) + 1) + [f"⚠ {exc}"]
        if "params" not in meta:
            return [gr.update()] * (len(default_names) + 1) + [
                "This image has only A1111-style parameters:\n\n```\n" + meta.get("parameters", "") + "\n```"
            ]
        saved = meta["params"]
        updates = [gr.update(value=saved[n]) if n in saved else gr.update() for n in default_names]
        model_update = gr.update(value=meta.get("model")) if meta.get("model") else gr.update()
        note = f"Restored the parameters of a {TASK_LABELS.get(meta.get('task'), meta.get('task'))} result"
        note += f" (seed {saved.get('seed')}, model {meta.get('model')})."
        missing = ctx.missing_loras(saved.get("loras") or [])
        if missing:
            note += f" Not on this machine (add them to the LoRA folder): {', '.join(missing)}."
        return [*updates, model_update, note]

    restore_file.upload(
        restore, restore_file, [*(widgets[n] for n in default_names), model, restore_status],
        api_name=f"{task}_restore", show_progress="hidden",
    )  # fmt: skip
    return TaskTab(
        task, widgets, model, gallery, results, selected, send_buttons, send_frame=send_frame, owner=owner
    )


class ExtensionWidgets(dict):
    """{parameter name: component} of the extensions' widgets in one tab; `keys_by_name` maps each name
    (a Python identifier, as the tab's API shows it) to (extension folder, the extension's own key)."""

    def __init__(self):
        super().__init__()
        self.keys_by_name: dict[str, tuple[str, str]] = {}


def build_extension_controls(
    ctx: UIContext, task: str, tab_widgets: dict[str, Any] | None = None
) -> ExtensionWidgets:
    """Each loaded extension's widgets for this task, in its own closed panel; one whose build raises is
    marked failed (the tab is built without it). A build that takes a third argument gets the tab's own
    widgets built so far (`tab_widgets`: prompt, negative_prompt, ...), to show or follow them."""
    import re

    from kubin.extensions.loader import fail, takes

    built = ExtensionWidgets()
    for ext in ctx.extensions:
        if ext.status != "ok" or ext.api is None:
            continue
        for controls in ext.api.controls:
            if controls.tasks is not None and task not in controls.tasks:
                continue
            with gr.Accordion(controls.title, open=False, elem_id=f"{task}-ext-{ext.name}"):
                try:
                    args = (ctx, task, dict(tab_widgets or {}))
                    widgets = dict(controls.build(*(args if takes(controls.build, 3) else args[:2])) or {})
                except Exception as exc:
                    fail(ext, exc)
                    gr.Markdown(f"✗ The extension {ext.name} failed to add its controls: {ext.error}")
                    continue
            for key, component in widgets.items():
                name = re.sub(r"\W", "_", f"ext_{ext.name}_{key}")
                built[name] = component
                built.keys_by_name[name] = (ext.name, key)
    return built


def _api_name(task: str) -> str:
    return {"t2i": "txt2img", "i2i": "img2img"}.get(task, task)
