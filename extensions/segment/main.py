"""Segment: Segment Anything (SAM) turns clicked points (to include or exclude) and a box on an image into a
mask, which goes to the Inpaint tab with its image in one click.

Settings (`extensions.settings.segment`): `models_dir` (default `models/sam` in the Kubin folder), where a
SAM checkpoint such as `sam_vit_b_01ec64.pth` is used before the hub copy (downloaded on first use).
torch and segment_anything are imported on first use, never at start.
"""

# No `from __future__ import annotations`: Gradio reads the `gr.SelectData` hint of event functions.
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter

from kubin.errors import InvalidParams, first_line
from kubin.extensions import tool_files
from kubin.images import open_image

DEFAULT_DIR = "models/sam"
HUB_PREFIX = tool_files.HUB_PREFIX
# The original vit_b checkpoint on the Hugging Face hub: label -> (repo, file).
HUB_MODELS = {"SAM ViT-B": ("ybelkada/segment-anything", "checkpoints/sam_vit_b_01ec64.pth")}
KINDS = ("vit_b", "vit_l", "vit_h")
OVERLAY = (255, 64, 64)


def models_dir(settings: dict[str, Any]) -> Path:
    return tool_files.models_dir(settings, DEFAULT_DIR)


def model_kind(path: str | Path) -> str:
    """vit_b, vit_l or vit_h, from the file name as Meta published it (sam_vit_b_01ec64.pth)."""
    name = Path(path).name.lower()
    for kind in KINDS:
        if kind in name or kind.replace("_", "-") in name:
            return kind
    raise InvalidParams(
        f"{Path(path).name}: name a SAM checkpoint after its size (vit_b, vit_l or vit_h in the file name)."
    )


def model_choices(folder: Path) -> list[str]:
    return tool_files.model_choices(folder, (".pth",), HUB_MODELS)


def weights_path(choice: str, folder: Path) -> Path:
    return tool_files.weights_path(choice, folder, (".pth",), HUB_MODELS, "a Segment Anything")


