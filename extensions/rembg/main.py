"""Background remover: rembg sessions (U2-Net, ISNet, BiRefNet, BRIA RMBG) or a custom ONNX model cut the
subject out of an image; the result is an RGBA PNG whose background is transparent.

Settings (`extensions.settings.rembg`): `models_dir` (default `models/rembg` in the Kubin folder). It is
rembg's model home for this extension: rembg's models are looked up there (`u2netp.onnx` or
`models/u2netp/u2netp.onnx`) and downloaded there on first use, and custom `.onnx` files must lie in it
(rembg loads custom models only from its home). rembg takes ~30 s to import the first time after install,
so it is imported on first use, never at start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from kubin.errors import InvalidParams, WeightsMissing, first_line
from kubin.extensions import tool_files
from kubin.images import open_image

DEFAULT_DIR = "models/rembg"
CUSTOM = "custom ONNX file"
# rembg's single-file local models, smallest first (remote services and SAM's two-file model left out).
MODELS = (
    "u2netp",
    "silueta",
    "u2net",
    "u2net_human_seg",
    "isnet-general-use",
    "isnet-anime",
    "birefnet-general-lite",
    "birefnet-general",
    "birefnet-portrait",
    "birefnet-dis",
    "birefnet-hrsod",
    "birefnet-cod",
    "birefnet-massive",
    "bria-rmbg",
)
RELEASES = "https://github.com/danielgatis/rembg/releases"


def models_dir(settings: dict[str, Any]) -> Path:
    return tool_files.models_dir(settings, DEFAULT_DIR)


def custom_files(folder: Path) -> list[str]:
    """The .onnx files at the top of the models folder (where custom models go), by name."""
    return sorted(p.name for p in folder.glob("*.onnx") if p.is_file()) if folder.is_dir() else []


def custom_path(folder: Path, name: str) -> Path:
    """A custom model's file: a name or path inside the models folder, which rembg insists on."""
    if not (name or "").strip():
        raise InvalidParams(f"Choose a custom .onnx file (put it in {folder}).")
    candidate = Path(name.strip()).expanduser()
    path = Path(_abspath(candidate if candidate.is_absolute() else folder / candidate))
    if not path.is_relative_to(_abspath(folder)):  # symlinks inside the folder are fine, as for rembg
        raise InvalidParams(
            f"Custom models must lie in the rembg models folder {folder}; copy {candidate.name} there."
        )
    if path.suffix.lower() != ".onnx" or not path.is_file():
        raise WeightsMissing(f"No ONNX model {path.name} in {path.parent}.")
    return path


def _abspath(path: Path) -> str:
    return os.path.abspath(path)


def new_session(model: str, folder: Path, custom: str = ""):
    """A rembg session whose model home is `folder` (set on the session class, not in os.environ).
    A named model missing there downloads on first use, unless downloads are off: then one sentence says
    which file to put where. The files are checked before rembg is imported (its first import takes ~30 s),
    so a missing model is told at once."""
    from kubin.models.weights import hub_offline

    if model == CUSTOM:
        path = custom_path(folder, custom)
        from rembg.sessions import sessions

        return _at_home(sessions["u2net_custom"], folder)("u2net_custom", _options(), model_path=str(path))
    if model not in MODELS:
        raise InvalidParams(f"Unknown background remover model {model!r}.")
    file = f"{model}.onnx"
    found = model_file(folder, model)
    hint = f"download {file} from {RELEASES} into {folder} on a connected machine, or choose {CUSTOM!r}"
    if found is None and hub_offline():
        raise WeightsMissing(
            f"Background remover {model} needs {file}, which is not in {folder} and downloads are off "
            f"(HF_HUB_OFFLINE); {hint}."
        )
    from rembg.sessions import sessions

    cls = _at_home(sessions[model], folder)
    if found is None:
        try:
            return cls(model, _options())
        except Exception as exc:  # network, DNS, checksum: the same to the user
            raise WeightsMissing(
                f"Background remover {model} needs {file}, which is not in {folder} and could not be downloaded "
                f"({first_line(exc)}); {hint}."
            ) from None
    return cls(model, _options())


def model_file(folder: Path, model: str) -> Path | None:
    """A named model's file in the models folder, where rembg's `resolve_existing` looks for it (with the
    folder as its home): models/<name>/<name>.onnx, or <name>.onnx at the top (rembg's older flat layout)."""
    file = f"{model}.onnx"
    return next((p for p in (folder / "models" / model / file, folder / file) if p.exists()), None)


def _at_home(base: type, folder: Path) -> type:
    """`base` with `folder` as rembg's model home (both the current and the legacy flat layout)."""
    home = str(folder)

    class AtHome(base):
        @classmethod
        def rembg_home(cls, *args, **kwargs):
            return home

        @classmethod
        def legacy_home(cls, *args, **kwargs):
            return home

    AtHome.__name__ = base.__name__
    return AtHome


def _options():
    import onnxruntime as ort

    return ort.SessionOptions()


