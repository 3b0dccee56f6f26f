"""Inpaint tab: paint over the part to change (or upload a mask); the rest of the image is kept."""

import gradio as gr
from PIL import Image

from kubin.params import InpaintParams
from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.task_tab import TaskTab, build_task_tab

TASK = "inpaint"


def build(ctx: UIContext) -> TaskTab:
    specs = InpaintParams.field_specs()

    def inputs(values):
        editor = gr.ImageEditor(
            label="Image: paint over what to repaint",
            type="pil",
            image_mode="RGBA",
            sources=["upload", "clipboard"],
            brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
            layers=False,
            transforms=(),
            height=420,
            elem_id=f"{TASK}-editor",
        )
        ui.pass_unreadable_uploads_on(editor, unreadable_background)
        with gr.Accordion("…or upload a mask (white = repaint)", open=False):
            mask = ui.image_input("Mask", f"{TASK}-mask", height=200)
        return {"editor": editor, "mask": mask}

    def options(values):
        with gr.Row():
            invert = gr.Checkbox(value=values["invert_mask"], label=specs["invert_mask"].label,
                                 info=specs["invert_mask"].help, elem_id=f"{TASK}-invert-mask")  # fmt: skip
            blur = ui.slider(specs["mask_blur"], values["mask_blur"], elem_id=f"{TASK}-mask-blur")
        return {"invert_mask": invert, "mask_blur": blur}

    tab = build_task_tab(ctx, TASK, inputs, options, to_params=editor_to_params, folder=True)
    tab.receive_image = tab.widgets["editor"]
    tab.receive_value = lambda path: {"background": path, "layers": [], "composite": path}
    return tab


def unreadable_background(payload) -> dict | None:
    """The editor's value when its background is not a readable image: just that file's path."""
    path = getattr(getattr(payload, "background", None), "path", None)
    return {"background": str(path), "layers": [], "composite": None} if path else None


def editor_to_params(values: dict) -> dict:
    """The editor's background is the init image; its painted strokes are the mask, unless one is uploaded."""
    editor = values.pop("editor") or {}
    background = editor.get("background")
    if isinstance(background, str):  # not readable (see unreadable_background): the engine says so
        values["init_image"] = background
        values["mask"] = values.get("mask") or ""
        return values
    values["init_image"] = ui.save_upload(background) if background is not None else ""
    if not values.get("mask"):
        values["mask"] = ui.save_upload(strokes_mask(editor)) if background is not None else ""
    return values


def strokes_mask(editor: dict) -> Image.Image:
    """White wherever any layer has paint, black elsewhere, at the background's size."""
    background = editor["background"]
    mask = Image.new("L", background.size, 0)
    for layer in editor.get("layers") or []:
        if layer is None:
            continue
        alpha = layer.convert("RGBA").getchannel("A")
        if alpha.size != background.size:
            alpha = alpha.resize(background.size)
        mask.paste(255, mask=alpha.point(lambda a: 255 if a > 0 else 0))
    return mask
