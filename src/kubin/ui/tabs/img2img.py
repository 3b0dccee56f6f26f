"""Image to image tab: an init image repainted toward the prompt, by `strength`."""

from kubin.params import Image2ImageParams
from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.task_tab import TaskTab, build_task_tab

TASK = "i2i"


def build(ctx: UIContext) -> TaskTab:
    specs = Image2ImageParams.field_specs()

    def inputs(values):
        return {"init_image": ui.image_input("Init image", f"{TASK}-init-image", height=320)}

    def options(values):
        return {"strength": ui.slider(specs["strength"], values["strength"], elem_id=f"{TASK}-strength")}

    tab = build_task_tab(ctx, TASK, inputs, options, prompts_file=True, grid=True, folder=True)
    tab.receive_image = tab.widgets["init_image"]
    # An uploaded image sets the size to its own (0 = keep the init image's size).
    tab.widgets["init_image"].upload(lambda _: (0, 0), tab.widgets["init_image"],
                                     [tab.widgets["width"], tab.widgets["height"]], queue=False, api_visibility="private")  # fmt: skip
    return tab
