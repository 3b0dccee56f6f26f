"""Video upscale tab: any video in (uploaded, or sent from a video tab with "→ Upscale video"), the same video
2, 2.25 or 4 times larger out, with its frame rate and sound, through a video super-resolution model (the
vsr task). Its API endpoint is /vsr."""

from __future__ import annotations

import uuid
from typing import Any

import gradio as gr

from kubin.engine import Job
from kubin.errors import KubinError
from kubin.params import TASK_LABELS, VideoUpscaleParams
from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.job_view import GENERATE_WAITERS, follow_job, outputs
from kubin.ui.task_tab import TaskTab

TASK = "vsr"


def build(ctx: UIContext) -> TaskTab:
    specs = VideoUpscaleParams.field_specs()
    with gr.Tab(TASK_LABELS[TASK], id=TASK, elem_id=f"tab-{TASK}"):
        model = ui.model_picker(ctx, TASK, f"{TASK}-model")
        values = ctx.defaults(model.value, VideoUpscaleParams)
        owner = gr.State(lambda: uuid.uuid4().hex)
        ctx.owners.append((owner, TASK))
        results, selected = gr.State([]), gr.State(0)
        widgets: dict[str, Any] = {}
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                widgets["init_video"] = gr.Video(
                    label="Video to upscale (its sound is kept)", sources=["upload"], height=280,
                    elem_id=f"{TASK}-init-video",
                )  # fmt: skip
                with gr.Row():
                    generate_btn = ui.generate_button(f"{TASK}-generate")
                    cancel_btn = ui.cancel_button(f"{TASK}-cancel")
                ctx.cancel_buttons.append((cancel_btn, TASK))
                cancel_status = gr.Markdown(elem_id=f"{TASK}-cancel-status")
                fs = specs["scale"]
                widgets["scale"] = gr.Radio(
                    list(fs.choices),
                    value=values["scale"],
                    label=fs.label,
                    info=fs.help,
                    elem_id=f"{TASK}-scale",
                )
                with gr.Row():
                    for name in ("steps", "tile_overlap"):
                        widgets[name] = ui.slider(specs[name], values[name], min_width=160,
                                                  elem_id=f"{TASK}-{name.replace('_', '-')}")  # fmt: skip
                widgets["seed"], reuse_seed = ui.seed_row(specs["seed"], values["seed"], TASK)
            with gr.Column(scale=1, min_width=300):
                gallery = ui.result_gallery(f"{TASK}-gallery", video=True)
                info = gr.Markdown(elem_id=f"{TASK}-info")
                with gr.Accordion("Generation info", open=False):
                    details = gr.JSON(label="Outputs and parameters", elem_id=f"{TASK}-details")
    last_seed = gr.State(-1)
    names = list(widgets)

    def upscale(owner_id, model_id, *widget_values, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        params = dict(zip(names, widget_values, strict=True))
        try:
            if not params["init_video"]:
                raise KubinError("Upload a video to upscale first (or send one from a video tab).")
            handle = ctx.engine.submit(Job(TASK, model_id, params, owner=owner_id))
        except KubinError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        yield from follow_job(ctx, handle, progress, outputs)

    generate_btn.click(lambda: "", None, cancel_status, queue=False, show_progress="hidden",
                       api_visibility="private")  # fmt: skip
    generate_btn.click(
        upscale, [owner, model, *(widgets[n] for n in names)],
        [gallery, info, details, last_seed, results, selected],
        api_name=TASK, concurrency_limit=GENERATE_WAITERS, concurrency_id="generate",
    )  # fmt: skip

    def cancel(owner_id: str) -> str:
        n = ctx.engine.cancel_owner(owner_id)
        return "Cancel requested: the job stops after the step under way." if n else "Nothing to cancel."

    cancel_btn.click(cancel, owner, cancel_status, api_name=f"{TASK}_cancel", queue=False)
    reuse_seed.click(lambda s: s, last_seed, widgets["seed"], queue=False, show_progress="hidden",
                     api_visibility="private")  # fmt: skip

    def on_select(evt: gr.SelectData) -> int:
        return evt.index

    gallery.select(on_select, None, selected, queue=False, show_progress="hidden", api_visibility="private")
    return TaskTab(TASK, widgets, model, gallery, results, selected, receive_image=widgets["init_video"])
