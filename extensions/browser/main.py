"""Output browser: the output folder by task and date, newest first; an output's parameters, sending it to
any tab, and deleting it (after a confirmation). Only files inside the output folder are ever listed,
sent or deleted."""

# No `from __future__ import annotations`: Gradio reads the `gr.SelectData` hint of event functions.
from pathlib import Path

SHOWN = (".png", ".mp4", ".glb")
LIMIT = 300  # newest outputs shown per folder
TARGETS = ["i2i", "mix", "inpaint", "outpaint", "i2v"]
# The bundled tools' output folders, named as their tabs are (the task folders as the task tabs are).
TOOL_LABELS = {"upscale": "Upscale", "segment": "Segment", "rembg": "Remove background"}


def inside(root: Path, path: str | Path) -> Path:
    """`path` resolved, if it lies inside `root` (symlinks followed); anything else is refused."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ValueError("That file is not in the output folder.")
    return resolved


def tasks(root: Path) -> list[str]:
    return (
        sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "inputs") if root.is_dir() else []
    )


def task_choices(root: Path) -> list[tuple[str, str]]:
    """(label, folder) of each output folder: "Text to image" for t2i, as the tabs name them."""
    from kubin.params import TASK_LABELS

    return [(TASK_LABELS.get(t) or TOOL_LABELS.get(t) or t, t) for t in tasks(root)]


def dates(root: Path, task: str) -> list[str]:
    if not task or not (root / task).is_dir():
        return []
    folder = root / task
    return sorted((p.name for p in folder.iterdir() if p.is_dir()), reverse=True)


def newest_task(root: Path) -> str | None:
    """The folder whose newest date folder changed last: where the latest output went."""
    newest = {t: root / t / d[0] for t in tasks(root) if (d := dates(root, t))}
    return max(newest, key=lambda t: newest[t].stat().st_mtime, default=None)


def outputs(root: Path, task: str, date: str) -> list[Path]:
    folder = root / (task or "") / (date or "")
    if not task or not date or not folder.is_dir():
        return []
    inside(root, folder)
    files = [p for p in folder.iterdir() if p.suffix in SHOWN and not p.name.startswith(".")]
    return sorted(files, key=lambda p: p.name, reverse=True)[:LIMIT]


def companions(path: Path) -> list[Path]:
    """The files saved with an output: a video's sidecar and preview, a mesh's sidecar and exports."""
    if path.suffix == ".png":
        return [path]
    return [path] + [p for p in path.parent.glob(path.stem + ".*") if p != path and p.suffix != ".png"]


def delete_output(root: Path, path: str) -> list[Path]:
    target = inside(root, path)
    if not target.is_file():
        raise ValueError("That output is already gone.")
    removed = []
    for file in companions(target):
        file.unlink(missing_ok=True)
        removed.append(file)
    return removed


def setup(api):
    def tab(ctx):
        import gradio as gr

        from kubin.errors import KubinError
        from kubin.outputs import read_output_metadata, save_video_frame
        from kubin.params import TASK_LABELS

        root = Path(ctx.engine.output_dir)
        # Empty here: what the folder holds is listed on each page load and each time the tab is opened (the
        # task of the latest output first).
        with gr.Row():
            task = gr.Dropdown([], value=None, label="Task", elem_id="browser-task")
            date = gr.Dropdown([], value=None, label="Date", elem_id="browser-date")
            refresh = gr.Button("↻ Refresh", elem_id="browser-refresh", scale=0, min_width=120)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2):
                gallery = gr.Gallery(
                    label="Outputs", columns=4,
                    height="auto", object_fit="contain", interactive=False, elem_id="browser-gallery",
                )  # fmt: skip
                # The files the gallery shows, in its order: a click picks from these, not from a fresh
                # listing (which may have grown since).
                shown = gr.State([])
            with gr.Column(scale=1):
                chosen = gr.Textbox(label="Selected output", interactive=False, elem_id="browser-selected")
                params = gr.JSON(label="Parameters", elem_id="browser-params")
                with gr.Row():
                    send = {t: gr.Button(f"→ {TASK_LABELS[t]}", size="sm", min_width=80,
                                         elem_id=f"browser-send-{t}") for t in TARGETS if t in ctx.task_tabs}  # fmt: skip
                with gr.Row():
                    delete = gr.Button("Delete", variant="stop", elem_id="browser-delete")
                    confirm = gr.Button(
                        "Yes, delete it", variant="stop", visible=False, elem_id="browser-confirm"
                    )
                    keep = gr.Button("Keep it", visible=False, elem_id="browser-keep")
                status = gr.Markdown(elem_id="browser-status")

        def listing(t, d):
            files = [str(p) for p in outputs(root, t, d)]
            return files, files  # the gallery, and what it shows

        def on_task(t):
            ds = dates(root, t)
            return gr.update(choices=ds, value=ds[0] if ds else None), *listing(t, ds[0] if ds else None)

        def on_refresh(t, d):
            choices = task_choices(root)
            t = t if t in [folder for _, folder in choices] else newest_task(root)
            ds = dates(root, t)
            d = d if d in ds else next(iter(ds), None)
            return gr.update(choices=choices, value=t), gr.update(choices=ds, value=d), *listing(t, d)

        def on_select(evt: gr.SelectData, files):
            if not files or evt.index >= len(files):
                return "", None, ""
            path = Path(files[evt.index])
            try:
                meta = read_output_metadata(path)
            except KubinError as exc:
                meta = {"error": str(exc)}
            return str(path), meta, ""

        def on_send(path, target):
            if not path:
                raise gr.Error("Select an output first.", print_exception=False)
            try:
                file = inside(root, path)
                if file.suffix == ".mp4":
                    file = save_video_frame(file, -1)
            except (ValueError, KubinError) as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            return ctx.send_to(target, str(file))

        def ask(path):
            if not path:
                return gr.update(), gr.update(), gr.update(), "Select an output first."
            return (
                gr.update(visible=False),
                gr.update(visible=True),
                gr.update(visible=True),
                (f"Delete `{Path(path).name}` for good?"),
            )

        def on_confirm(path, t, d):
            hidden = (gr.update(visible=True), gr.update(visible=False), gr.update(visible=False))
            try:
                removed = delete_output(root, path)
            except ValueError as exc:
                return (*hidden, f"⚠ {exc}", *listing(t, d), path, gr.update())
            return (*hidden, f"Deleted {', '.join(p.name for p in removed)}.", *listing(t, d), "", None)

        def on_keep():
            return gr.update(visible=True), gr.update(visible=False), gr.update(visible=False), "Kept."

        private = {"queue": False, "api_visibility": "private"}
        task.change(on_task, task, [date, gallery, shown], **private)
        date.change(listing, [task, date], [gallery, shown], **private)
        refresh.click(on_refresh, [task, date], [task, date, gallery, shown], **private)
        ctx.on_open(on_refresh, [task, date], [task, date, gallery, shown])
        gallery.select(on_select, shown, [chosen, params, status], **private)
        for t, button in send.items():
            button.click(lambda p, _t=t: on_send(p, _t), chosen, ctx.send_outputs(t), **private)
        delete.click(ask, chosen, [delete, confirm, keep, status], **private)
        keep.click(on_keep, None, [delete, confirm, keep, status], **private)
        confirm.click(on_confirm, [chosen, task, date], [delete, confirm, keep, status, gallery, shown, chosen, params],
                      **private)  # fmt: skip

    api.add_tab("Outputs", tab)
