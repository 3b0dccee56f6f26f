"""Text to video tab: prompt, size, length and frame rate in; mp4 videos (played in the gallery) out."""

from kubin.ui.context import UIContext
from kubin.ui.task_tab import TaskTab, build_task_tab


def build(ctx: UIContext) -> TaskTab:
    return build_task_tab(ctx, "t2v")
