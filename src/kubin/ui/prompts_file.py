"""A tab's "Prompts from file": a text or CSV file queues one job per line, each line's values over the
tab's own; the gallery gathers every job's outputs as they come."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from kubin.engine import Job, JobHandle
from kubin.errors import KubinError
from kubin.prompts import read_prompts_file
from kubin.ui.context import UIContext
from kubin.ui.job_view import GENERATE_WAITERS, caption, follow_job, outputs


def prompts_file_box(task: str) -> gr.File:
    """The upload, in a closed panel below the tab's options."""
    with gr.Accordion("Prompts from file", open=False, elem_id=f"{task}-prompts-file-box"):
        gr.Markdown(
            "One job per line: a **.txt** file of prompts (blank lines and `#` comments skipped), or a "
            "**.csv** file whose first row names parameters (`prompt,negative_prompt,seed,steps,...`). "
            "What a line leaves out comes from this tab. Dropping a file queues its jobs."
        )
        return gr.File(
            label="Prompts file (.txt or .csv)",
            file_types=[".txt", ".csv"],
            type="filepath",
            elem_id=f"{task}-prompts-file",
        )


def wire_prompts_file(
    ctx: UIContext,
    task: str,
    file_box: gr.File,
    owner: Any,
    model: Any,
    names: list[str],
    components: list[Any],
    event_outputs: list[Any],
    to_params: Callable[[dict[str, Any]], dict[str, Any]],
    extension_keys: dict[str, tuple[str, str]],
) -> None:
    """An upload queues the file's jobs with the tab's values under each line's, then shows them."""

    def queue_file(path, owner_id, model_id, *widget_values, progress=gr.Progress()):  # noqa: B008
        if not path:
            return
        values = dict(zip(names, widget_values, strict=True))
        extension_values: dict[str, dict[str, Any]] = {}
        for name, (ext_name, control) in extension_keys.items():
            extension_values.setdefault(ext_name, {})[control] = values.pop(name)
        base = {k: v for k, v in to_params(values).items() if v is not None}
        try:
            lines = read_prompts_file(path, task, base)  # every line checked before any job is queued
        except KubinError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        handles: list[tuple[int, JobHandle]] = []
        for line in lines:
            job = Job(task, model_id, base | line.params, owner=owner_id, extension_values=extension_values)
            try:
                handles.append((line.line, ctx.engine.submit(job)))
            except KubinError as exc:
                for _, queued in handles:  # nothing of a file half queued
                    ctx.engine.cancel(queued)
                raise gr.Error(f"Line {line.line}: {exc}", print_exception=False) from None
        yield from follow_jobs(ctx, handles, progress)

    file_box.upload(
        queue_file, [file_box, owner, model, *components], event_outputs,
        api_visibility="private", concurrency_limit=GENERATE_WAITERS, concurrency_id="generate",
    )  # fmt: skip


def follow_jobs(ctx: UIContext, handles: list[tuple[int, JobHandle]], progress: gr.Progress):
    """Follow the jobs one after another: the gallery shows every output so far, the info which line runs;
    a failed line is reported at the end, the others still run."""
    done: list = []  # gallery items of the jobs followed so far
    failures: list[str] = []
    for number, (line, handle) in enumerate(handles, start=1):

        def render(h: JobHandle, number=number, line=line, done=done):
            gallery, info, details, seed, _, _ = outputs(h)
            shown = done + gallery
            head = f"**Prompts file: job {number} of {len(handles)}** (line {line}) · {len(shown)} image(s) so far"
            return shown, f"{head}\n\n{info}", details, seed, [path for path, _ in shown], 0

        try:
            yield from follow_job(ctx, handle, progress, render)
        except gr.Error as exc:
            failures.append(f"Line {line}: {exc.message}")
        done = done + [(str(r.path), caption(r)) for r in handle.results]
    if failures:
        raise gr.Error("\n".join(failures), print_exception=False)
