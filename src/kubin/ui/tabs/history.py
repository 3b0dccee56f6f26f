"""The History tab (inside Tools): every job the server queued, newest first, with its state (a running job
with its progress), task, model, prompt and thumbnails; filter by text and state, cancel a job or run it
again, and rebuild the history from the output files. A thin layer over kubin.history."""

from __future__ import annotations

import datetime as dt
import html
import urllib.parse

import gradio as gr

from kubin.api.history import live_handle, requeue
from kubin.errors import KubinError
from kubin.history import STATES
from kubin.ui.context import UIContext

TAB_ID = "history"
PAGE = 50  # entries shown
ALL = "all"
OWNER = "history"  # the owner of jobs re-run from this tab
REFRESH_S = 2.0  # how often an open page's table is brought up to date (sent only when it changed)


def file_url(path) -> str:
    return "/gradio_api/file=" + urllib.parse.quote(str(path))


def source(entry) -> str:
    """Who queued the job, as a user reads it (a browser's owner id says nothing to them)."""
    if entry.source == "files":
        return "from files"
    return {"api": "API", "cli": "CLI", OWNER: "re-run", "": "Python"}.get(entry.owner, "UI")


def render(ctx: UIContext, q: str, state: str) -> tuple[str, dict]:
    """The table's HTML and the job picker's choices, for the filter."""
    history = ctx.engine.history
    if history is None:
        return "<p>This server keeps no job history.</p>", gr.update(choices=[], value=None)
    entries, total = history.query(PAGE, 0, "" if state == ALL else state, (q or "").strip())
    rows = []
    for e in entries:
        when = dt.datetime.fromtimestamp(e.created).strftime("%Y-%m-%d %H:%M:%S")
        status = e.state + (" · offered again" if e.offered else "")
        live = live_handle(ctx.engine, e)
        if live is not None and live.state == "running":
            stage = live.stage
            status += f" · {stage}" if stage is not None else f" · {live.step}/{live.total_steps}"
        if e.error:
            status += f"<br><small>{html.escape(e.error)}</small>"
        if e.missing:
            status += f"<br><small>{e.missing} of {len(e.files)} output file(s) deleted</small>"
        thumbs = "".join(
            f'<img src="{file_url(t)}" alt="output {i + 1}" loading="lazy">'
            for i, t in enumerate(e.thumbs[:4])
            if t.is_file()
        ) + (f"<small>+{len(e.thumbs) - 4} more</small>" if len(e.thumbs) > 4 else "")
        rows.append(
            f'<tr data-state="{e.state}"><td>#{e.id}</td><td>{when}</td>'
            f'<td class="history-state">{status}</td><td class="history-thumbs">{thumbs}</td>'
            f'<td class="history-prompt">{html.escape(e.prompt)}</td><td>{e.task} · {source(e)}</td><td>{html.escape(e.model)}</td></tr>'
        )
    head = "<tr><th>#</th><th>Time</th><th>State</th><th>Outputs</th><th>Prompt</th><th>Task</th><th>Model</th></tr>"
    shown = f"<p>{len(entries)} of {total} job(s)</p>" if total else "<p>No jobs yet.</p>"
    table = f'{shown}<div class="history-scroll"><table>{head}{"".join(rows)}</table></div>'
    choices = [(f"#{e.id} · {e.state} · {e.prompt[:40]}", e.id) for e in entries]
    return table, gr.update(choices=choices, value=choices[0][1] if choices else None)


def build(ctx: UIContext, opened_by: list) -> None:
    with gr.Column(elem_id="kubin-history"):
        with gr.Row():
            q = gr.Textbox(
                label="Filter", placeholder="prompt, model, task or owner", elem_id="history-filter"
            )
            state = gr.Dropdown([ALL, *STATES, "offered"], value=ALL, label="State", elem_id="history-state")
        table = gr.HTML(elem_id="history-table")
        picked = gr.Dropdown([], label="Job", elem_id="history-job")
        with gr.Row():
            rerun = gr.Button("Re-run / re-queue", elem_id="history-rerun", min_width=150)
            cancel = gr.Button("Cancel", elem_id="history-cancel", min_width=150)
            refresh = gr.Button("Refresh", elem_id="history-refresh", min_width=150)
            rebuild = gr.Button("Rebuild history", elem_id="history-rebuild", min_width=150)
        said = gr.Markdown(elem_id="history-said")
    ticker = gr.Timer(REFRESH_S)  # new jobs, progress and ends show without a click
    shown = gr.State("")  # the table last sent to this page: an unchanged one is not sent again

    def show(q_value, state_value):
        return render(ctx, q_value, state_value)

    def act(action, entry_id, q_value, state_value):
        history = ctx.engine.history
        entry = history.entry(int(entry_id)) if history is not None and entry_id is not None else None
        if entry is None and action != "rebuild":
            raise gr.Error("Pick a job first.", print_exception=False)
        if action == "rerun":
            try:
                handle = requeue(ctx.engine, history, entry, OWNER)
            except KubinError as exc:  # its input image is gone, its model is no longer there, ...
                raise gr.Error(str(exc), print_exception=False) from None
            text = f"Queued again as job {handle.id}."
        elif action == "cancel":
            live = live_handle(ctx.engine, entry)
            if live is None:
                raise gr.Error(f"Job #{entry.id} is not queued or running.", print_exception=False)
            ctx.engine.cancel(live)
            live.wait(30)  # it stops within a step: the table shows it cancelled, with what it saved
            text = f"Job #{entry.id} is cancelled."
        else:
            text = f"{history.rebuild()} output file(s) added from the output folder."
        return (*render(ctx, q_value, state_value), text)

    def tick(q_value, state_value, last):
        html_now, _ = render(ctx, q_value, state_value)
        if html_now == last:
            return gr.skip(), gr.skip()
        return html_now, html_now

    common = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
    for trigger in (q.submit, state.change, refresh.click):
        trigger(show, [q, state], [table, picked], **common)
    ticker.tick(tick, [q, state, shown], [table, shown], **common)
    for name, button in (("rerun", rerun), ("cancel", cancel), ("rebuild", rebuild)):
        button.click(lambda *a, _n=name: act(_n, *a), [picked, q, state], [table, picked, said], **common)
    ctx.opened_by = opened_by
    ctx.on_open(show, [q, state], [table, picked])
    ctx.opened_by = []
