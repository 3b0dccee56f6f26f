"""A tab's "Batch from folder": every image of a folder (on the machine the server runs on) through the tab's
task with the tab's values, one job each, the outputs keeping the images' names in a new folder; files
that are not readable images are skipped and listed. The gallery gathers the outputs as they come."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from kubin.batch import queue_folder
from kubin.errors import KubinError
from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.job_view import GENERATE_WAITERS, follow_jobs


@dataclass
class FolderBox:
    folder: gr.Textbox
    masks: gr.Textbox | None
    run: gr.Button
    report: gr.Markdown


def folder_box(task: str, masks: bool = False) -> FolderBox:
    """The panel, closed, below the tab's options."""
    with gr.Accordion("Batch from folder", open=False, elem_id=f"{task}-folder-box"):
        gr.Markdown(
            "Runs every image of a folder on this server's machine with this tab's values (the image above "
            "is not used), one job each. The outputs keep the images' names in a new folder beside today's "
            "outputs; files that are not images are skipped and listed."
            + (
                " Each image takes the mask with its name from the masks folder, or the mask above when "
                "no masks folder is given."
                if masks
                else ""
            )  # fmt: skip
        )
        folder = gr.Textbox(
            label="Input folder", placeholder="/path/to/images", elem_id=f"{task}-folder-input"
        )
        mask_box = None
        if masks:
            mask_box = gr.Textbox(
                label="Masks folder (white = repaint)", placeholder="/path/to/masks",
                elem_id=f"{task}-folder-masks",
            )  # fmt: skip
        run = gr.Button("Run folder", elem_id=f"{task}-folder-run")
        report = gr.Markdown(elem_id=f"{task}-folder-report")
    return FolderBox(folder, mask_box, run, report)


def wire_folder_batch(
    ctx: UIContext,
    task: str,
    box: FolderBox,
    owner: Any,
    model: Any,
    names: list[str],
    components: list[Any],
    event_outputs: list[Any],
    to_params: Callable[[dict[str, Any]], dict[str, Any]],
    extension_keys: dict[str, tuple[str, str]],
    cancel: tuple[Any, Any],
) -> None:
    """Run folder queues one job per image (all or none), lists the skipped files, and follows the jobs."""
    inputs = [box.folder, *([box.masks] if box.masks is not None else [])]

    def run_folder(owner_id, model_id, folder, *rest, progress=gr.Progress()):  # noqa: B008
        masks = rest[0] if box.masks is not None else None
        widget_values = rest[1:] if box.masks is not None else rest
        values = dict(zip(names, widget_values, strict=True))
        extension_values: dict[str, dict[str, Any]] = {}
        for name, (ext_name, control) in extension_keys.items():
            extension_values.setdefault(ext_name, {})[control] = values.pop(name)
        try:
            base = {k: v for k, v in to_params(values).items() if v is not None}
            plan, queued = queue_folder(
                ctx.engine, task, model_id, base, folder, masks or None, owner_id, extension_values
            )
        except KubinError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        skipped = "".join(f"\n- {name}: {why}" for name, why in plan.skipped)
        report = f"**{len(queued)} image(s)** of `{plan.folder}` → `{plan.output}`"
        if skipped:
            report += f"\n\n⚠ Skipped {len(plan.skipped)} file(s):{skipped}"
        gr.Info(f"{len(queued)} image(s) queued" + (f", {len(plan.skipped)} skipped" if skipped else ""))
        yield *(gr.update() for _ in event_outputs), report  # what runs and what was skipped, at once
        failures: list[str] = []
        count = len(queued)
        rendered = follow_jobs(
            ctx,
            ((f"**Folder: image {n} of {count}** ({item.source.name})", item.source.name, handle)
             for n, (item, handle) in enumerate(queued, start=1)),
            progress, failures,
        )  # fmt: skip
        for update in rendered:
            yield *update, report
        if failures:
            raise gr.Error("\n".join(failures), print_exception=False)

    cancel_btn, cancel_status = cancel  # the tab's Cancel stops the folder's jobs (they are the tab's)
    box.run.click(
        lambda: ("", gr.update(interactive=True)), None, [cancel_status, cancel_btn],
        queue=False, show_progress="hidden", api_visibility="private",
    )  # fmt: skip
    box.run.click(
        run_folder, [owner, model, *inputs, *components], [*event_outputs, box.report],
        api_visibility="private", concurrency_limit=GENERATE_WAITERS, concurrency_id="generate",
    ).then(
        lambda owner_id: ui.cancel_state(ctx, owner_id), owner, cancel_btn,
        queue=False, show_progress="hidden", api_visibility="private",
    )  # fmt: skip
