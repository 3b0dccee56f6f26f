"""Settings tab: the main options, saved to the user config file (merged, so hand-written keys stay)."""

import inspect
from dataclasses import replace
from pathlib import Path

import gradio as gr

from kubin.app import wildcards_folder
from kubin.config import save_user_settings
from kubin.errors import KubinError
from kubin.params import Text2ImageParams
from kubin.runtime.device import choose_device, choose_dtype
from kubin.runtime.memory import CHOICES, MemoryOptions
from kubin.runtime.memory import MEMORY_FIELDS as DECLARED
from kubin.tools.models import ToolModels
from kubin.ui.context import UIContext

UI_DEFAULT_FIELDS = ["width", "height", "steps", "guidance_scale", "prior_steps", "prior_guidance_scale"]
# The memory and speed options, in the order of their inputs (after the defaults): see runtime/memory.py.
MEMORY_CHOICES = ["preset", "offload"]
MEMORY_CHECKBOXES = [name for name, spec in DECLARED.items() if isinstance(spec.default, bool)]
SPEED_FIELDS = ["cache", "cache_threshold", "quantize", "quantize_parts"]
MEMORY_FIELDS = MEMORY_CHOICES + MEMORY_CHECKBOXES + SPEED_FIELDS
TOOL_NAMES = ["depth_model", "caption_model", "enhance_model"]  # the tools.* settings (kubin.tools.jobs)
# The save button's inputs, in order: what current_values returns.
INPUT_NAMES = [
    "model",
    "device",
    "dtype",
    "output_dir",
    *(f"default_{n}" for n in UI_DEFAULT_FIELDS),
    *MEMORY_FIELDS,
    "wildcards_dir",  # API callers written before it (and the tool models) may leave them out
    *TOOL_NAMES,
]
# Labels come from the options' declarations (runtime/memory.py), as the CLI flags' help does.
MEMORY_LABELS = {name: spec.metadata["label"] for name, spec in DECLARED.items()}


def reload_reasons(
    before: MemoryOptions, after: MemoryOptions, device: tuple, new_device: tuple
) -> list[str]:
    """The settings whose change reloads the model before the next job, in words."""
    reasons = [
        MEMORY_LABELS[n].split(" (")[0] for n in MEMORY_FIELDS if getattr(before, n) != getattr(after, n)
    ]
    if device != new_device:
        reasons.insert(0, "device/precision")
    return reasons


def settings_text(ctx: UIContext) -> str:
    """The settings file's warnings (unreadable, not written yet), as shown now: empty once it is saved."""
    return "\n\n".join(f"⚠ {warning}" for warning in ctx.settings.warnings)


def current_values(ctx: UIContext) -> list:
    """The values of the tab's inputs, in the order of the save button's inputs, from the settings as they
    are now (each page load reads them, so a page opened after a save shows what was saved)."""
    s = ctx.settings
    memory = MemoryOptions.from_dict(s.get("memory"))
    t2i = s.get("ui.defaults.t2i") or {}
    return [
        s.get("model"),
        s.get("device"),
        s.get("dtype"),
        str(s.get("output_dir")),
        *("" if t2i.get(name) is None else str(t2i[name]) for name in UI_DEFAULT_FIELDS),
        *(getattr(memory, name) for name in MEMORY_FIELDS),
        str(s.get("wildcards.path") or "wildcards"),
        *(getattr(ctx.engine.tool_models, name.removesuffix("_model")) for name in TOOL_NAMES),
    ]


def parse_ui_defaults(texts: list[str | None]) -> dict[str, int | float]:
    """The text to image defaults typed in the tab: an empty box keeps the model's own (left out)."""
    raw = {
        name: str(text).strip()
        for name, text in zip(UI_DEFAULT_FIELDS, texts, strict=True)
        if text is not None and str(text).strip()
    }
    params = Text2ImageParams.from_dict(raw).validate()
    return {name: getattr(params, name) for name in raw}