def remove_background(
    session, image: Image.Image, mask_only: bool = False, alpha_matting: bool = False
) -> Image.Image:
    """The image with its background transparent (RGBA), or just the mask (L, white = subject)."""
    from rembg import remove

    result = remove(image, session=session, only_mask=mask_only, alpha_matting=alpha_matting)
    return result.convert("L") if mask_only else result.convert("RGBA")


def save_cutout(
    image: Image.Image, root: Path, model: str, mask_only: bool, alpha_matting: bool, source: str, name=None
) -> Path:
    """Save under <output>/rembg/<date>/ (or as `name`, a folder batch's) with its parameters, as every
    Kubin output."""
    from kubin.outputs import save_tool_output

    params = {"mask_only": mask_only, "alpha_matting": alpha_matting}
    return save_tool_output(image, root, "rembg", model, params, {"image": source}, name)


def model_name(model: str, custom: str | None) -> str:
    return f"{CUSTOM}: {custom}" if model == CUSTOM else model


def setup(api):
    def cutting(model: str, custom: str | None, mask_only: bool, alpha_matting: bool):
        """`work(tool, image)` -> the cut-out (or mask) by `model`, for a tool job."""
        folder = models_dir(api.settings)
        key = f"rembg:{model}:{folder}:{custom if model == CUSTOM else ''}"

        def work(tool, image: Image.Image) -> Image.Image:
            # In the engine's queue, as every tool model: never beside a generation; the manager keeps the
            # session between clicks and frees it when a generation model needs the memory.
            session = tool.model(key, lambda device: new_session(model, folder, custom or ""))
            return remove_background(session, image, bool(mask_only), bool(alpha_matting))

        return work

    def folder_parts(root: Path, model: str, custom: str | None, mask_only: bool, alpha_matting: bool):
        """(work, save) of a folder pass (kubin.batch.tool_over_folder): each cut-out saved under its name."""
        work, name = cutting(model, custom, mask_only, alpha_matting), model_name(model, custom)

        def save(image, item, output_name):
            return save_cutout(
                image, root, name, bool(mask_only), bool(alpha_matting), str(item.source), output_name
            )

        return work, save

    def command_flags(parser) -> None:
        parser.add_argument(
            "--input", required=True, metavar="IMAGE_OR_DIR", help="an image, or a folder of them"
        )
        parser.add_argument("--model", default=api.settings.get("model", MODELS[0]),
                            help=f"one of {', '.join(MODELS)}, or a custom .onnx file (a path)")  # fmt: skip
        parser.add_argument("--mask-only", action="store_true", help="save the mask (white = subject)")
        parser.add_argument("--alpha-matting", action="store_true", help="finer edges, slower")

    def command(engine, args) -> int:
        """`kubin tool rembg --input IMAGE_OR_DIR [--model M]`: one JSON line per result."""
        import json

        from kubin.batch import print_tool_run, tool_over_folder

        model, custom = args.model, None
        if model not in MODELS:  # a custom ONNX file: its folder is the models folder for this run
            path = Path(model).expanduser()
            if not path.is_file():
                raise InvalidParams(f"--model: {model!r} is none of {', '.join(MODELS)} and no .onnx file.")
            api.settings["models_dir"] = str(path.resolve().parent)
            model, custom = CUSTOM, path.name
        source = Path(args.input).expanduser()
        if source.is_dir():
            work, save = folder_parts(
                Path(engine.output_dir), model, custom, args.mask_only, args.alpha_matting
            )
            handle, run_state = tool_over_folder(engine, "Remove background", "rembg", source, work, save)
            return print_tool_run(engine, handle, run_state)
        image = open_image(str(source), "The image")
        work = cutting(model, custom, args.mask_only, args.alpha_matting)
        result = engine.run_tool("Remove background", lambda tool: work(tool, image))
        path = save_cutout(result, Path(engine.output_dir), model_name(model, custom), args.mask_only,
                           args.alpha_matting, str(source))  # fmt: skip
        print(json.dumps({"path": str(path), "source": str(source)}))
        return 0

    def run(ctx, image_path, model, custom, mask_only, alpha_matting) -> tuple[str, str]:
        if not image_path:
            raise InvalidParams("Choose an image first.")
        image = open_image(image_path, "The image")
        cut_out = cutting(model, custom, mask_only, alpha_matting)
        result = ctx.engine.run_tool("Remove background", lambda tool: cut_out(tool, image))
        name = model_name(model, custom)
        path = save_cutout(result, Path(ctx.engine.output_dir), name, bool(mask_only), bool(alpha_matting),
                           str(image_path))  # fmt: skip
        return str(path), f"{'Mask' if mask_only else 'Cut-out'} saved as {path.name}."

    def tab(ctx):
        import gradio as gr

        from kubin.errors import KubinError
        from kubin.ui.components import refuse_non_images
        from kubin.ui.folder_batch import tool_folder_panel

        folder = models_dir(api.settings)
        files = custom_files(folder)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                source = refuse_non_images(
                    gr.Image(
                        label="Image", type="filepath", sources=["upload", "clipboard"], elem_id="rembg-image"
                    )
                )
                ctx.receive("rembg", source)
                model = gr.Dropdown([*MODELS, CUSTOM], value=api.settings.get("model", MODELS[0]), label="Model",
                                    info=f"Models download on first use into the models folder ({folder}).",
                                    elem_id="rembg-model")  # fmt: skip
                with gr.Row():
                    custom = gr.Dropdown(files, value=files[0] if files else None, allow_custom_value=True,
                                         label="Custom ONNX file (in the models folder)", elem_id="rembg-custom",
                                         scale=4)  # fmt: skip
                    refresh = gr.Button("↻", elem_id="rembg-refresh", scale=0, min_width=50)
                with gr.Row():
                    mask_only = gr.Checkbox(False, label="Mask only", elem_id="rembg-mask-only")
                    matting = gr.Checkbox(
                        False, label="Alpha matting (finer edges, slower)", elem_id="rembg-matting"
                    )
                go = gr.Button("Remove background", variant="primary", elem_id="rembg-run")
                with gr.Accordion("Models folder", open=False):
                    where = gr.Textbox(str(folder), label="Folder", elem_id="rembg-folder")
                    save_where = gr.Button("Save and list", elem_id="rembg-folder-save")
            with gr.Column(scale=1, min_width=300):
                result = gr.Image(label="Result", type="filepath", interactive=False, format="png", image_mode="RGBA",
                                  elem_id="rembg-result")  # fmt: skip
                info = gr.Markdown(elem_id="rembg-info")

        def on_run(image_path, choice, custom_name, only_mask, alpha_matting):
            try:
                return run(ctx, image_path, choice, custom_name, only_mask, alpha_matting)
            except KubinError as exc:
                raise gr.Error(str(exc), print_exception=False) from None

        def listing(current=None):
            names = custom_files(models_dir(api.settings))
            return gr.update(
                choices=names, value=current if current in names else (names[0] if names else None)
            )

        def on_save_folder(text, current):
            if not str(text).strip():
                raise gr.Error("Give a folder.", print_exception=False)
            api.save_settings({"models_dir": str(text).strip()})
            return listing(current), str(models_dir(api.settings))

        def folder_tool(choice, custom_name, only_mask, alpha_matting):
            return folder_parts(Path(ctx.engine.output_dir), choice, custom_name, only_mask, alpha_matting)

        with gr.Row():
            with gr.Column():
                tool_folder_panel(ctx, "rembg", "Remove background", "rembg", [model, custom, mask_only, matting],
                                  folder_tool)  # fmt: skip

        go.click(on_run, [source, model, custom, mask_only, matting], [result, info], api_name="rembg",
                 concurrency_limit=1, concurrency_id="rembg")  # fmt: skip
        refresh.click(listing, custom, custom, queue=False, api_name="rembg_models")
        save_where.click(
            on_save_folder, [where, custom], [custom, where], queue=False, api_name="rembg_folder"
        )

    api.add_tab("Remove background", tab)
    api.add_command(
        "rembg", command, command_flags, "remove the background of an image or of every image of a folder"
    )
    api.add_send_target("rembg", "Remove background")

    def folder_route(context):
        """POST /kubin/api/v1/ext/rembg/folder: every image of a server folder, as the tab's Whole folder."""
        from fastapi import Request
        from pydantic import BaseModel, Field

        from kubin.batch import tool_over_folder, tool_run_answer

        class RembgFolder(BaseModel):
            input_dir: str = Field(description="a folder of images on the server")
            model: str = Field(api.settings.get("model", MODELS[0]),
                               description=f"one of {', '.join(MODELS)}, or {CUSTOM!r} with `custom`")  # fmt: skip
            custom: str | None = Field(None, description="a .onnx file in the rembg models folder")
            mask_only: bool = Field(False, description="save the mask (white = subject)")
            alpha_matting: bool = Field(False, description="finer edges, slower")

        def rembg_folder(body, request):
            if body.model not in (*MODELS, CUSTOM):
                raise InvalidParams(f"model: {body.model!r} is none of {', '.join(MODELS)} (or {CUSTOM!r}).")
            context.check_folder(body.input_dir, "input_dir")
            work, save = folder_parts(Path(context.engine.output_dir), body.model, body.custom, body.mask_only,
                                      body.alpha_matting)  # fmt: skip
            handle, run_state = tool_over_folder(context.engine, "Remove background", "rembg", body.input_dir,
                                                 work, save, owner=context.owner(request))  # fmt: skip
            return tool_run_answer(handle, run_state)

        rembg_folder.__annotations__.update(body=RembgFolder, request=Request)
        return rembg_folder

    api.add_route(
        "folder",
        folder_route,
        summary="Remove the background of every image of a server folder (answers when done)",
    )
