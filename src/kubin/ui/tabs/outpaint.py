"""Outpaint tab: grow the canvas on chosen sides (or to an aspect ratio) and paint the new area."""

import gradio as gr

from kubin.params import ASPECT_RATIOS, OutpaintParams
from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.task_tab import TaskTab, build_task_tab

TASK = "outpaint"
SIDES = ["left", "top", "right", "bottom"]


def build(ctx: UIContext) -> TaskTab:
    specs = OutpaintParams.field_specs()
    expand = specs["expand"]

    def inputs(values):
        return {"init_image": ui.image_input("Image to extend", f"{TASK}-init-image", height=320)}

    def options(values):
        widgets = {}
        # Two a row, 200 px each: narrower, the slider's "1024" end label is cut off. Created in the
        # order of `expand` (left, top, right, bottom), which is also their order in the API.
        for pair in (SIDES[:2], SIDES[2:]):
            with gr.Row():
                for side in pair:
                    widgets[f"expand_{side}"] = gr.Slider(
                        0, 1024, value=values["expand"][SIDES.index(side)], step=expand.step,
                        label=f"Add {side} (px)", min_width=200, elem_id=f"{TASK}-expand-{side}",
                    )  # fmt: skip
        with gr.Row():
            widgets["aspect"] = gr.Dropdown(
                [("none: use the pixels above", ""), *[(a, a) for a in ASPECT_RATIOS]], value="",
                label=specs["aspect"].label, info=specs["aspect"].help, elem_id=f"{TASK}-aspect",
            )  # fmt: skip
            widgets["feather"] = ui.slider(specs["feather"], values["feather"], elem_id=f"{TASK}-feather")
        return widgets

    def to_params(values: dict) -> dict:
        values["expand"] = [int(values.pop(f"expand_{side}") or 0) for side in SIDES]
        return values

    tab = build_task_tab(ctx, TASK, inputs, options, to_params=to_params, folder=True)
    tab.receive_image = tab.widgets["init_image"]
    return tab