def load_sam(path: str | Path, device: str = "cpu"):
    """A SAM model of the checkpoint's size with its weights, in eval mode on `device`."""
    import torch
    from segment_anything import sam_model_registry

    kind = model_kind(path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        sam = sam_model_registry[kind]()
        sam.load_state_dict(state)
    except Exception as exc:  # unreadable, not a checkpoint, or another size than its name says
        raise InvalidParams(f"Could not load {Path(path).name} as SAM {kind}: {first_line(exc)}") from None
    return sam.to(device).eval()


@dataclass
class Prompt:
    """What the user marked: points (x, y) with 1 = part of the object, 0 = not; an optional box x0,y0,x1,y1."""

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None


_NUMBER = r"-?\d+(?:\.\d+)?"


def parse_prompt(points_text: str, box_text: str) -> Prompt:
    """Points as "x,y" (include) or "x,y,0" (exclude), separated by ';' or new lines; a box as "x0,y0,x1,y1"."""
    prompt = Prompt()
    for item in re.split(r"[;\n]", points_text or ""):
        if not item.strip():
            continue
        numbers = re.findall(_NUMBER, item)
        if len(numbers) not in (2, 3):
            raise InvalidParams(f"A point is x,y or x,y,0 (to exclude); got {item.strip()!r}.")
        prompt.points.append((float(numbers[0]), float(numbers[1])))
        prompt.labels.append(int(float(numbers[2])) if len(numbers) == 3 else 1)
    if (box_text or "").strip():
        numbers = re.findall(_NUMBER, box_text)
        if len(numbers) != 4:
            raise InvalidParams(f"A box is x0,y0,x1,y1; got {box_text.strip()!r}.")
        x0, y0, x1, y1 = (float(n) for n in numbers)
        prompt.box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    return prompt


class Segmenter:
    """A SAM model and the image it last embedded (the slow part), so new prompts on it are quick."""

    def __init__(self, sam):
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(sam)
        self.image_key: Any = None

    def mask(self, image: Image.Image, prompt: Prompt, key: Any = None) -> tuple[Image.Image, float]:
        """The mask (L: 255 = the object) for `prompt` on `image`, and SAM's score for it."""
        import numpy as np
        import torch

        if prompt.empty:
            raise InvalidParams("Mark the object first: click on it, or give a box.")
        with torch.no_grad():
            if key is None or key != self.image_key:
                self.predictor.set_image(np.asarray(image.convert("RGB")))
                self.image_key = key
            points = np.array(prompt.points, dtype=np.float32) if prompt.points else None
            masks, scores, _ = self.predictor.predict(
                point_coords=points,
                point_labels=np.array(prompt.labels) if prompt.points else None,
                box=np.array(prompt.box, dtype=np.float32) if prompt.box else None,
                multimask_output=len(prompt.points) == 1 and prompt.box is None,  # one click is ambiguous
            )
        best = int(np.argmax(scores))
        return Image.fromarray((masks[best] * 255).astype(np.uint8), "L"), float(scores[best])


def grow(mask: Image.Image, pixels: int) -> Image.Image:
    """The mask widened by `pixels` on every side, so inpainting blends past the object's edge."""
    return mask.filter(ImageFilter.MaxFilter(2 * pixels + 1)) if pixels > 0 else mask


def overlay(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The image with the masked part tinted, to check the mask at a glance."""
    rgb = image.convert("RGB")
    tint = Image.blend(rgb, Image.new("RGB", rgb.size, OVERLAY), 0.5)
    return Image.composite(tint, rgb, mask)


def save_mask(
    mask: Image.Image, root: Path, model: str, prompt: Prompt, grown: int, score: float, source: str
) -> Path:
    """Save the mask under <output>/segment/<date>/ with its prompt, as every Kubin output."""
    from kubin.outputs import save_tool_output

    return save_tool_output(
        mask,
        root,
        "segment",
        model,
        {
            "points": [list(p) for p in prompt.points],
            "labels": prompt.labels,
            "box": list(prompt.box) if prompt.box else None,
            "grow": grown,
            "score": round(score, 4),
        },
        {"image": source},
    )


def setup(api):
    def run(ctx, image_path, choice, points_text, box_text, grown) -> tuple[Image.Image, str, str]:
        """Segment in the engine's queue (never on the device beside a generation); the model manager keeps
        the SAM model between clicks and frees it when a generation model needs the memory."""
        if not image_path:
            raise InvalidParams("Choose an image first.")
        prompt = parse_prompt(points_text, box_text)
        if prompt.empty:
            raise InvalidParams("Mark the object first: click on it, or give a box.")
        image = open_image(image_path, "The image")
        path = weights_path(choice, models_dir(api.settings))
        stat = Path(image_path).stat()

        def segment_job(tool) -> tuple[Image.Image, float]:
            segmenter = tool.model(f"sam:{path}", lambda device: Segmenter(load_sam(path, device)))
            return segmenter.mask(image, prompt, key=(str(image_path), stat.st_mtime_ns, stat.st_size))

        mask, score = ctx.engine.run_tool("Segment", segment_job)
        mask = grow(mask, int(grown))
        path = save_mask(
            mask, Path(ctx.engine.output_dir), choice, prompt, int(grown), score, str(image_path)
        )
        return overlay(image, mask), str(path), f"Mask saved as {path.name} (SAM score {score:.2f})."

    def tab(ctx):
        import gradio as gr

        from kubin.errors import KubinError
        from kubin.ui.components import refuse_non_images

        folder = models_dir(api.settings)
        choices = model_choices(folder)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                source = refuse_non_images(
                    gr.Image(
                        label="Image: click on the object",
                        type="filepath",
                        sources=["upload", "clipboard"],
                        elem_id="segment-image",
                    )
                )
                ctx.receive("segment", source)
                mode = gr.Radio(["Include", "Exclude", "Box corner"], value="Include", label="A click adds",
                                elem_id="segment-click-mode")  # fmt: skip
                with gr.Row():
                    points = gr.Textbox(label="Points (x,y or x,y,0 to exclude; one per line)", lines=2,
                                        elem_id="segment-points")  # fmt: skip
                    box = gr.Textbox(label="Box (x0,y0,x1,y1)", elem_id="segment-box")
                with gr.Row():
                    model = gr.Dropdown(choices, value=choices[0] if choices else None, label="Segment Anything model",
                                        elem_id="segment-model", scale=4)  # fmt: skip
                    refresh = gr.Button("↻", elem_id="segment-refresh", scale=0, min_width=50)
                grown = gr.Slider(
                    0, 64, value=8, step=1, label="Grow the mask (pixels)", elem_id="segment-grow"
                )
                with gr.Row():
                    go = gr.Button("Segment", variant="primary", elem_id="segment-run")
                    clear = gr.Button("Clear marks", elem_id="segment-clear")
            with gr.Column(scale=1, min_width=300):
                shown = gr.Image(label="Mask over the image", type="pil", interactive=False, format="png",
                                 elem_id="segment-overlay")  # fmt: skip
                mask = gr.Image(label="Mask (white = repaint)", type="filepath", interactive=False, format="png",
                                elem_id="segment-mask")  # fmt: skip
                info = gr.Markdown(elem_id="segment-info")
                send = gr.Button(
                    "→ Inpaint", elem_id="segment-send-inpaint", visible="inpaint" in ctx.task_tabs
                )

        def on_click(evt: gr.SelectData, how, points_text, box_text):
            x, y = (int(v) for v in evt.index)
            if how == "Box corner":
                corners = re.findall(_NUMBER, box_text or "")
                return points_text, f"{x},{y}" if len(corners) != 2 else f"{corners[0]},{corners[1]},{x},{y}"
            line = f"{x},{y}" + (",0" if how == "Exclude" else "")
            return ((points_text or "").rstrip() + "\n" + line).strip(), box_text

        def on_run(image_path, choice, points_text, box_text, grow_by):
            try:
                return run(ctx, image_path, choice, points_text, box_text, grow_by)
            except KubinError as exc:
                raise gr.Error(str(exc), print_exception=False) from None

        def on_send(image_path, mask_path):
            if not image_path or not mask_path:
                raise gr.Error("Segment something first.", print_exception=False)
            inpaint = ctx.task_tabs["inpaint"]
            value = inpaint.receive_value(image_path) if inpaint.receive_value else image_path
            return value, mask_path, gr.Tabs(selected="inpaint")

        def listing(choice=None):
            options = model_choices(models_dir(api.settings))
            return gr.update(
                choices=options, value=choice if choice in options else (options[0] if options else None)
            )

        private = {"queue": False, "api_visibility": "private"}
        source.select(on_click, [mode, points, box], [points, box], **private)
        clear.click(lambda: ("", ""), None, [points, box], **private)
        go.click(on_run, [source, model, points, box, grown], [shown, mask, info], api_name="segment",
                 concurrency_limit=1, concurrency_id="segment")  # fmt: skip
        refresh.click(listing, model, model, **private)
        if "inpaint" in ctx.task_tabs:
            inpaint = ctx.task_tabs["inpaint"]
            send.click(
                on_send, [source, mask], [inpaint.receive_image, inpaint.widgets["mask"], ctx.tabs], **private
            )

    api.add_tab("Segment", tab)
    api.add_send_target("segment", "Segment")
