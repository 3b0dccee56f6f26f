"""3D tab (Shap-E): a prompt or a picture of one object in; a mesh shown in a 3D viewer, its turntable
preview and .glb/.ply/.obj downloads out.

Text and image mode each have their own Generate button, so each task has its own API endpoint (`/t2mesh`,
`/i2mesh`) whose parameters are exactly that task's; the mode only shows one button and its input.
"""

import inspect
from typing import Any

import gradio as gr

from kubin.engine import Job, JobHandle
from kubin.errors import KubinError
from kubin.params import TASK_LABELS, Image2MeshParams, Text2MeshParams
from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.job_view import follow_job, job_report, new_owner
from kubin.ui.vision_tools import describe_button, wire_describe

TAB_ID = "mesh"
PARAMS = {"t2mesh": Text2MeshParams, "i2mesh": Image2MeshParams}
# The controls both modes share, in the order of the API endpoints' parameters (after the prompt or image).
SHARED_FIELDS = ["guidance_scale", "steps", "frame_size", "mesh_resolution", "seed", "batch_count"]


def build(ctx: UIContext) -> dict[str, Any]:
    """The 3D tab; returns its components by name (for tests and extensions)."""
    with gr.Tab("3D", id=TAB_ID, elem_id=f"tab-{TAB_ID}"):
        model = ui.model_picker(ctx, "t2mesh", f"{TAB_ID}-model")
        values = ctx.defaults(model.value, Text2MeshParams)
        specs = Text2MeshParams.field_specs()
        owner = gr.State(new_owner)  # what Cancel cancels: per session, then per browser once the page loads
        ctx.owners.append((owner, TAB_ID))
        last_seed = gr.State(-1)
        widgets: dict[str, Any] = {}
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                mode = gr.Radio(
                    [(TASK_LABELS["t2mesh"], "t2mesh"), (TASK_LABELS["i2mesh"], "i2mesh")],
                    value="t2mesh", label="Make a 3D object from", elem_id=f"{TAB_ID}-mode",
                )  # fmt: skip
                widgets["prompt"] = gr.Textbox(
                    value=values.get("prompt", ""), label="Prompt", info=ui.GENERATE_HINT, lines=2,
                    elem_id=f"{TAB_ID}-prompt",
                    placeholder="One object, e.g. a wooden chair, a birthday cake, a red sports car",
                )  # fmt: skip
                widgets["init_image"] = ui.image_input(
                    "Picture of the object", f"{TAB_ID}-init-image", height=260, visible=False
                )
                # Image to prompt: Describe writes what the picture shows as the prompt and turns to text mode.
                describe = describe_button(TAB_ID, visible=False)
                with gr.Row():
                    generate = {
                        task: ui.generate_button(f"{TAB_ID}-generate-{task}", visible=task == "t2mesh")
                        for task in PARAMS
                    }
                    cancel_btn = ui.cancel_button(f"{TAB_ID}-cancel")
                ctx.cancel_buttons.append((cancel_btn, TAB_ID))
                cancel_status = gr.Markdown(elem_id=f"{TAB_ID}-cancel-status")
                with gr.Row():
                    for name in ("guidance_scale", "steps"):
                        widgets[name] = ui.slider(specs[name], values[name], min_width=160,
                                                  elem_id=f"{TAB_ID}-{name.replace('_', '-')}")  # fmt: skip
                with gr.Row():
                    for name in ("frame_size", "mesh_resolution"):
                        widgets[name] = ui.slider(specs[name], values[name], min_width=200,
                                                  elem_id=f"{TAB_ID}-{name.replace('_', '-')}")  # fmt: skip
                widgets["seed"], reuse_seed = ui.seed_row(specs["seed"], values["seed"], TAB_ID)
                widgets["batch_count"] = ui.slider(specs["batch_count"], values["batch_count"], min_width=160,
                                                   elem_id=f"{TAB_ID}-batch-count")  # fmt: skip
            with gr.Column(scale=1, min_width=300):
                viewer = gr.Model3D(
                    label="3D object", height=420, interactive=False, elem_id=f"{TAB_ID}-viewer",
                    elem_classes=["kubin-results"],  # brought into view on Generate (kubin.js)
                )  # fmt: skip
                # The job's .glb, for the viewer: Gradio 6's Model3D stays empty when a generator (which
                # follow_job is) updates it, so the generator fills this hidden file and a plain handler
                # then hands it to the viewer. It is also the API's first output (the mesh file).
                mesh_file = gr.File(visible=False, elem_id=f"{TAB_ID}-mesh-file")
                with gr.Row():
                    preview = gr.Image(label="Turntable preview", type="filepath", interactive=False, height=220,
                                       elem_id=f"{TAB_ID}-preview")  # fmt: skip
                    downloads = gr.File(label="Downloads (.glb, .ply, .obj)", file_count="multiple",
                                        interactive=False, elem_id=f"{TAB_ID}-downloads")  # fmt: skip
                info = gr.Markdown(elem_id=f"{TAB_ID}-info")
                with gr.Accordion("Generation info", open=False):
                    details = gr.JSON(label="Outputs and parameters", elem_id=f"{TAB_ID}-details")

    shared = [widgets[n] for n in SHARED_FIELDS]
    event_outputs = [mesh_file, preview, downloads, info, details, last_seed]

    def after_job(path: str | None, owner_id: str):
        return path, ui.cancel_state(ctx, owner_id)

    # Ctrl/Cmd+Enter in the prompt clicks Generate (kubin.js).
    for task, first in (("t2mesh", "prompt"), ("i2mesh", "init_image")):
        run = _generate_fn(ctx, task, [first, *SHARED_FIELDS])
        inputs = [owner, model, widgets[first], *shared]
        generate[task].click(lambda: ("", gr.update(interactive=True)), None, [cancel_status, cancel_btn],
                             queue=False, show_progress="hidden", api_visibility="private")  # fmt: skip
        generate[task].click(run, inputs, event_outputs, api_name=task, concurrency_limit=8,
                             concurrency_id="generate").then(
            after_job, [mesh_file, owner], [viewer, cancel_btn], queue=False, show_progress="hidden",
            api_visibility="private",
        )  # fmt: skip

    def cancel(owner_id: str) -> str:
        n = ctx.engine.cancel_owner(owner_id)
        return "Cancel requested: the job stops after the step under way." if n else "Nothing to cancel."

    cancel_btn.click(cancel, owner, cancel_status, api_name=f"{TAB_ID}_cancel", queue=False)
    wire_describe(ctx, TAB_ID, describe, widgets["init_image"], widgets["prompt"], model, owner).success(
        lambda: "t2mesh", None, mode, queue=False, show_progress="hidden", api_visibility="private"
    )
    reuse_seed.click(lambda s: s, last_seed, widgets["seed"], queue=False, show_progress="hidden",
                     api_visibility="private")  # fmt: skip

    defaulted = ["guidance_scale", "steps", "frame_size", "mesh_resolution"]

    def on_mode(task: str, model_id: str):
        """Show the chosen mode's input and button; the guidance follows the task's default (15 from text,
        3 from an image), the other settings stay as the user left them."""
        guidance = ctx.defaults(model_id, PARAMS[task])["guidance_scale"]
        return [
            gr.update(visible=task == "t2mesh"),
            gr.update(visible=task == "i2mesh"),
            gr.update(visible=task == "i2mesh"),
            *(gr.update(visible=t == task) for t in PARAMS),
            gr.update(value=guidance),
        ]

    def on_model(task: str, model_id: str):
        """A model brings its own recommended settings (the tiny one: small sizes and few steps)."""
        vals = ctx.defaults(model_id, PARAMS[task])
        return [gr.update(value=vals[n]) for n in defaulted]

    shown = [
        widgets["prompt"],
        widgets["init_image"],
        describe[2],
        *generate.values(),
        widgets["guidance_scale"],
    ]
    mode.change(on_mode, [mode, model], shown, queue=False, show_progress="hidden", api_visibility="private")
    model.change(on_model, [mode, model], [widgets[n] for n in defaulted], queue=False, show_progress="hidden",
                 api_visibility="private")  # fmt: skip
    return {
        "model": model,
        "mode": mode,
        **widgets,
        "viewer": viewer,
        "preview": preview,
        "downloads": downloads,
    }


