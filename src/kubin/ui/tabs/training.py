"""Training tab: a folder of pictures (short clips for a video model) to a LoRA adapter in the picker. The
folder is checked first (skipped files and buckets shown), the run is a job of the engine's queue, and while it
runs the tab shows its step, ETA, a live loss plot and the sample images (videos for a video model); Cancel stops it with a checkpoint and Resume goes
on from the last checkpoint of a run. The options' widgets come from TrainingOptions."""

from __future__ import annotations

import time
from typing import Any

import gradio as gr

from kubin.errors import KubinError
from kubin.training.options import PRESETS, TrainingOptions, option_fields
from kubin.ui.context import UIContext

TAB_ID = "training"
# The options shown in the first rows; the rest are under "Options".
MAIN = ["model", "target", "data", "output", "trigger", "steps"]
HIDDEN = {"target_modules"}  # a list of module names: the part's default suits the tab
REFRESH_S = 0.5  # the least time between two updates of the plot and the gallery


def trainable_models(ctx: UIContext) -> dict[str, list[str]]:
    """Model id -> the parts it can train, for every model whose family can be trained."""
    from kubin.models.registry import family_of, list_models
    from kubin.training.targets import family_targets

    found = {}
    for spec in list_models():
        parts = list(family_targets(family_of(spec), spec))
        if parts and spec.tasks[0] in ("t2i", "t2v"):
            found[spec.id] = parts
    return found


LABELS = {"lr_scheduler": "LR schedule", "learning_rate": "Learning rate", "data": "Pictures or clips folder",
          "frames": "Clip frames", "fps": "Clip frame rate",
          "output": "Adapter name", "trigger": "Trigger word", "mixed_precision": "Mixed precision",
          "cache_latents": "Cache encodings", "preset": "GPU memory preset",
          "caption_missing": "Caption the pictures without a .txt first"}  # fmt: skip


def _widget(f, models: dict[str, list[str]], default_model: str) -> Any:
    meta, label = f.metadata, LABELS.get(f.name, f.name.replace("_", " ").capitalize())
    info = meta["help"]
    elem_id = f"train-{f.name.replace('_', '-')}"
    if f.name == "model":
        return gr.Dropdown(list(models), value=default_model, label="Model", info=info, elem_id=elem_id)
    if f.name == "target":
        parts = models.get(default_model, [])
        return gr.Dropdown(parts, value=parts[0] if parts else None, label="Part", info=info, elem_id=elem_id)
    if f.name == "sample_prompts":
        return gr.Textbox(label="Sample prompts", info="one per line", lines=2, elem_id=elem_id)
    if str(f.type) == "bool":
        return gr.Checkbox(value=f.default, label=label, info=info, elem_id=elem_id)
    if meta["choices"]:
        choices = [(c or "none", c) for c in meta["choices"]]  # an empty choice (no preset) reads "none"
        return gr.Dropdown(choices, value=f.default, label=label, info=info, elem_id=elem_id)
    if str(f.type) in ("int", "float"):
        precision = 0 if str(f.type) == "int" else None
        return gr.Number(value=f.default, label=label, info=info, minimum=meta["min"], maximum=meta["max"],
                         precision=precision, elem_id=elem_id)  # fmt: skip
    return gr.Textbox(value=f.default, label=label, info=info, elem_id=elem_id)


def collect(names: list[str], values: tuple) -> dict[str, Any]:
    """The options from the widgets' values (sample prompts one per line; empty text means default)."""
    out: dict[str, Any] = {}
    for name, value in zip(names, values, strict=True):
        if name == "sample_prompts":
            value = [line.strip() for line in (value or "").splitlines() if line.strip()]
        if value is None or value == "":
            continue
        out[name] = (
            int(value)
            if isinstance(value, float) and value.is_integer() and name != "learning_rate"
            else value
        )
    return out


PLOT_POINTS = 500  # a long run's losses are averaged in windows down to this many points


