"""Captions: what an image shows, in words, from the caption model (the `tools.caption_model` setting,
Florence-2 base by default) or from a Kandinsky 5 or 6 model's own Qwen2.5-VL encoder; or a whole folder captioned into name.txt beside each image, existing ones
skipped unless Overwrite, with progress and Cancel. A caption is short, detailed or more detailed, or tags
(the Mode). This is how LoRA training data is prepared.

Everything runs through `kubin.tools.jobs`, as tool jobs in the engine's queue: a caption waits for a
running generation and never shares the device with it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from kubin.errors import InvalidParams, KubinError
from kubin.images import open_image


def caption_one(engine, image_path: str, mode: str, owner: str = "", model_id: str | None = None) -> str:
    from kubin.tools.jobs import caption_image

    return caption_image(engine, open_image(image_path, "The image"), model_id, mode=mode, owner=owner)


def captioners(ctx) -> list[tuple[str, str]]:
    """The choices of "Caption with": the caption model, then every model whose own encoder captions."""
    from kubin.models.spec import OWN_VLM

    model = ctx.engine.tool_models.caption
    own = [(f"{s.id} · its own Qwen2.5-VL", s.id) for s in ctx.models() if OWN_VLM in s.features]
    return [(f"{model} · the caption model", model), *own]


def caption_folder(
    engine,
    folder: str,
    mode: str,
    overwrite: bool,
    on_entry=None,
    owner: str = "",
    model_id: str | None = None,
):
    """Queue the folder's captioning; returns the tool job's handle (cancel() stops it)."""
    from kubin.tools.caption import image_files
    from kubin.tools.jobs import submit_captions

    path = Path(str(folder or "").strip()).expanduser()
    if not str(folder or "").strip() or not path.is_dir():
        raise InvalidParams(f"{folder!r} is not a folder on this machine; give the folder of the images.")
    files = image_files(path)
    if not files:
        raise InvalidParams(f"The folder {path} holds no image files.")
    return submit_captions(engine, files, True, overwrite, model_id, mode, on_entry, owner)


def report(entries, mode: str = "", model_id: str = "") -> str:
    """A Markdown summary of a folder run: counts (and the mode and model the captions were made with), then
    each file that failed."""
    written = sum(1 for e in entries if e.caption is not None)
    skipped = sum(1 for e in entries if e.skipped)
    failed = [e for e in entries if e.error]
    made = f" ({mode}, by `{model_id}`)" if written and mode else ""
    lines = [
        f"{written} caption(s) written{made}, {skipped} skipped (their .txt exists), {len(failed)} unreadable."
    ]
    lines += [f"- {e.path.name}: {e.error}" for e in failed]
    return "\n".join(lines)


def setup(api):
    def tab(ctx):
        import gradio as gr

        from kubin.tools.caption import MODES
        from kubin.ui.components import refuse_non_images

        owner = gr.State(lambda: f"captions-{uuid.uuid4().hex}")
        gr.Markdown(
            f"Captions from `{ctx.engine.tool_models.caption}` (setting `tools.caption_model`), or from a "
            "Kandinsky 5 or 6 model's own Qwen2.5-VL: no caption model is loaded beside it."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                image = refuse_non_images(
                    gr.Image(
                        label="Image",
                        type="filepath",
                        sources=["upload", "clipboard"],
                        height=260,
                        elem_id="captions-image",
                    )  # fmt: skip
                )
                captioner = gr.Dropdown(captioners(ctx), value=ctx.engine.tool_models.caption,
                                        label="Caption with", elem_id="captions-model")  # fmt: skip
                detail = gr.Radio(list(MODES), value="short", label="Mode", elem_id="captions-detail",
                                  info="a caption, or comma-separated tags")  # fmt: skip
                describe = gr.Button("Describe", variant="primary", elem_id="captions-describe")
                text = gr.Textbox(label="Caption", lines=3, elem_id="captions-text", buttons=["copy"])
            with gr.Column(scale=1, min_width=300):
                folder = gr.Textbox(label="Folder of images", placeholder="/path/to/training/images",
                                    info="writes name.txt beside each image", elem_id="captions-folder")  # fmt: skip
                overwrite = gr.Checkbox(
                    False, label="Overwrite existing .txt files", elem_id="captions-overwrite"
                )
                with gr.Row():
                    run = gr.Button("Caption folder", variant="primary", elem_id="captions-run")
                    cancel = gr.Button("Cancel", variant="stop", elem_id="captions-cancel")
                summary = gr.Markdown(elem_id="captions-summary")

        def on_describe(path, how, model_id, owner_id):
            try:
                return caption_one(ctx.engine, path, how, owner_id, model_id)
            except KubinError as exc:
                raise gr.Error(str(exc), print_exception=False) from None

        def on_run(path, how, replace, model_id, owner_id, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
            def follow(entry, done, total):
                progress(done / total, desc=f"{done}/{total} {entry.path.name}")

            try:
                handle = caption_folder(ctx.engine, path, how, bool(replace), follow, owner_id, model_id)
            except KubinError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            handle.wait()
            if handle.state == "cancelled":
                return "Cancelled; the captions written so far are kept."
            if handle.error is not None:
                raise gr.Error(str(handle.error), print_exception=False)
            from kubin.tools.jobs import caption_model_for

            return report(handle.value, how, caption_model_for(ctx.engine, model_id))

        def on_cancel(owner_id):
            n = ctx.engine.cancel_owner(owner_id)
            return "Cancel requested: it stops after the image under way." if n else "Nothing to cancel."

        describe.click(on_describe, [image, detail, captioner, owner], text, api_name="caption",
                       concurrency_limit=1, concurrency_id="tools")  # fmt: skip
        run.click(on_run, [folder, detail, overwrite, captioner, owner], summary, api_name="caption_folder",
                  concurrency_limit=1, concurrency_id="caption-folder")  # fmt: skip
        cancel.click(on_cancel, owner, summary, queue=False, api_name="caption_cancel")

    api.add_tab("Captions", tab)
