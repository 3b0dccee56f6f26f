"""A tab's "Batch from folder": every image of a folder (on the machine the server runs on) through the tab's
task with the tab's values, one job each, the outputs keeping the images' names in a new folder; files
that are not readable images are skipped and listed. The gallery gathers the outputs as they come."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from kubin.batch import queue_folder
from kubin.engine import CANCELLED, FAILED
from kubin.errors import KubinError
from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.job_view import GENERATE_WAITERS, follow_jobs, new_owner


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


def tool_folder_panel(
    ctx: UIContext,
    key: str,
    title: str,
    task: str,
    inputs: list[Any],
    start: Callable[..., tuple[Callable, Callable]],
) -> None:
    """A tool tab's "Whole folder" box: every image of a folder through the tool with the tab's choices
    (`inputs`: `start(*their values)` gives the tool's `work(tool, image)` and `save(image, item, name)`),
    one tool job in the queue, the outputs shown as they are saved, Cancel between images."""
    from kubin.batch import tool_over_folder

    with gr.Accordion("Whole folder", open=False, elem_id=f"{key}-folder-box"):
        gr.Markdown(
            f"{title} every image of a folder on this server's machine with the choices above. The results "
            "keep the images' names in a new folder beside today's outputs; files that are not images are "
            "skipped and listed."
        )
        folder = gr.Textbox(
            label="Input folder", placeholder="/path/to/images", elem_id=f"{key}-folder-input"
        )
        with gr.Row():
            run = gr.Button("Run folder", variant="primary", elem_id=f"{key}-folder-run")
            stop = gr.Button("Cancel", interactive=False, elem_id=f"{key}-folder-cancel")
        report = gr.Markdown(elem_id=f"{key}-folder-report")
        gallery = gr.Gallery(
            label="Results", columns=4, height=260, object_fit="contain", elem_id=f"{key}-folder-gallery"
        )
    owner = gr.State(new_owner)
    ctx.owners.append((owner, f"{key}-folder"))
    ctx.cancel_buttons.append((stop, f"{key}-folder"))

    def lines(run_state, handle) -> str:
        plan = run_state.plan
        text = (
            f"**{len(run_state.saved)} of {len(plan.items)} image(s)** of `{plan.folder}` → `{plan.output}`"
        )
        problems = [*plan.skipped, *run_state.failed]
        if problems:
            text += f"\n\n⚠ Skipped {len(problems)} file(s):" + "".join(
                f"\n- {n}: {why}" for n, why in problems
            )
        if handle.state == CANCELLED:
            text += "\n\n⚠ Cancelled: the images done are saved."
        return text

    def on_run(owner_id, folder_path, *values, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        try:
            work, save = start(*values)
            handle, run_state = tool_over_folder(ctx.engine, title, task, folder_path, work, save, owner_id)
        except KubinError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        shown = -1
        while True:
            finished = handle.wait(0.5)
            count = len(plan_items := run_state.plan.items)
            position = ctx.engine.position(handle)
            if position:
                progress(0, desc=f"Queued: {position - 1} job(s) ahead")
            else:
                progress(
                    len(run_state.saved) / max(count, 1),
                    desc=f"{len(run_state.saved)}/{len(plan_items)} images",
                )
            if len(run_state.saved) != shown or finished:
                shown = len(run_state.saved)
                yield [(str(p), item.source.name) for item, p in run_state.saved], lines(run_state, handle)
            if finished:
                break
        if handle.state == FAILED and handle.error is not None:
            raise gr.Error(str(handle.error), print_exception=False)

    run.click(lambda: gr.update(interactive=True), None, stop, queue=False, api_visibility="private")
    run.click(on_run, [owner, folder, *inputs], [gallery, report], api_visibility="private").then(
        lambda owner_id: ui.cancel_state(ctx, owner_id), owner, stop, queue=False, api_visibility="private"
    )
    stop.click(lambda owner_id: ctx.engine.cancel_owner(owner_id) and None, owner, None, queue=False,
               api_visibility="private")  # fmt: skip