def cluster_markdown(status: dict | None) -> str:
    """The cluster panel: whether the cluster answers, the queue here, and a row per replica."""
    if status is None:
        return "Jobs run in this process (start with `--cluster ADDRESS` to run them on a Ray cluster)."
    head = f"**Cluster** `{status['address']}`: "
    if not status["available"]:
        return head + f"⚠ not available — {status['problem']}"
    queue = status.get("queue") or {}
    resources = ", ".join(f"{v:g} {k}" for k, v in sorted((status.get("resources") or {}).items()))
    lines = [
        head + f"available · {len(status['replicas'])} replica(s) · {resources} · queue: "
        f"{queue.get('queued', 0)} queued, {queue.get('running', 0)} running",
        "",
        "| Replica | Device | Loaded models | Now | Jobs |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in status["replicas"]:
        now = f"job {r['busy']}, step {r['steps']}" if r.get("busy") else "idle"
        lines.append(
            f"| {r['replica']} | {r['device']} | {', '.join(r['models']) or '—'} | {now} | {r['jobs']} |"
        )
    return "\n".join(lines)


def build_cluster_panel(ctx: UIContext) -> None:
    """Replicas, their device, loaded models and the queue depth, read on each page load and on Refresh."""
    from kubin.cluster.status import engine_status

    def read() -> str:
        return cluster_markdown(engine_status(ctx.engine))

    with gr.Group(elem_id="settings-cluster-panel"):
        panel = gr.Markdown("Asking the cluster…", elem_id="settings-cluster", padding=True)
        refresh = gr.Button("Refresh cluster status", size="sm", elem_id="settings-cluster-refresh")
    refresh.click(read, None, panel, queue=False, api_visibility="private", show_progress="hidden")
    ctx.page_loads.append((read, panel))


def build(ctx: UIContext) -> None:
    s = ctx.settings
    specs = Text2ImageParams.field_specs()
    initial = dict(zip(INPUT_NAMES, current_values(ctx), strict=True))
    with gr.Tab("Settings", id="settings", elem_id="tab-settings"):
        gr.Markdown(
            f"Settings are saved to `{s.user_path}`. The output and wildcards folders apply at once; model, device "
            "and dtype apply from the next model load (the loaded model is unloaded)."
        )
        warnings = gr.Markdown(
            settings_text(ctx), elem_classes=["kubin-warning"], elem_id="settings-warnings"
        )
        if ctx.engine.cluster is not None:
            build_cluster_panel(ctx)
        with gr.Row():
            model = gr.Dropdown(
                [m.id for m in ctx.models()],
                value=initial["model"],
                label="Model at start",
                allow_custom_value=True,
                elem_id="settings-model",
                min_width=200,
            )
            device = gr.Dropdown(
                ["auto", "cpu", "cuda", "mps"],
                value=initial["device"],
                label="Device",
                allow_custom_value=True,
                elem_id="settings-device",
                min_width=120,
            )
            dtype = gr.Dropdown(
                ["auto", "fp32", "fp16", "bf16"],
                value=initial["dtype"],
                label="Precision",
                elem_id="settings-dtype",
                min_width=120,
            )
        with gr.Row():
            output_dir = gr.Textbox(
                value=initial["output_dir"],
                label="Output folder",
                elem_id="settings-output-dir",
                min_width=200,
            )
            wildcards_dir = gr.Textbox(
                value=initial["wildcards_dir"], label="Wildcards folder", min_width=200,
                info="one .txt file per wildcard (colors.txt for a colors wildcard); applies at once",
                elem_id="settings-wildcards-dir",
            )  # fmt: skip
        gr.Markdown(
            "**Memory and speed** — every option here applies on the next model load: saving a change "
            "reloads the loaded model before the next job (the status below names what changed). "
            "medvram and lowvram switch on what suits each model family on top of the options below; "
            "offload and bitsandbytes need a GPU, and sequential offload works with torchao quantisation "
            "only (not quanto or bitsandbytes)."
        )
        elem_ids = {"preset": "settings-memory-preset"}

        def choice(name: str) -> gr.Dropdown:
            return gr.Dropdown(
                list(CHOICES[name]),
                value=initial[name],
                label=MEMORY_LABELS[name],
                elem_id=elem_ids.get(name, "settings-" + name.replace("_", "-")),
                min_width=160,
            )

        with gr.Row():
            memory_inputs = [choice(name) for name in MEMORY_CHOICES]
            memory_inputs += [
                gr.Checkbox(
                    value=initial[name],
                    label=MEMORY_LABELS[name],
                    elem_id="settings-" + name.replace("_", "-"),
                    elem_classes=["kubin-option"],  # kubin.css: Gradio ignores a checkbox's min_width
                )
                for name in MEMORY_CHECKBOXES
            ]
        with gr.Row():
            cache = choice("cache")  # the mode first, then its threshold (components show in creation order)
            threshold = gr.Number(
                value=initial["cache_threshold"],
                label=MEMORY_LABELS["cache_threshold"],
                minimum=0,
                maximum=10,
                step=0.01,
                elem_id="settings-cache-threshold",
                min_width=160,
            )
            memory_inputs += [cache, threshold, choice("quantize"), choice("quantize_parts")]
        # Text boxes, not gr.Number: a Gradio 6 number box cannot be empty (it shows and sends 0).
        gr.Markdown("**Text to image defaults** (empty keeps the model's own)")
        with gr.Row():
            defaults = [
                gr.Textbox(
                    value=initial[f"default_{name}"],
                    label=specs[name].label,
                    placeholder=f"model's own ({specs[name].minimum:g} to {specs[name].maximum:g})",
                    elem_id="settings-default-" + name.replace("_", "-"),
                    min_width=120,
                )
                for name in UI_DEFAULT_FIELDS
            ]
        gr.Markdown(
            "**Tool models** (a Hugging Face id, a local folder, or `tiny-depth` / `tiny-caption` / `tiny-enhance` "
            "to try them offline; empty: the default; apply at once)"
        )
        with gr.Row():
            labels = {"depth_model": "Depth (ControlNet hints)", "caption_model": "Captions (Describe, Captions tab)",
                      "enhance_model": "Prompt expansion (Enhance prompt)"}  # fmt: skip
            tool_inputs = [
                gr.Textbox(
                    value=initial[name],
                    label=labels[name],
                    min_width=200,
                    elem_id="settings-" + name.replace("_", "-"),
                )  # fmt: skip
                for name in TOOL_NAMES
            ]
        save = gr.Button("Save settings", variant="primary", elem_id="settings-save")
        status = gr.Markdown(elem_id="settings-status")

        def save_settings(model_id, device_name, dtype_name, out_dir, *values):
            default_values = values[: len(UI_DEFAULT_FIELDS)]
            rest = values[len(UI_DEFAULT_FIELDS) :]
            memory_values = dict(zip(MEMORY_FIELDS, rest, strict=False))
            wildcards_path = str(rest[len(MEMORY_FIELDS)] if len(rest) > len(MEMORY_FIELDS) else "").strip()
            wildcards_path = wildcards_path or str(s.get("wildcards.path") or "wildcards")
            # The tool models: a box left empty is the default; one an older API caller leaves out stays.
            given = dict(zip(TOOL_NAMES, rest[len(MEMORY_FIELDS) + 1 :], strict=False))
            current = ctx.engine.tool_models
            tools = ToolModels(
                *(
                    str(given[n] or "").strip() if n in given else getattr(current, n.removesuffix("_model"))
                    for n in TOOL_NAMES
                )
            )
            try:
                memory_options = MemoryOptions.from_dict({**(s.get("memory") or {}), **memory_values})
                ctx.spec(model_id)
                choose_device(
                    device_name, cuda_available=True, cuda_count=16, mps_available=True
                )  # syntax only
                choose_dtype(dtype_name, "cuda")
                if not str(out_dir).strip():
                    raise KubinError("The output folder cannot be empty.")
                ui_defaults = parse_ui_defaults(list(default_values))
            except KubinError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            updates = {
                "model": model_id,
                "device": device_name,
                "dtype": dtype_name,
                "output_dir": out_dir,
                "ui.defaults.t2i": ui_defaults,
                "memory": memory_options.to_dict(),
                "wildcards.path": wildcards_path,
                **{f"tools.{n}": getattr(tools, n.removesuffix("_model")) for n in TOOL_NAMES},
            }
            path = save_user_settings(s.user_path, updates)
            for key, value in updates.items():
                s.set(key, value)
            s.warnings.clear()  # they were about the file, which is now written (a bad one kept as .bad)
            if ctx.engine.history is not None and Path(out_dir).resolve() != ctx.engine.output_dir.resolve():
                from kubin.history import History

                ctx.engine.history = History(out_dir)  # each output folder keeps its own history
            ctx.engine.output_dir = Path(out_dir)
            folder = wildcards_folder(wildcards_path)
            ctx.engine.wildcards = replace(ctx.engine.wildcards, folder=folder)
            ctx.engine.tool_models = tools  # the next tool job loads the new ones
            manager = ctx.engine.manager
            reasons = reload_reasons(
                manager.memory, memory_options, (manager.device, manager.dtype), (device_name, dtype_name)
            )
            loaded = manager.loaded_id
            manager.configure(device_name, dtype_name, memory_options)
            if reasons and loaded:
                saved = (
                    f"✓ Saved to `{path}`. {loaded} reloads before the next job for: {', '.join(reasons)}."
                )
            elif reasons:
                saved = f"✓ Saved to `{path}`. Applies when the next model loads: {', '.join(reasons)}."
            else:
                saved = f"✓ Saved to `{path}`."
            if not folder.is_dir():
                saved += (
                    f" The wildcards folder {folder} does not exist yet: create it for __name__ wildcards."
                )
            return saved

        inputs = [model, device, dtype, output_dir, *defaults, *memory_inputs, wildcards_dir, *tool_inputs]
        # API callers see the inputs' names (default_steps, offload, wildcards_dir, ...), not param_N.
        save_settings.__signature__ = inspect.Signature(
            [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in INPUT_NAMES]
        )
        boxes = [warnings, *ctx.settings_warning_boxes]  # this tab's and the header's
        save.click(save_settings, inputs, status, api_name="save_settings", concurrency_limit=1).then(
            lambda: [settings_text(ctx)] * len(boxes), None, boxes, queue=False, show_progress="hidden",
            api_visibility="private",
        )  # fmt: skip
        # Read the settings on every page load: a page opened after a save shows (and saves) what was saved.
        ctx.page_loads.append((lambda: [*current_values(ctx), settings_text(ctx)], [*inputs, warnings]))
