"""Shared widgets: prompt boxes, sliders built from the parameter specs, seed row, size picker, gallery,
Generate and Cancel."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from kubin.errors import InvalidParams
from kubin.images import check_image_file
from kubin.params import ASPECT_RATIOS, FieldSpec, size_for_aspect

# The keyboard shortcut kubin.js gives every Generate button (class kubin-generate) from its tab's text boxes.
GENERATE_HINT = "Ctrl+Enter (⌘+Enter on a Mac) generates"


def slider(fs: FieldSpec, value: Any, **kwargs) -> gr.Slider:
    """A slider whose range, step and label come from the task's parameter spec."""
    return gr.Slider(
        minimum=fs.minimum,
        maximum=fs.maximum,
        step=fs.step,
        value=value,
        label=fs.label,
        info=fs.help or None,
        **kwargs,
    )


def switch(fs: FieldSpec, value: bool, task: str, **kwargs) -> gr.Checkbox:
    """An on/off parameter (Sound, Expand prompt) as a checkbox with its label and help."""
    return gr.Checkbox(value=bool(value), label=fs.label, info=fs.help, min_width=160,
                       elem_id=eid(task, fs.name.replace("_", "-")), **kwargs)  # fmt: skip


# The adapters a tab shows a weight slider for; more still take "name:weight" typed in the picker.
LORA_SLIDERS = 4


def lora_weight_sliders(task: str, picker: gr.Dropdown) -> list[gr.Slider]:
    """A weight slider under the LoRA picker for each adapter chosen (its "name:weight" entries): moving
    one rewrites its entry; choosing, removing or restoring adapters shows the sliders again. The picker
    stays what the job and the tab's API read."""
    from kubin.models.lora import parse_entry

    with gr.Row(elem_id=f"{task}-lora-weights", elem_classes="kubin-lora-weights"):
        sliders = [
            gr.Slider(
                -1,
                2,
                value=1,
                step=0.05,
                label="weight",
                visible=False,
                min_width=160,
                elem_id=f"{task}-lora-weight-{i}",
            )  # fmt: skip
            for i in range(LORA_SLIDERS)
        ]

    def entries_of(value) -> list[tuple[str, float]]:
        found = []
        for entry in value or []:
            try:
                found.append(parse_entry(entry))
            except InvalidParams:  # a half-typed entry: the job will say what is wrong
                continue
        return found

    def show(value):
        chosen = entries_of(value)
        return [
            gr.update(visible=True, label=f"{chosen[i][0]} weight", value=chosen[i][1])
            if i < len(chosen) else gr.update(visible=False)
            for i in range(LORA_SLIDERS)
        ]  # fmt: skip

    picker.change(show, picker, sliders, queue=False, show_progress="hidden", api_visibility="private")
    for i, weight_slider in enumerate(sliders):

        def set_weight(value, weight, i=i):
            chosen = entries_of(value)
            if i >= len(chosen):
                return gr.update()
            chosen[i] = (chosen[i][0], weight)
            return gr.update(value=[f"{name}:{w:g}" for name, w in chosen])

        weight_slider.input(
            set_weight, [picker, weight_slider], picker, queue=False, show_progress="hidden",
            api_visibility="private", trigger_mode="always_last",
        )  # fmt: skip
    return sliders


def slider_range(fs: FieldSpec) -> dict[str, Any]:
    """A slider's range as update arguments (gr.update(**slider_range(fs)))."""
    return {"minimum": fs.minimum, "maximum": fs.maximum, "step": fs.step}


def eid(task: str, name: str) -> str:
    """Element ids: text to image keeps the plain ones (#prompt, #seed); other tabs prefix their task."""
    return name if task == "t2i" else f"{task}-{name}"


