"""Mix tab: blend up to four images and two prompts by weight, then paint the blend. Describe under an image
writes what it shows into a prompt slot."""

import gradio as gr

from kubin.params import MixParams
from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.task_tab import TaskTab, build_task_tab
from kubin.ui.vision_tools import describe_button, wire_describe

TASK = "mix"
IMAGE_SLOTS = 4
PROMPT_SLOTS = 2


def build(ctx: UIContext) -> TaskTab:
    weight = MixParams.field_specs()["weights"]

    def weight_slider(i: int, elem: str):
        # 200 px: narrower, the slider's "-10" and "10" end labels are cut off.
        return gr.Slider(weight.minimum, weight.maximum, value=1.0, step=weight.step, label="Weight",
                         min_width=200, elem_id=elem)  # fmt: skip

    describe = {}  # slot -> its Describe button, mode and row (kubin.ui.vision_tools)

    def inputs(values):
        widgets = {}
        gr.Markdown("Give 2 or more images and/or prompts; weights are normalised to sum 1.")
        # Two slots a row (one on a narrow screen): four in one row wrap 3 + 1 in a half-width column.
        for first in range(1, IMAGE_SLOTS + 1, 2):
            with gr.Row():
                for i in (first, first + 1):
                    with gr.Column(min_width=200):
                        widgets[f"image_{i}"] = ui.image_input(f"Image {i}", f"{TASK}-image-{i}", height=160)
                        describe[i] = describe_button(f"{TASK}-image-{i}")
                        widgets[f"image_weight_{i}"] = weight_slider(i, f"{TASK}-image-weight-{i}")
        for i in range(1, PROMPT_SLOTS + 1):
            with gr.Row():
                widgets[f"prompt_{i}"] = gr.Textbox(label=f"Prompt {i}", lines=1, elem_id=f"{TASK}-prompt-{i}",
                                                    scale=3, min_width=200)  # fmt: skip
                widgets[f"prompt_weight_{i}"] = weight_slider(i, f"{TASK}-prompt-weight-{i}")
        return widgets

    tab = build_task_tab(ctx, TASK, inputs, to_params=slots_to_params, has_prompt=False)
    # Describe under an image writes its caption into the first empty prompt (else the last).
    prompts = [tab.widgets[f"prompt_{i}"] for i in range(1, PROMPT_SLOTS + 1)]
    for i, parts in describe.items():
        wire_describe(
            ctx, f"{TASK}-image-{i}", parts, tab.widgets[f"image_{i}"], prompts, tab.model, tab.owner
        )
    tab.receive_image = tab.widgets["image_1"]
    return tab


def slots_to_params(values: dict) -> dict:
    """Filled slots only, images first, each with its weight, as MixParams lists."""
    images, prompts, weights = [], [], []
    for i in range(1, IMAGE_SLOTS + 1):
        image, w = values.pop(f"image_{i}"), values.pop(f"image_weight_{i}")
        if image:
            images.append(image)
            weights.append(w)
    prompt_weights = []
    for i in range(1, PROMPT_SLOTS + 1):
        prompt, w = values.pop(f"prompt_{i}"), values.pop(f"prompt_weight_{i}")
        if prompt and prompt.strip():
            prompts.append(prompt)
            prompt_weights.append(w)
    return {**values, "images": images, "prompts": prompts, "weights": weights + prompt_weights}
