"""Image to video tab: the init image is the first frame; the prompt says what happens next."""

from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.task_tab import TaskTab, build_task_tab

TASK = "i2v"


def build(ctx: UIContext) -> TaskTab:
    def inputs(values):
        return {"init_image": ui.image_input("First frame", f"{TASK}-init-image", height=320)}

    tab = build_task_tab(ctx, TASK, inputs, folder=True)
    tab.receive_image = tab.widgets["init_image"]
    # An uploaded image sets the size to 0 x 0: the model's resolution nearest the image's aspect ratio.
    tab.widgets["init_image"].upload(lambda _: (0, 0), tab.widgets["init_image"],
                                     [tab.widgets["width"], tab.widgets["height"]], queue=False, api_visibility="private")  # fmt: skip
    return tab