def size_picker(specs: dict[str, FieldSpec], values: dict[str, Any], task: str = "t2i", resolutions=()):
    """Size presets plus width and height sliders: the model's own resolutions when it has a list (picking
    one sets both sides), else aspect ratios that keep about the same area."""
    with gr.Row(equal_height=True):
        aspect = gr.Dropdown(
            size_presets(resolutions),
            value="custom",
            label="Size preset" if resolutions else "Aspect ratio",
            min_width=120,
            elem_id=eid(task, "aspect"),
        )
        # 200 px: narrower, the slider's "2048" end label is cut off.
        width = slider(specs["width"], values["width"], min_width=200, elem_id=eid(task, "width"))
        height = slider(specs["height"], values["height"], min_width=200, elem_id=eid(task, "height"))

    def apply_aspect(choice: str, w: int, h: int):
        if choice == "custom":
            return gr.update(), gr.update()
        if "x" in choice:  # a model resolution, "768x512"
            new_w, new_h = (int(v) for v in choice.split("x"))
            return new_w, new_h
        new_w, new_h = size_for_aspect(choice, int(w) * int(h), step=int(specs["width"].step or 64))
        return new_w, new_h

    aspect.input(apply_aspect, [aspect, width, height], [width, height], show_progress="hidden", queue=False,
                 api_visibility="private")  # fmt: skip
    return aspect, width, height


def seed_row(fs: FieldSpec, value: int, task: str = "t2i"):
    """The seed box with buttons for a random seed (-1) and for reusing the last one used."""
    with gr.Row(equal_height=True):
        seed = gr.Number(
            value=value,
            label=fs.label,
            info=fs.help,
            precision=0,
            minimum=fs.minimum,
            maximum=fs.maximum,
            min_width=160,
            elem_id=eid(task, "seed"),
        )
        with gr.Column(scale=0, min_width=130):
            random_btn = gr.Button("Random", size="sm", elem_id=eid(task, "seed-random"))
            reuse_btn = gr.Button("Last used", size="sm", elem_id=eid(task, "seed-reuse"))
    random_btn.click(lambda: -1, None, seed, queue=False, show_progress="hidden", api_visibility="private")
    return seed, reuse_btn


def prompt_box(values: dict[str, Any], task: str = "t2i") -> gr.Textbox:
    return gr.Textbox(
        value=values.get("prompt", ""),
        label="Prompt",
        info=GENERATE_HINT,
        lines=3,
        elem_id=eid(task, "prompt"),
        placeholder="What to draw, e.g. a red cat on a windowsill, oil painting; "
        "{red|green} picks a variant, __colors__ a line of wildcards/colors.txt",
    )


def negative_prompt_box(values: dict[str, Any], task: str = "t2i") -> gr.Textbox:
    return gr.Textbox(
        value=values.get("negative_prompt", ""),
        label="Negative prompt",
        lines=1,
        elem_id=eid(task, "negative-prompt"),
        placeholder="What to avoid",
    )


def prompt_mode_picker(fs: FieldSpec, value: str, task: str = "t2i") -> gr.Dropdown:
    """How the prompt's {a|b} variants and __wildcards__ expand: random or every combination."""
    return gr.Dropdown(
        list(fs.choices), value=value, label=fs.label, info=fs.help, min_width=160,
        elem_id=eid(task, "prompt-mode"),
    )  # fmt: skip


def image_input(label: str, elem_id: str, **kwargs) -> gr.Image:
    """An uploaded image, handed to the engine as a file path (the engine checks and converts it); a file
    that is not an image is refused as it is uploaded."""
    image = gr.Image(label=label, type="filepath", sources=["upload", "clipboard"], elem_id=elem_id,
                     image_mode=None, **kwargs)  # fmt: skip
    return refuse_non_images(image)


def refuse_non_images(image: gr.Image) -> gr.Image:
    """Check each file uploaded to `image` (a gr.Image of type "filepath", in a tab of Kubin or of an
    extension) as it arrives: one that is not a readable image is taken out again and a message names the
    file (never the temp folder it was uploaded into), instead of the job failing at Generate. The browser
    already refuses files whose type is not an image; this catches the rest (an SVG, a .png that holds
    text, a damaged or truncated picture)."""
    pass_unreadable_uploads_on(image, lambda payload: str(payload.path) if payload.path else None)

    def check(path: str | None):
        if path:
            try:
                check_image_file(path)
            except InvalidParams as exc:
                gr.Warning(str(exc))
                return None
        return gr.skip()

    image.upload(
        check, image, image, show_progress="hidden", api_visibility="private", concurrency_limit=None
    )
    return image


