"""Upscaler: enlarge an image with a Real-ESRGAN checkpoint (RRDBNet, SRVGGNetCompact, or anything else
spandrel reads) from the models folder or the Hugging Face hub, tile by tile so large images fit in memory.

Settings (`extensions.settings.upscaler`): `models_dir` (default `models/upscalers` in the Kubin folder),
`tile` (default tile size in pixels), `hub_models` ({label: "owner/repo/file.pth"}, replacing the built-in
list), `max_output_pixels`. torch and spandrel are imported on first use, never at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from kubin.errors import InvalidParams, first_line
from kubin.extensions import tool_files
from kubin.images import open_image

SUFFIXES = (".pth", ".safetensors")
DEFAULT_DIR = "models/upscalers"
DEFAULT_TILE = 512
TILE_PAD = 16  # input pixels of context around each tile, cut away after upscaling
MAX_OUTPUT_PIXELS = 8192 * 8192
HUB_PREFIX = tool_files.HUB_PREFIX
# Where the Real-ESRGAN weights are published on the Hugging Face hub: label -> (repo, file).
HUB_MODELS = {
    "Real-ESRGAN x4plus": ("lllyasviel/Annotators", "RealESRGAN_x4plus.pth"),
    "Real-ESRGAN x4plus anime 6B": ("ximso/RealESRGAN_x4plus_anime_6B", "RealESRGAN_x4plus_anime_6B.pth"),
    "Real-ESRGAN x2plus": ("dtarnow/UPscaler", "RealESRGAN_x2plus.pth"),
    "Real-ESRGAN x4 (ai-forever)": ("ai-forever/Real-ESRGAN", "RealESRGAN_x4.pth"),
}


def models_dir(settings: dict[str, Any]) -> Path:
    return tool_files.models_dir(settings, DEFAULT_DIR)


def hub_models(settings: dict[str, Any]) -> dict[str, tuple[str, str]]:
    configured = settings.get("hub_models")
    if not configured:
        return dict(HUB_MODELS)
    out = {}
    for label, spec in dict(configured).items():
        owner, name, filename = (str(spec).split("/", 2) + ["", ""])[:3]  # owner/repo/path/in/repo.pth
        out[str(label)] = (f"{owner}/{name}", filename)
    return out


def model_choices(folder: Path, hub: dict[str, tuple[str, str]]) -> list[str]:
    """Checkpoint files in the models folder (by name, sorted), then the hub entries."""
    return tool_files.model_choices(folder, SUFFIXES, hub)


def weights_path(choice: str, folder: Path, hub: dict[str, tuple[str, str]]) -> Path:
    """The checkpoint file for a choice: a file in the models folder, or a hub file (cache, else download)."""
    return tool_files.weights_path(choice, folder, SUFFIXES, hub, "an upscaler")


@dataclass
class Upscaler:
    """A loaded super-resolution model: `scale` times larger output, on `device`."""

    path: Path
    descriptor: Any  # spandrel.ImageModelDescriptor
    device: str

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def architecture(self) -> str:
        return str(self.descriptor.architecture.name)


def load_upscaler(path: str | Path, device: str = "cpu") -> Upscaler:
    """Read a checkpoint with spandrel; anything but an RGB image-to-image model is refused."""
    import spandrel

    try:
        descriptor = spandrel.ModelLoader(device).load_from_file(str(path))
    except spandrel.UnsupportedModelError:
        raise InvalidParams(f"{Path(path).name} is not an upscaler checkpoint spandrel recognises.") from None
    except Exception as exc:  # unreadable or damaged: the file is the user's choice, so say which
        raise InvalidParams(f"Could not read {Path(path).name}: {first_line(exc)}") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.input_channels != 3:
        raise InvalidParams(f"{Path(path).name} is not an RGB upscaler ({descriptor.architecture.name}).")
    descriptor.eval()
    return Upscaler(Path(path), descriptor, device)


def upscale(upscaler: Upscaler, image: Image.Image, tile: int = DEFAULT_TILE, progress=None) -> Image.Image:
    """`image` enlarged `upscaler.scale` times. With `tile` > 0, in tiles of at most tile x tile input pixels,
    each seen with TILE_PAD pixels of context so the seams match the whole-image result; an alpha channel is
    resized alongside. `progress(done, total)` is called after each tile."""
    import numpy as np
    import torch

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).to(upscaler.device)
    with torch.no_grad():  # not inference_mode: its first call is many times slower here
        y = _tiled(upscaler.descriptor, x, upscaler.scale, tile, progress)
    out = y[0, :3].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().cpu().numpy()
    result = Image.fromarray(out, "RGB")
    if "A" in image.getbands():
        result = result.convert("RGBA")
        result.putalpha(image.getchannel("A").resize(result.size, Image.Resampling.LANCZOS))
    return result


def _tiled(model, x, scale: int, tile: int, progress=None):
    _, _, height, width = x.shape
    if tile <= 0 or (height <= tile and width <= tile):
        y = model(x)
        if progress:
            progress(1, 1)
        return y
    out = None
    boxes = [(top, left) for top in range(0, height, tile) for left in range(0, width, tile)]
    for done, (top, left) in enumerate(boxes, 1):
        bottom, right = min(top + tile, height), min(left + tile, width)
        ptop, pleft = max(top - TILE_PAD, 0), max(left - TILE_PAD, 0)
        pbottom, pright = min(bottom + TILE_PAD, height), min(right + TILE_PAD, width)
        piece = model(x[:, :, ptop:pbottom, pleft:pright])
        oy, ox = (top - ptop) * scale, (left - pleft) * scale
        if out is None:
            out = piece.new_zeros((1, piece.shape[1], height * scale, width * scale))
        out[:, :, top * scale : bottom * scale, left * scale : right * scale] = piece[
            :, :, oy : oy + (bottom - top) * scale, ox : ox + (right - left) * scale
        ]
        if progress:
            progress(done, len(boxes))
    return out


def save_upscaled(
    image: Image.Image, root: Path, model: str, scale: int, tile: int, source: str, name=None
) -> Path:
    """Save under <output>/upscale/<date>/ (or as `name`, a folder batch's) with its parameters, as every
    Kubin output."""
    from kubin.outputs import save_tool_output

    return save_tool_output(
        image, root, "upscale", model, {"scale": scale, "tile": tile}, {"image": source}, name
    )


def setup(api):
    def upscaling(choice: str, tile: int, progress=None):
        """`work(tool, image)` -> (the image upscaled by the `choice` model, the Upscaler), for a tool job."""
        path = weights_path(choice, models_dir(api.settings), hub_models(api.settings))
        limit = int(api.settings.get("max_output_pixels") or MAX_OUTPUT_PIXELS)

        def work(tool, image: Image.Image) -> tuple[Image.Image, Upscaler]:
            upscaler = tool.model(f"upscaler:{path}", lambda device: load_upscaler(path, device))
            if image.width * image.height * upscaler.scale**2 > limit:
                raise InvalidParams(
                    f"{image.width}x{image.height} upscaled x{upscaler.scale} would be "
                    f"{image.width * upscaler.scale}x{image.height * upscaler.scale}, over the limit of {limit} pixels."
                )

            def report(done: int, total: int) -> None:
                tool.progress(done, total)
                if progress:
                    progress(done, total)

            return upscale(upscaler, image, tile, report), upscaler

        return work

    def folder_parts(root: Path, choice: str, tile: int):
        """(work, save) of a folder pass (kubin.batch.tool_over_folder): each image upscaled and saved under
        its own name with the scale the model has."""
        work = upscaling(choice, tile)
        upscaled = {}  # the model's scale, for each result's metadata

        def one(tool, image):
            result, upscaler = work(tool, image)
            upscaled["scale"] = upscaler.scale
            return result

        def save(image, item, name):
            return save_upscaled(image, root, choice, upscaled["scale"], tile, str(item.source), name)

        return one, save

    def command_flags(parser) -> None:
        parser.add_argument(
            "--input", required=True, metavar="IMAGE_OR_DIR", help="an image, or a folder of them"
        )
        parser.add_argument("--model", required=True,
                            help='a checkpoint file (a path, or a name in the models folder), or "hub: NAME"')  # fmt: skip
        parser.add_argument(
            "--models-dir", metavar="DIR", help="the models folder (default: the configured one)"
        )
        parser.add_argument("--tile", type=int, default=int(api.settings.get("tile", DEFAULT_TILE)),
                            help="tile size (0 = the whole image at once)")  # fmt: skip

    def command(engine, args) -> int:
        """`kubin tool upscale --input IMAGE_OR_DIR --model FILE`: one JSON line per result."""
        import json

        from kubin.batch import print_tool_run, tool_over_folder

        choice = args.model
        if Path(choice).expanduser().is_file():  # a path: its folder is the models folder for this run
            api.settings["models_dir"] = str(Path(choice).expanduser().resolve().parent)
            choice = Path(choice).name
        elif args.models_dir:
            api.settings["models_dir"] = args.models_dir
        source = Path(args.input).expanduser()
        if source.is_dir():
            work, save = folder_parts(Path(engine.output_dir), choice, args.tile)
            handle, run_state = tool_over_folder(engine, "Upscale", "upscale", source, work, save)
            return print_tool_run(engine, handle, run_state)
        image = open_image(str(source), "The image")
        work = upscaling(choice, args.tile)
        result, upscaler = engine.run_tool("Upscale", lambda tool: work(tool, image))
        path = save_upscaled(result, Path(engine.output_dir), choice, upscaler.scale, args.tile, str(source))
        print(
            json.dumps(
                {"path": str(path), "source": str(source), "width": result.width, "height": result.height}
            )
        )
        return 0

    def run(ctx, image_path: str, choice: str, tile: int, progress=None) -> tuple[str, str]:
        """Upscale in the engine's queue: never on the device beside a generation; the manager keeps the
        upscaler between clicks and frees it when a generation model needs the memory."""
        if not image_path:
            raise InvalidParams("Choose an image to upscale first.")
        image = open_image(image_path, "The image")
        work = upscaling(choice, int(tile), progress)
        result, upscaler = ctx.engine.run_tool("Upscale", lambda tool: work(tool, image))
        saved = save_upscaled(
            result, Path(ctx.engine.output_dir), choice, upscaler.scale, int(tile), str(image_path)
        )
        info = (
            f"{image.width}x{image.height} → {result.width}x{result.height} (x{upscaler.scale}, "
            f"{upscaler.architecture}); saved as {saved.name}."
        )
        return str(saved), info

    def tab(ctx):
        import gradio as gr

        from kubin.errors import KubinError
        from kubin.ui.components import refuse_non_images
        from kubin.ui.folder_batch import tool_folder_panel

        folder = models_dir(api.settings)
        choices = model_choices(folder, hub_models(api.settings))
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                source = refuse_non_images(
                    gr.Image(
                        label="Image",
                        type="filepath",
                        sources=["upload", "clipboard"],
                        elem_id="upscaler-image",
                    )
                )
                ctx.receive("upscale", source)
                with gr.Row():
                    model = gr.Dropdown(choices, value=choices[0] if choices else None, label="Upscaler model",
                                        elem_id="upscaler-model", scale=4)  # fmt: skip
                    refresh = gr.Button("↻", elem_id="upscaler-refresh", scale=0, min_width=50)
                tile = gr.Slider(0, 2048, value=int(api.settings.get("tile", DEFAULT_TILE)), step=32,
                                 label="Tile size (0 = whole image at once)",
                                 info="Smaller tiles need less memory; seams are hidden by overlapping context.",
                                 elem_id="upscaler-tile")  # fmt: skip
                go = gr.Button("Upscale", variant="primary", elem_id="upscaler-run")
                with gr.Accordion("Models folder", open=False):
                    gr.Markdown(
                        "Put Real-ESRGAN `.pth` / `.safetensors` files here; `hub:` entries download on first use."
                    )
                    where = gr.Textbox(str(folder), label="Folder", elem_id="upscaler-folder")
                    save_where = gr.Button("Save and list", elem_id="upscaler-folder-save")
            with gr.Column(scale=1, min_width=300):
                result = gr.Image(label="Upscaled", type="filepath", interactive=False, format="png",
                                  elem_id="upscaler-result")  # fmt: skip
                info = gr.Markdown(elem_id="upscaler-info")

        def on_run(image_path, choice, tile_size, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
            try:
                return run(ctx, image_path, choice, tile_size, lambda d, t: progress(d / t, desc="tiles"))
            except KubinError as exc:
                raise gr.Error(str(exc), print_exception=False) from None

        def listing(choice=None):
            options = model_choices(models_dir(api.settings), hub_models(api.settings))
            return gr.update(
                choices=options, value=choice if choice in options else (options[0] if options else None)
            )

        def on_save_folder(text, choice):
            if not str(text).strip():
                raise gr.Error("Give a folder.", print_exception=False)
            api.save_settings({"models_dir": str(text).strip()})
            return listing(choice), str(models_dir(api.settings))

        def folder_tool(choice, tile_size):
            return folder_parts(Path(ctx.engine.output_dir), choice, int(tile_size))

        with gr.Row():
            with gr.Column():
                tool_folder_panel(ctx, "upscaler", "Upscale", "upscale", [model, tile], folder_tool)

        go.click(on_run, [source, model, tile], [result, info], api_name="upscale",
                 concurrency_limit=1, concurrency_id="upscaler")  # fmt: skip
        refresh.click(listing, model, model, queue=False, api_name="upscaler_models")
        save_where.click(
            on_save_folder, [where, model], [model, where], queue=False, api_name="upscaler_folder"
        )

    api.add_tab("Upscale", tab)
    api.add_command("upscale", command, command_flags, "upscale an image or every image of a folder")

    def folder_route(context):
        """POST /kubin/api/v1/ext/upscaler/folder: every image of a server folder, as the tab's Whole folder."""
        from fastapi import Request
        from pydantic import BaseModel, Field

        from kubin.batch import tool_over_folder, tool_run_answer

        class UpscaleFolder(BaseModel):
            input_dir: str = Field(description="a folder of images on the server")
            model: str = Field(description='a checkpoint in the upscaler\'s models folder, or "hub: NAME"')
            tile: int = Field(int(api.settings.get("tile", DEFAULT_TILE)), ge=0, description="0: whole image")

        def upscale_folder(body, request):
            context.check_folder(body.input_dir, "input_dir")
            work, save = folder_parts(Path(context.engine.output_dir), body.model, body.tile)
            handle, run_state = tool_over_folder(context.engine, "Upscale", "upscale", body.input_dir, work, save,
                                                 owner=context.owner(request))  # fmt: skip
            return tool_run_answer(handle, run_state)

        upscale_folder.__annotations__.update(body=UpscaleFolder, request=Request)
        return upscale_folder

    api.add_route(
        "folder", folder_route, summary="Upscale every image of a server folder (answers when done)"
    )
    api.add_send_target("upscale", "Upscale")
