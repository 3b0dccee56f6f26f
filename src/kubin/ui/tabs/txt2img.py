"""Text to image tab: prompt and parameters in, a gallery of saved images out."""

import gradio as gr

from kubin.engine import CANCELLED, FAILED, Job, JobHandle
from kubin.errors import KubinError
from kubin.params import Text2ImageParams
from kubin.ui import components as ui
from kubin.ui.context import UIContext

TASK = "t2i"


def build(ctx: UIContext) -> None:
    specs = Text2ImageParams.field_specs()
    with gr.Tab("Text to image", id=TASK, elem_id="tab-t2i"):
        model = ui.model_picker(ctx, TASK, "t2i-model")
        values = ctx.defaults(model.value, Text2ImageParams)
        last_seed = gr.State(-1)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                prompt, negative = ui.prompt_boxes(values)
                with gr.Row():
                    generate_btn = gr.Button(
                        "Generate", variant="primary", elem_id="t2i-generate", min_width=120
                    )
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="t2i-cancel", min_width=80)
                # Not `info`: the job's last message and this reply can arrive in either order, and
                # "Cancelling…" arriving last used to hide "Cancelled after n of m image(s)".
                cancel_status = gr.Markdown(elem_id="t2i-cancel-status")
                aspect, width, height = ui.size_picker(specs, values)
                with gr.Row():
                    steps = ui.slider(specs["steps"], values["steps"], min_width=160)
                    guidance = ui.slider(specs["guidance_scale"], values["guidance_scale"], min_width=160)
                with gr.Row():
                    prior_steps = ui.slider(specs["prior_steps"], values["prior_steps"], min_width=160)
                    prior_guidance = ui.slider(
                        specs["prior_guidance_scale"], values["prior_guidance_scale"], min_width=160
                    )
                seed, reuse_seed = ui.seed_row(specs["seed"], values["seed"])
                with gr.Row():
                    batch_count = ui.slider(specs["batch_count"], values["batch_count"], min_width=160)
                    batch_size = ui.slider(specs["batch_size"], values["batch_size"], min_width=160)
                scheduler = gr.Dropdown(
                    ui.scheduler_choices(ctx, model.value),
                    value="",
                    label="Scheduler",
                    elem_id="t2i-scheduler",
                )
            with gr.Column(scale=1, min_width=300):
                gallery = ui.result_gallery("t2i-gallery")
                info = gr.Markdown(elem_id="t2i-info")
                with gr.Accordion("Generation info", open=False):
                    details = gr.JSON(label="Outputs and parameters", elem_id="t2i-details")

        widgets = [
            prompt,
            negative,
            width,
            height,
            steps,
            guidance,
            prior_steps,
            prior_guidance,
            seed,
            batch_count,
            batch_size,
            scheduler,
        ]

        def generate(
            model_id,
            prompt,
            negative_prompt,
            width,
            height,
            steps,
            guidance_scale,
            prior_steps,
            prior_guidance_scale,
            seed,
            batch_count,
            batch_size,
            scheduler,
            request: gr.Request,
            progress=gr.Progress(),  # noqa: B008 (Gradio injects progress through this default)
        ):
            params = {
                "prompt": prompt,
                "negative_prompt": negative_prompt,
                "width": width,
                "height": height,
                "steps": steps,
                "guidance_scale": guidance_scale,
                "prior_steps": prior_steps,
                "prior_guidance_scale": prior_guidance_scale,
                "seed": seed,
                "batch_count": batch_count,
                "batch_size": batch_size,
                "scheduler": scheduler,
            }
            owner = request.session_hash if request is not None else ""
            try:
                handle = ctx.engine.submit(Job(TASK, model_id, params, owner=owner))
            except KubinError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            shown = 0
            while not handle.wait(0.1):
                report_progress(ctx, handle, progress)
                if len(handle.results) > shown:
                    shown = len(handle.results)
                    yield outputs(handle)
            if handle.state == FAILED:
                if handle.results:
                    yield outputs(handle)
                raise gr.Error(str(handle.error), print_exception=False)
            if handle.state == CANCELLED:
                gr.Warning(str(handle.error))
            yield outputs(handle)

        for trigger in (generate_btn.click, prompt.submit):  # a new job clears the last cancel reply
            trigger(lambda: "", None, cancel_status, api_name=False, queue=False, show_progress="hidden")
        generate_btn.click(
            generate,
            [model, *widgets],
            [gallery, info, details, last_seed],
            api_name="txt2img",
            concurrency_limit=8,
            concurrency_id="generate",
        )
        prompt.submit(
            generate,
            [model, *widgets],
            [gallery, info, details, last_seed],
            api_name=False,
            concurrency_limit=8,
            concurrency_id="generate",
        )

        def cancel(request: gr.Request) -> str:
            n = ctx.engine.cancel_owner(request.session_hash) if request is not None else 0
            return "Cancel requested; the images finished so far are kept." if n else "Nothing to cancel."

        cancel_btn.click(cancel, None, cancel_status, api_name="t2i_cancel", queue=False)
        reuse_seed.click(lambda s: s, last_seed, seed, queue=False, show_progress="hidden")

        def on_model_change(model_id: str):
            vals = ctx.defaults(model_id, Text2ImageParams)
            return [
                gr.update(value=vals[n])
                for n in ("width", "height", "steps", "guidance_scale", "prior_steps", "prior_guidance_scale")
            ] + [gr.update(choices=ui.scheduler_choices(ctx, model_id), value="")]

        model.change(
            on_model_change,
            model,
            [width, height, steps, guidance, prior_steps, prior_guidance, scheduler],
            queue=False,
            show_progress="hidden",
        )


def report_progress(ctx: UIContext, handle: JobHandle, progress: gr.Progress) -> None:
    position = ctx.engine.position(handle)
    if position:
        progress(0, desc=f"Queued: {position - 1} job(s) ahead")
    elif handle.step == 0:
        progress(0, desc="Loading model…" if ctx.engine.manager.loaded_id is None else "Starting…")
    else:
        eta = handle.eta_seconds()
        desc = f"Step {handle.step}/{handle.total_steps}" + (f" · about {eta:.0f} s left" if eta else "")
        progress((handle.step, handle.total_steps), desc=desc, unit="steps")


def outputs(handle: JobHandle):
    results = handle.results
    gallery = [(str(r.path), f"seed {r.seed}") for r in results]
    seeds = ", ".join(str(r.seed) for r in results) or "—"
    lines = [f"**{len(results)} of {handle.params.image_count} image(s)** · seeds {seeds}"]
    if results:
        lines.append(f"Saved in `{results[0].path.parent}`")
    if handle.state == CANCELLED and handle.error:
        lines.append(f"⚠️ {handle.error}")
    # "file", not "path": Gradio would take dicts with a "path" key for files to upload.
    details = {
        "seed": handle.seed,
        "state": handle.state,
        "outputs": [
            {"file": str(r.path), "seed": r.seed, "width": r.width, "height": r.height} for r in results
        ],
        "params": handle.params.to_dict() | {"seed": handle.seed},
    }
    return gallery, "\n\n".join(lines), details, handle.seed
