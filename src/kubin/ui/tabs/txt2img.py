"""Text to image tab: prompt and parameters in (or a prompts file, one job per line), a gallery of saved
images out."""

from kubin.ui.context import UIContext
from kubin.ui.task_tab import TaskTab, build_task_tab


def build(ctx: UIContext) -> TaskTab:
    return build_task_tab(ctx, "t2i", prompts_file=True, grid=True)