def loss_frame(run) -> Any:
    """The loss history for the plot: every step, or for a long run the mean of each window of steps (at
    its last step), so that an update stays small."""
    import pandas as pd

    losses = run.losses if run is not None else []
    window = max(1, -(-len(losses) // PLOT_POINTS))
    chunks = [losses[i : i + window] for i in range(0, len(losses), window)]
    return pd.DataFrame(
        {
            "step": [chunk[-1][0] for chunk in chunks],
            "loss": [sum(v for _, v in chunk) / len(chunk) for chunk in chunks],
        }
    )


def status_text(run, position: int) -> str:
    if run is None:
        return ""
    if run.state == "queued":
        ahead = max(position - 1, 0)
        return f"Queued: waiting for {ahead} job(s) ahead." if ahead else "Queued: starts next."
    if run.state == "running":
        if not run.step:
            return f"Preparing: {run.notices[-1] if run.notices else 'loading the model…'}"
        loss = f" · loss {run.losses[-1][1]:.4f}" if run.losses else ""
        eta = f" · about {run.eta:.0f} s left" if run.eta is not None else ""
        return f"Step {run.step}/{run.options.steps}{loss}{eta}"
    if run.state == "done":
        return (
            f"Done: {run.result.path.name} is in the LoRA folder ({run.step} steps)."
            if run.result
            else "Done."
        )
    return f"{run.state.capitalize()}: {run.error}"


def build(ctx: UIContext) -> None:
    trainings = ctx.engine.trainings
    models = trainable_models(ctx)
    default_model = ctx.model_id if ctx.model_id in models else next(iter(models), None)
    fields = [f for f in option_fields() if f.name not in HIDDEN]
    by_name = {f.name: f for f in fields}
    widgets: dict[str, Any] = {}
    with gr.Tab("Training", id=TAB_ID, elem_id=f"tab-{TAB_ID}"):
        if trainings is None or not models:
            gr.Markdown("Training is not available here (no trainable model).")
            return
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                with gr.Row():
                    for name in MAIN[:2]:
                        widgets[name] = _widget(by_name[name], models, default_model)
                widgets["data"] = _widget(by_name["data"], models, default_model)
                report = gr.Markdown(elem_id="train-report")
                with gr.Row():
                    for name in MAIN[3:]:
                        widgets[name] = _widget(by_name[name], models, default_model)
                with gr.Accordion("Options", open=False, elem_id="train-options"):
                    rest = [f for f in fields if f.name not in MAIN]
                    with gr.Row():
                        for f in rest:
                            if str(f.type) != "bool" and f.name != "sample_prompts":
                                widgets[f.name] = _widget(f, models, default_model)
                    with gr.Row():  # checkboxes in a row of their own: beside numbers they are squeezed
                        for f in rest:
                            if str(f.type) == "bool":
                                widgets[f.name] = _widget(f, models, default_model)
                    widgets["sample_prompts"] = _widget(by_name["sample_prompts"], models, default_model)
                with gr.Row():
                    check = gr.Button("Check folder", elem_id="train-check")
                    start = gr.Button("Train", variant="primary", elem_id="train-start")
                    cancel = gr.Button("Cancel", variant="stop", interactive=False, elem_id="train-cancel")
                with gr.Row():
                    resumable = gr.Dropdown([], label="Resume a run", info="runs that left a checkpoint",
                                            allow_custom_value=False, elem_id="train-resumable")  # fmt: skip
                    resume = gr.Button("Resume", elem_id="train-resume")
            with gr.Column(scale=2, min_width=300):
                status = gr.Markdown(elem_id="train-status")
                plot = gr.LinePlot(loss_frame(None), x="step", y="loss", title="Training loss", height=260,
                                   elem_id="train-loss")  # fmt: skip
                gallery = gr.Gallery(label="Samples", columns=3, height=260, elem_id="train-samples")
        run_id = gr.State(None)
        names = list(widgets)
        inputs = [widgets[n] for n in names]

        def parts_of(model_id: str):
            parts = models.get(model_id, [])
            return gr.update(choices=parts, value=parts[0] if parts else None)

        widgets["model"].change(parts_of, widgets["model"], widgets["target"], queue=False)
        preset_names = sorted({name for values in PRESETS.values() for name in values})

        def fill_preset(preset: str):
            values = PRESETS.get(preset, {})
            return [gr.update(value=values[name]) if name in values else gr.update() for name in preset_names]

        widgets["preset"].change(
            fill_preset, widgets["preset"], [widgets[n] for n in preset_names], queue=False
        )

        def check_pictures(*values) -> str:
            from kubin.training.loop import Trainer

            try:
                options = TrainingOptions.from_dict(collect(names, values) | {"steps": 1, "output": "check"})
                options.validate()
                spec = ctx.engine.manager.spec(options.model)
                device = ctx.engine.manager.placement().device  # where it would run: 8-bit Adam needs CUDA
                found = Trainer(
                    options, spec, {}, trainings.run_dir(options), ctx.engine.loras.folder, device
                )
                return describe_report(found.check_dataset())
            except KubinError as exc:
                return f"✗ {exc}"

        check.click(check_pictures, inputs, report, queue=False)

        def follow(run, describe: bool):
            """Yield the tab's outputs as the run goes, at most every REFRESH_S, and once when it ends."""
            shown = 0.0
            lines = describe_report(run.dataset) if describe else ""
            yield run.id, lines, status_text(run, 1), loss_frame(run), [], gr.update(interactive=True)
            while not run.finished:
                run.wait(REFRESH_S)
                if time.monotonic() - shown >= REFRESH_S:
                    shown = time.monotonic()
                    yield (run.id, gr.update(), status_text(run, ctx.engine.position(run.handle)), loss_frame(run),
                           samples(run), gr.update())  # fmt: skip
            yield (
                run.id,
                gr.update(),
                status_text(run, 0),
                loss_frame(run),
                samples(run),
                gr.update(interactive=False),
            )

        outputs = [run_id, report, status, plot, gallery, cancel]

        def train(*values):
            try:
                run = trainings.start(collect(names, values), owner="ui")
            except KubinError as exc:
                yield None, f"✗ {exc}", "", loss_frame(None), [], gr.update(interactive=False)
                return
            yield from follow(run, True)

        def resume_run(name: str, steps):
            try:
                run = trainings.start(
                    {"output": name or "", "steps": int(steps or 0)}, resume=True, owner="ui"
                )
            except KubinError as exc:
                yield None, f"✗ {exc}", "", loss_frame(None), [], gr.update(interactive=False)
                return
            yield from follow(run, True)

        def cancel_run(current):
            if current is not None:
                trainings.get(current).cancel()

        # After a run: Resume's list, and every generation tab's LoRA picker, which lists the new adapter.
        pickers = [
            (tab.model, tab.widgets["loras"]) for tab in ctx.task_tabs.values() if "loras" in tab.widgets
        ]

        def after_run(*model_ids):
            return [gr.update(choices=trainings.resumable())] + [
                gr.update(choices=ctx.lora_choices(model_id)) for model_id in model_ids
            ]

        refresh = (
            after_run,
            [model for model, _ in pickers],
            [resumable, *(picker for _, picker in pickers)],
        )
        start.click(train, inputs, outputs, api_visibility="private").then(*refresh, queue=False)
        resume.click(resume_run, [resumable, widgets["steps"]], outputs, api_visibility="private").then(
            *refresh, queue=False
        )

        def refresh_resumable():
            return gr.update(choices=trainings.resumable())

        cancel.click(cancel_run, run_id, None, queue=False, api_visibility="private")
        ctx.page_loads.append((refresh_resumable, resumable))


def samples(run) -> list[tuple[str, str]]:
    return [(path, f"step {step}") for step, path in run.samples]


def describe_report(report) -> str:
    buckets = ", ".join(f"{w}×{h}: {n}" for (h, w), n in sorted(report.buckets.items()))
    what = f"clip(s)** of {report.clip_frames}" if report.clip else "picture(s)**"
    lines = [f"**{len(report.items)} {what} in buckets {buckets}."]
    if report.skipped:
        lines.append(f"Skipped {len(report.skipped)}:")
        lines += [f"- {name}: {why}" for name, why in report.skipped]
    return "\n".join(lines)
