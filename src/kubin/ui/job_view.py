"""How a submitted job shows in a tab: following its events until it ends (queue place, progress with the
stage and the time left, notices), and the report under its results. The generation tabs, the 3D tab and
the panels that queue several jobs (prompts file) share it."""

import queue
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import gradio as gr

from kubin.engine import CANCELLED, FAILED, JobHandle
from kubin.progress import Stage, TimeLeft
from kubin.ui.context import UIContext

# How many UI generate events may wait on the engine at once. The engine's queue sets the order; this
# only has to be high enough that Gradio never holds a UI job back while API jobs overtake it (each
# waiter is a thread of Gradio's pool of 40).
GENERATE_WAITERS = 32
QUEUE_REFRESH_S = 0.5  # how often a queued job's place in the queue is shown again
# The most often progress is sent to the page: a tiny model makes a hundred steps a second, and a message
# per step kept a busy browser seconds behind the job. A new stage is always shown at once.
PROGRESS_INTERVAL_S = 0.1
# The most often a panel that follows many jobs (a grid, a prompts file, a folder) sends its gallery: each
# render carries every image so far, and one per cell kept a browser re-drawing a 100-image gallery
# hundreds of times, too busy to take a click on Cancel. The last render is always sent.
GALLERY_INTERVAL_S = 1.0


def follow_job(ctx: UIContext, handle: JobHandle, progress: gr.Progress, render: Callable[[JobHandle], Any]):
    """Show a submitted job in a tab until it ends, driven by its events: the notices about its input,
    progress at each step, `render(handle)` each time an output is saved; a failure as the error (after
    what was finished), a cancel as a warning. While it waits in the queue, its place is refreshed."""
    inbox: queue.Queue = queue.Queue()
    unsubscribe = handle.subscribe(inbox.put)  # the events so far come first
    started = False
    shown_at, shown_stage = 0.0, None
    try:
        report_progress(ctx, handle, progress)
        while True:
            try:
                event = inbox.get(timeout=QUEUE_REFRESH_S)
            except queue.Empty:  # queued or loading: nothing happens to the job itself meanwhile
                report_progress(ctx, handle, progress)
                continue
            if event.kind == "finished":
                break
            if event.kind == "started":
                started = True
            elif event.kind == "notice" and not started:  # later ones are listed with the results
                gr.Info(event.text)
            elif event.kind == "progress":
                stage = event.stage and (event.stage.title, event.stage.batch)
                if stage != shown_stage or time.monotonic() - shown_at >= PROGRESS_INTERVAL_S:
                    report_progress(ctx, handle, progress)
                    shown_at, shown_stage = time.monotonic(), stage
            elif event.kind == "result":
                yield render(handle)
    finally:
        unsubscribe()
    if handle.state == FAILED:
        if handle.results:
            yield render(handle)
        raise gr.Error(str(handle.error), print_exception=False)
    yield render(handle)  # a cancel is said once, in the info under the results


def report_progress(ctx: UIContext, handle: JobHandle, progress: gr.Progress) -> None:
    """The job's place in the queue, or what it does now and the time left. The bar is the share of all
    steps done; the text names the stage, so it never shows a sum of prior and decoder steps."""
    position = ctx.engine.position(handle)
    stage = handle.stage
    if position:
        busy = ctx.engine.busy_with()  # a training run ahead says so, with how far it is
        progress(0, desc=f"Queued: {position - 1} job(s) ahead" + (f" · waiting for {busy}" if busy else ""))
    elif stage is None:
        progress(0, desc="Loading model…" if ctx.engine.manager.loaded_id is None else "Starting…")
    else:
        progress(handle.step / max(handle.total_steps, 1), desc=progress_text(stage, handle.time_left()))


def progress_text(stage: Stage, left: TimeLeft | None) -> str:
    """ "Decoder 3/500 · about 40 s left": the time left only once a step of the stage under way was timed
    (the first step after a load holds the load), for that stage alone while a later phase is untimed."""
    if left is None:
        return f"{stage} · estimating time left…" if stage.counted else str(stage)
    seconds = max(1, round(left.seconds))
    amount = f"{seconds} s" if seconds < 90 else f"{round(seconds / 60)} min"
    return f"{stage} · about {amount} left" + ("" if left.whole_job else " in this stage")