def pass_unreadable_uploads_on(component: Any, value_for: Callable[[Any], Any]) -> Any:
    """Let an upload that is not a readable image through to the engine, whose check names the file and
    says it could not be read; Gradio's own preprocessing would fail first, with a message about event
    handlers. `value_for(payload)` is what the event gets instead (None: fail as before).

    Set on the instance: subclassing a Gradio component makes Gradio write a .pyi file next to our source
    when the module is imported.
    """
    preprocess = component.preprocess

    def preprocess_or_pass_on(payload):
        try:
            return preprocess(payload)
        except OSError:  # PIL's UnidentifiedImageError and truncated files
            value = value_for(payload) if payload is not None else None
            if value is None:
                raise
            return value

    component.preprocess = preprocess_or_pass_on
    return component


def size_presets(resolutions=()) -> list[str]:
    if resolutions:
        return ["custom", *(f"{w}x{h}" for w, h in resolutions)]
    return ["custom", *ASPECT_RATIOS]


def result_gallery(elem_id: str, video: bool = False) -> gr.Gallery:
    """The results of the last job, each shown whole (kubin.css lets the box grow to them); videos play in
    it (and download as mp4)."""
    return gr.Gallery(
        label="Results",
        columns=1 if video else 2,
        height="auto",
        object_fit="contain",
        preview=False,
        format="png",
        elem_id=elem_id,
        elem_classes=["kubin-results"],
        interactive=False,
    )


def generate_button(elem_id: str, **kwargs) -> gr.Button:
    """The tab's main action. kubin.js clicks it on Ctrl/Cmd+Enter in the tab's text boxes and, on a narrow
    screen, brings the tab's results (class kubin-results), where the progress shows, into view."""
    return gr.Button("Generate", variant="primary", elem_id=elem_id, elem_classes=["kubin-generate"], scale=3,
                     min_width=120, **kwargs)  # fmt: skip


def cancel_button(elem_id: str) -> gr.Button:
    """Secondary to Generate, and active only while the tab has a job (see cancel_state)."""
    return gr.Button("Cancel", variant="secondary", interactive=False, elem_id=elem_id, scale=1, min_width=80)


def cancel_state(ctx, owner: str) -> dict:
    """The Cancel button once a job has ended: still active when the same owner has another one queued."""
    return gr.update(interactive=ctx.has_jobs(owner))


def model_picker(ctx, task: str, elem_id: str) -> gr.Dropdown:
    """The models that can run `task`; the one selected at start is preselected when it can."""
    specs = [s for s in ctx.models() if s.supports(task)]
    ids = [s.id for s in specs]
    value = ctx.model_id if ctx.model_id in ids else (ids[0] if ids else None)
    if ctx.model_id not in ids:  # prefer the start model's family (a tiny one for a tiny one)
        try:
            start = ctx.spec(ctx.model_id)
            value = next(
                (s.id for s in specs if (s.family, s.tiny) == (start.family, start.tiny)), None
            ) or next((s.id for s in specs if s.tiny == start.tiny), value)
        except Exception:
            pass
    return gr.Dropdown(
        [(f"{s.id} · {s.title}", s.id) for s in specs],
        value=value,
        label="Model",
        elem_id=elem_id,
        allow_custom_value=True,
        info="an id, or the path of a model folder",
    )


def scheduler_choices(ctx, model_id: str) -> list[tuple[str, str]]:
    try:
        names = list(ctx.spec(model_id).schedulers)
    except Exception:
        names = []
    own = f"Model default ({names[0]})" if names else "Model default"
    return [(own, "")] + [(n, n) for n in names[1:]] + ([(names[0], names[0])] if names else [])


def save_upload(image: Image.Image) -> str:
    """Write an image made in the browser (an editor's background or drawn mask) to a temp PNG for the engine.

    The engine keeps its own copy of every input beside the outputs, so these files are disposable.
    """
    folder = Path(tempfile.gettempdir()) / "kubin-ui-inputs"
    folder.mkdir(exist_ok=True)
    digest = hashlib.sha256(image.tobytes() + repr((image.mode, image.size)).encode()).hexdigest()[:20]
    path = folder / f"{digest}.png"
    if not path.exists():
        image.save(path, format="PNG")
    return str(path)
