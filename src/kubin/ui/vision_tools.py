"""The tool-model buttons of the generation tabs: "Estimate depth" in the ControlNet box, "Describe" under
an input image, "Enhance prompt" under the prompt. Each runs its tool model as an engine job
(kubin.tools.jobs), so it waits for a running generation instead of sharing the device with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from kubin.errors import KubinError
from kubin.params import FieldSpec
from kubin.ui import components as ui
from kubin.ui.context import UIContext


def depth_box(ctx: UIContext, task: str, fs: FieldSpec, value: str) -> dict[str, Any]:
    """The ControlNet box's widgets: the hint (a depth map or any photo), how it becomes a depth map, and
    the Estimate depth button that shows the map in place of the photo (to keep, or replace)."""
    gr.Markdown(
        "A depth map (white = near) or any photo: a photo becomes a depth map made by the depth model "
        f"(`{ctx.engine.tool_models.depth}`). Only models with ControlNet use it (Kandinsky 2.2)."
    )
    hint = ui.image_input("Depth map or photo", f"{task}-hint-image", height=200)
    with gr.Row(equal_height=False, elem_id=f"{task}-estimate-depth-row"):
        estimate = gr.Radio(list(fs.choices), value=value, label=fs.label, info="auto: when the hint is not grey",
                            elem_id=f"{task}-estimate-depth", min_width=200, scale=3)  # fmt: skip
        button = gr.Button(
            "Estimate depth", size="sm", elem_id=f"{task}-estimate-depth-run", scale=1, min_width=120
        )
    status = gr.Markdown(elem_id=f"{task}-estimate-depth-status")

    def run(path: str | None):
        from kubin.images import open_image
        from kubin.outputs import save_tool_output
        from kubin.tools.jobs import estimate_depth

        try:
            photo = open_image(path, "The ControlNet hint")
            depth = estimate_depth(ctx.engine, photo.convert("RGB"))
        except KubinError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        model = ctx.engine.tool_models.depth
        saved = save_tool_output(depth, Path(ctx.engine.output_dir), "depth", model, {}, {})
        return str(saved), (
            f"Depth map from `{model}`, {depth.width}x{depth.height} (saved as {saved.name}); keep it or replace it."
        )

    button.click(run, hint, [hint, status], api_name=f"{task}_estimate_depth", concurrency_limit=1,
                 concurrency_id="tools")  # fmt: skip
    return {"hint_image": hint, "estimate_depth": estimate}