def job_report(handle: JobHandle, what_each: Callable[[Any], dict], lines: list[str]) -> tuple[str, dict]:
    """The info under a job's results (how many of how many, seeds, `lines` about the outputs, notices, a
    cancel) and its details as JSON, each output described by `what_each(result)`."""
    results = handle.results
    seeds = ", ".join(str(r.seed) for r in results) or "—"
    head = f"**{len(results)} of {handle.image_count} {handle.params.output_kind}(s)** · seeds {seeds}"
    lines = [head, *lines, *(f"ℹ {n}" for n in handle.notices)]
    if handle.state == CANCELLED and handle.error:
        lines.append(f"⚠ {handle.error}")
    # "file", not "path": Gradio would take dicts with a "path" key for files to upload.
    details = {
        "seed": handle.seed,
        "state": handle.state,
        "outputs": [{"file": str(r.path), "seed": r.seed} | what_each(r) for r in results],
        "params": handle.params.to_dict() | {"seed": handle.seed},
        "notices": handle.notices,
    }
    return "\n\n".join(lines), details


def outputs(handle: JobHandle):
    results = handle.results
    gallery = [(str(r.path), caption(r)) for r in results]
    lines = []
    videos = [r for r in results if r.is_video]
    if videos:
        lines.append(
            f"{videos[0].frames} frames at {videos[0].fps:g} fps, {videos[0].width}x{videos[0].height}"
        )
        sound = videos[0].meta.get("audio")
        if sound:
            lines.append(f"With sound ({sound['seconds']:g} s at {sound['sample_rate']} Hz); "
                         f"the WAV is saved beside the video: `{videos[0].audio.name}`")  # fmt: skip
    for r in results:  # what the model rewrote each prompt into (Expand prompt)
        if r.meta.get("expanded_prompt"):
            lines.append(f"**Expanded prompt** (seed {r.seed}): {markdown_text(r.meta['expanded_prompt'])}")
    if results:
        lines.append(f"Saved in `{results[0].path.parent}`")
    info, details = job_report(
        handle,
        lambda r: (
            {"width": r.width, "height": r.height}
            | ({"frames": r.frames, "fps": r.fps} if r.is_video else {})
            | ({"audio": str(r.audio)} if r.audio else {})
            | ({"prompt": r.meta["prompt"]} if "prompt_template" in r.meta else {})
            | ({"expanded_prompt": r.meta["expanded_prompt"]} if "expanded_prompt" in r.meta else {})
        ),
        lines,
    )
    return gallery, info, details, handle.seed, [str(r.path) for r in results], 0


def markdown_text(text: str) -> str:
    """`text` shown as written in Markdown: its markup characters escaped, its lines kept."""
    escaped = "".join("\\" + c if c in "\\`*_{}[]<>()#+-.!|~" else c for c in text)
    return escaped.replace("\n", "  \n")


def caption(result) -> str:
    """A result's caption in the gallery: its seed, and the prompt it was made with when that came from a
    template."""
    if "prompt_template" in result.meta:
        return f"seed {result.seed} · {result.meta['prompt']}"
    return f"seed {result.seed}"


def follow_jobs(ctx: UIContext, jobs: Iterable[tuple[str, str, JobHandle]], progress: gr.Progress,
                failures: list[str]):  # fmt: skip
    """Follow several jobs one after another in one tab (the lines of a prompts file, the cells of a grid):
    the gallery gathers every output so far and the info starts with the job's `head`; a failed job's error
    goes into `failures` after its `name`, and the next job is followed still. `jobs` is read as it goes, so
    it may skip jobs by their state at that moment. Yields renders; returns the gallery items of all."""
    done: list = []
    sent_at, held = 0.0, None  # the render not sent yet, because one went less than an interval ago
    for head, name, handle in jobs:

        def render(h: JobHandle, head=head, done=done):
            gallery, info, details, seed, _, _ = outputs(h)
            shown = done + gallery
            text = f"{head} · {len(shown)} image(s) so far\n\n{info}"
            return shown, text, details, seed, [path for path, _ in shown], 0

        try:
            for update in follow_job(ctx, handle, progress, render):
                if time.monotonic() - sent_at < GALLERY_INTERVAL_S:
                    held = update
                    continue
                yield update
                sent_at, held = time.monotonic(), None
        except gr.Error as exc:
            failures.append(f"{name}: {exc.message}")
        done = done + [(str(r.path), caption(r)) for r in handle.results]
    if held is not None:
        yield held
    return done


def new_owner() -> str:
    """A fresh job owner for a session: what its Cancel cancels (the page load then sets the browser's, so
    that a reloaded page still can: see ui.app.wire_job_owners)."""
    return uuid.uuid4().hex