def _generate_fn(ctx: UIContext, task: str, names: list[str]):
    """The event function of one task's Generate button, its API parameters named after the widgets."""

    def generate(owner_id, model_id, *widget_values, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        try:
            params = dict(zip(names, widget_values, strict=True))
            handle = ctx.engine.submit(Job(task, model_id, params, owner=owner_id))
        except KubinError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        yield from follow_job(ctx, handle, progress, outputs)

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    generate.__signature__ = inspect.Signature(
        [inspect.Parameter(n, positional) for n in ("owner_id", "model_id", *names)]
        + [inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=gr.Progress())]
    )
    generate.__name__ = f"generate_{task}"
    return generate


def outputs(handle: JobHandle):
    """The viewer shows the last object made; downloads list every file of every object of the job."""
    results = handle.results
    last = results[-1] if results else None
    lines = []
    if last is not None:
        lines.append(
            f"{last.meta.get('vertices')} vertices, {last.meta.get('faces')} faces · saved in `{last.path.parent}`"
        )
    info, details = job_report(
        handle,
        lambda r: (
            {"preview": str(r.preview) if r.preview else None}
            | {kind: str(p) for kind, p in r.files.items()}
            | {"vertices": r.meta.get("vertices"), "faces": r.meta.get("faces")}
        ),
        lines,
    )
    files = [str(p) for r in results for p in r.files.values()]
    return (
        str(last.path) if last else None,
        str(last.preview) if last and last.preview else None,
        files or None,
        info,
        details,
        handle.seed,
    )
