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


def describable_image(widgets: dict[str, Any]) -> Any:
    """The input image a tab's Describe describes: its init image, or the inpaint editor's picture."""
    for name, kind in (("init_image", gr.Image), ("editor", gr.ImageEditor)):
        if isinstance(widgets.get(name), kind):
            return widgets[name]
    return None


def describe_button(key: str, visible: bool = True) -> tuple[gr.Button, gr.Dropdown, gr.Row]:
    """The "Describe" button under an input image, what it writes (a caption or tags: kubin.tools.caption's
    MODES) and their row; `key` names them (`{key}-describe`, `{key}-describe-mode`; a task tab's is its
    task). Wired to a prompt by `wire_describe`."""
    from kubin.tools.caption import MODES

    with gr.Row(equal_height=True, elem_id=f"{key}-describe-row", visible=visible) as row:
        button = gr.Button("Describe", size="sm", elem_id=f"{key}-describe", min_width=100, scale=1)
        mode = gr.Dropdown(list(MODES), value="detailed", show_label=False, container=False, min_width=120,
                           scale=1, elem_id=f"{key}-describe-mode")  # fmt: skip
    return button, mode, row


def wire_describe(
    ctx: UIContext, key: str, describe: tuple, image: Any, prompt: Any, model: Any, owner: Any
) -> Any:
    """Describe puts a description of the image (a caption or tags) into the prompt: from the selected model's
    own encoder when it has one (Kandinsky 5 and 6), else from the caption model. `prompt` is a textbox, or a
    list of them (Mix's prompts): the first empty one gets it, else the last. Returns the click event (its API
    name: `{key}_describe`, dashes as underscores)."""
    targets = prompt if isinstance(prompt, list) else [prompt]

    def run(value: Any, model_id: str, mode: str, owner_id: str, *current: str) -> Any:
        from kubin.images import open_image
        from kubin.tools.jobs import caption_image, caption_model_for

        if isinstance(value, dict):  # an image editor: its picture, without the painted strokes
            value = value.get("background")
        try:
            picture = open_image(value, "The image").convert("RGB")
            captioner = caption_model_for(ctx.engine, model_id)
            text = caption_image(ctx.engine, picture, captioner, mode=mode or "detailed", owner=owner_id)
        except KubinError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        if len(targets) == 1:
            return text
        slot = next((i for i, t in enumerate(current) if not (t or "").strip()), len(current) - 1)
        return [text if i == slot else gr.update() for i in range(len(targets))]

    button, mode = describe[:2]
    several = targets if len(targets) > 1 else []
    return button.click(run, [image, model, mode, owner, *several], several or prompt,
                        api_name=f"{key.replace('-', '_')}_describe", concurrency_limit=1,
                        concurrency_id="tools")  # fmt: skip


def enhance_button(task: str) -> gr.Button:
    return gr.Button("Enhance prompt", size="sm", elem_id=f"{task}-enhance", min_width=120)


def wire_enhance(ctx: UIContext, task: str, button: gr.Button, prompt: Any, model: Any, owner: Any) -> None:
    """Enhance prompt rewrites the prompt in detail for the selected model (by its own encoder when it has one:
    Kandinsky 5 and 6), for the user to edit; the next Generate of this tab records it in the outputs'
    metadata (see `enhancement_meta`)."""

    def run(text: str, model_id: str, owner_id: str) -> str:
        from kubin.tools.jobs import enhance_model_for, enhance_prompt

        try:
            enhanced = enhance_prompt(ctx.engine, text or "", model_id, owner=owner_id)
        except KubinError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        ctx.remember_enhancement(owner_id, (text, enhanced, enhance_model_for(ctx.engine, model_id)))
        return enhanced

    button.click(run, [prompt, model, owner], prompt, api_name=f"{task}_enhance", concurrency_limit=1,
                 concurrency_id="tools")  # fmt: skip


def enhancement_meta(ctx: UIContext, owner_id: str, prompt: str) -> dict[str, Any]:
    """The metadata of this tab's last prompt expansion, while the prompt still comes from it (the expanded
    text, as it is or edited; not once the original prompt is back or the box was cleared)."""
    from kubin.tools.jobs import enhancement_meta as meta

    remembered = ctx.enhancements.get(owner_id)
    if remembered is None:
        return {}
    original, enhanced, model = remembered
    if not prompt.strip() or prompt.strip() == original.strip():
        return {}
    return meta(original, enhanced, model, prompt)
