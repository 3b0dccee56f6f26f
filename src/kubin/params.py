"""Typed parameters of every task, with their ranges, defaults and labels in one place.

The UI, the CLI and the engine read these specs; none of them restates a range. Fields that name
input images carry kind="image" so that the engine knows to load and check them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kubin.errors import InvalidParams
from kubin.models.lora import entry_text

SEED_MAX = 2**32 - 1
SIZE_STEP = 64
MAX_SIDE = 2048


def spec(
    default: Any,
    *,
    label: str,
    minimum: float | None = None,
    maximum: float | None = None,
    step: float | None = None,
    help: str = "",
    kind: str = "",
    choices: tuple[str, ...] = (),
) -> Any:
    """A dataclass field that also carries its label, range, step, kind and choices for UIs and validation."""
    meta = {"label": label, "minimum": minimum, "maximum": maximum, "step": step, "help": help, "kind": kind,
            "choices": choices}  # fmt: skip
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: type  # int, float, str, bool or list
    default: Any
    label: str
    minimum: float | None
    maximum: float | None
    step: float | None
    help: str
    kind: str = ""  # "image" for paths of input images
    item_type: type | None = None  # for lists
    choices: tuple[str, ...] = ()  # the only values a text field takes, when it has a fixed set


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
_KIND_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def _convert(value: Any, to: type) -> Any:
    if to is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    if to is float:
        return float(value)
    if to is bool:
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
    return value if isinstance(value, str) else str(value)


@dataclass
class TaskParams:
    """Base of every task's parameters: field specs, dict round trip and range validation."""

    task: ClassVar[str] = ""

    @classmethod
    def field_specs(cls) -> dict[str, FieldSpec]:
        out = {}
        for f in dataclasses.fields(cls):
            meta, annotation = f.metadata, str(f.type)
            item_type = None
            if annotation.startswith("list["):
                ftype, item_type = list, _TYPES.get(annotation[5:-1], str)
            else:
                ftype = f.type if isinstance(f.type, type) else _TYPES.get(annotation, str)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out[f.name] = FieldSpec(
                f.name, ftype, default, meta.get("label", f.name), meta.get("minimum"), meta.get("maximum"),
                meta.get("step"), meta.get("help", ""), meta.get("kind", ""), item_type, meta.get("choices", ()),
            )  # fmt: skip
        return out

    @classmethod
    def image_fields(cls) -> list[str]:
        return [name for name, fs in cls.field_specs().items() if fs.kind == "image"]

    @classmethod
    def video_fields(cls) -> list[str]:
        return [name for name, fs in cls.field_specs().items() if fs.kind == "video"]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TaskParams:
        """Build from plain values (JSON, CLI, widgets), converting types; unknown names are an error.

        A list of numbers also takes comma-separated strings ("0.5, 0.5").
        """
        specs = cls.field_specs()
        unknown = sorted(set(values) - set(specs))
        if unknown:
            raise InvalidParams(f"Unknown parameter(s) for {cls.task}: {', '.join(unknown)}.")
        converted = {}
        for name, value in values.items():
            fs = specs[name]
            if value is None:
                continue
            try:
                if fs.kind == "lora":  # "name:weight" strings, or {"name": ..., "weight": ...} from JSON
                    items = [value] if isinstance(value, (str, dict)) else list(value)
                    converted[name] = [entry_text(v) for v in items]
                    continue
                if fs.type is list:
                    items = [value] if isinstance(value, str) else list(value)
                    if fs.item_type is not str:  # numbers may come as one "64,0,64,0"
                        items = [
                            part for v in items for part in (v.split(",") if isinstance(v, str) else [v])
                        ]
                    converted[name] = [
                        _convert(v.strip() if isinstance(v, str) else v, fs.item_type) for v in items
                    ]
                else:
                    converted[name] = _convert(value, fs.type)
            except (TypeError, ValueError):
                kind = _KIND_WORDS.get(fs.item_type or fs.type, "text")
                what = f"a list of {kind.removeprefix('a ')}s" if fs.type is list else kind
                raise InvalidParams(f"{fs.label} must be {what} (got {value!r}).") from None
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TaskParams:
        """Check every ranged field and every field with choices; raise InvalidParams naming the first bad
        one. Returns self."""
        for fs in self.field_specs().values():
            values = getattr(self, fs.name)
            if fs.choices and values not in fs.choices:
                raise InvalidParams(f"{fs.label} must be one of {', '.join(fs.choices)} (got {values!r}).")
            for value in values if fs.type is list else [values]:
                if (fs.minimum is not None and value < fs.minimum) or (
                    fs.maximum is not None and value > fs.maximum
                ):
                    raise InvalidParams(
                        f"{fs.label} must be between {_num(fs.minimum)} and {_num(fs.maximum)} (got {_num(value)})."
                    )
        return self

    def check_prompt_lengths(self, max_chars: int) -> TaskParams:
        """Refuse a prompt (or negative prompt, or one of Mix's prompts) over `max_chars` characters, with
        InvalidParams naming it; a huge prompt would be written into every output's metadata. Returns self."""
        for fs in self.field_specs().values():
            if not fs.name.endswith(("prompt", "prompts")):
                continue
            value = getattr(self, fs.name)
            what = f"One of the {fs.label.lower()}" if isinstance(value, list) else fs.label
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str) and len(text) > max_chars:
                    raise InvalidParams(
                        f"{what} is {len(text):,} characters long; the limit is {max_chars:,} "
                        "(max_prompt_chars in the config)."
                    )
        return self


def _num(x: float | None) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


# --- the fields Kandinsky image tasks share -----------------------------------------------------
def _prompt():
    return spec("", label="Prompt")


PROMPT_MODES = ("random", "combinatorial")


def _prompt_mode():
    return spec(
        "random", label="Dynamic prompts", choices=PROMPT_MODES,
        help="{a|b} and wildcards in the prompt: random picks one per output by its seed, combinatorial makes "
        "every combination",
    )  # fmt: skip


def _negative_prompt():
    return spec("", label="Negative prompt")


def _negative_prior_prompt():
    return spec(
        "",
        label="Negative prior prompt",
        help="what the prior steers away from; empty uses the negative prompt",
    )


def _size(name: str, default: int, from_image: bool = False):
    if from_image:
        return spec(
            0, label=name, minimum=0, maximum=MAX_SIDE, step=SIZE_STEP, help="0 keeps the init image's size"
        )
    return spec(default, label=name, minimum=64, maximum=MAX_SIDE, step=SIZE_STEP)


def _init_image():
    return spec("", label="Init image", kind="image", help="path of the image to start from")


def _hint_image():
    return spec(
        "", label="ControlNet hint", kind="image",
        help="a depth map (white = near) or a photo to estimate one from, that steers the layout; needs a model "
        "with ControlNet",
    )  # fmt: skip


ESTIMATE_DEPTH = ("auto", "always", "never")


def _estimate_depth():
    return spec(
        "auto", label="Estimate depth", choices=ESTIMATE_DEPTH,
        help="turn the hint into a depth map with the depth model first: auto when it is not a grey depth map "
        "yet, always, or never (use it as it is)",
    )  # fmt: skip


def _loras():
    return spec(
        [], label="LoRA", kind="lora",
        help="adapters as name:weight (weight 1 when left out), from the LoRA folder or a file's path; "
        "<lora:name:weight> in the prompt adds one too",
    )  # fmt: skip


def _steps():
    return spec(50, label="Steps", minimum=1, maximum=500, step=1)


def _guidance():
    return spec(4.0, label="Guidance scale", minimum=0.0, maximum=30.0, step=0.5)


def _prior_steps():
    return spec(25, label="Prior steps", minimum=2, maximum=200, step=1)


def _prior_guidance():
    return spec(4.0, label="Prior guidance scale", minimum=0.0, maximum=30.0, step=0.5)


def _seed():
    return spec(-1, label="Seed", minimum=-1, maximum=SEED_MAX, step=1, help="-1 picks a random seed")


def _batch_count():
    return spec(1, label="Batch count", minimum=1, maximum=100, step=1, help="jobs run one after another")


def _batch_size():
    return spec(1, label="Batch size", minimum=1, maximum=16, step=1, help="images per pipeline call")


def _scheduler():
    return spec("", label="Scheduler", help="empty uses the model's own scheduler")


@dataclass
class ImageTaskParams(TaskParams):
    """What every Kandinsky image task has: seeds, batches, steps; sizes are multiples of 64."""

    output_kind: ClassVar[str] = "image"  # what one output is called in messages

    @property
    def image_count(self) -> int:
        return self.batch_count * self.batch_size

    @property
    def prior_negative(self) -> str:
        """The prior's negative prompt: its own if given, else the negative prompt."""
        return self.negative_prior_prompt or self.negative_prompt

    def steps_per_batch(self) -> int:
        """The denoising steps one batch reports through the progress hook (prior + decoder)."""
        return self.prior_steps + self.steps

    def validate(self) -> ImageTaskParams:
        super().validate()
        for name in ("width", "height"):
            value = getattr(self, name, 0)
            if value % SIZE_STEP:
                raise InvalidParams(
                    f"{name.capitalize()} must be a multiple of {SIZE_STEP} (got {value}); "
                    f"the nearest are {value // SIZE_STEP * SIZE_STEP or SIZE_STEP} and {(value // SIZE_STEP + 1) * SIZE_STEP}."
                )
        return self


@dataclass
class Text2ImageParams(ImageTaskParams):
    """Text to image: a prior turns the prompt into an image embedding, a decoder paints it."""

    task: ClassVar[str] = "t2i"

    prompt: str = _prompt()
    negative_prompt: str = _negative_prompt()
    negative_prior_prompt: str = _negative_prior_prompt()
    width: int = _size("Width", 768)
    height: int = _size("Height", 768)
    steps: int = _steps()
    guidance_scale: float = _guidance()
    prior_steps: int = _prior_steps()
    prior_guidance_scale: float = _prior_guidance()
    seed: int = _seed()
    batch_count: int = _batch_count()
    batch_size: int = _batch_size()
    scheduler: str = _scheduler()
    loras: list[str] = _loras()
    prompt_mode: str = _prompt_mode()
    hint_image: str = _hint_image()
    estimate_depth: str = _estimate_depth()


@dataclass
class Image2ImageParams(ImageTaskParams):
    """Image to image: the init image, noised by `strength`, is repainted toward the prompt."""

    task: ClassVar[str] = "i2i"

    prompt: str = _prompt()
    negative_prompt: str = _negative_prompt()
    negative_prior_prompt: str = _negative_prior_prompt()
    init_image: str = _init_image()
    strength: float = spec(
        0.5, label="Strength", minimum=0.0, maximum=1.0, step=0.05,
        help="how much to change: near 0 keeps the image, 1 ignores it",
    )  # fmt: skip
    width: int = _size("Width", 0, from_image=True)
    height: int = _size("Height", 0, from_image=True)
    steps: int = _steps()
    guidance_scale: float = _guidance()
    prior_steps: int = _prior_steps()
    prior_guidance_scale: float = _prior_guidance()
    seed: int = _seed()
    batch_count: int = _batch_count()
    batch_size: int = _batch_size()
    scheduler: str = _scheduler()
    loras: list[str] = _loras()
    prompt_mode: str = _prompt_mode()
    hint_image: str = _hint_image()
    estimate_depth: str = _estimate_depth()

    def decoder_steps(self) -> int:
        """Image to image runs only the last `strength` share of the schedule."""
        return min(int(self.steps * self.strength), self.steps)

    def steps_per_batch(self) -> int:
        return self.prior_steps + self.decoder_steps()

    def validate(self) -> Image2ImageParams:
        super().validate()
        if self.decoder_steps() < 1:
            raise InvalidParams(
                f"Strength {self.strength} with {self.steps} steps leaves no step to run; "
                "raise the strength or the steps (strength x steps must be at least 1)."
            )
        return self


@dataclass
class InpaintParams(ImageTaskParams):
    """Inpainting: the white part of the mask is repainted, the rest of the image is kept as it is."""

    task: ClassVar[str] = "inpaint"

    prompt: str = _prompt()
    negative_prompt: str = _negative_prompt()
    negative_prior_prompt: str = _negative_prior_prompt()
    init_image: str = _init_image()
    mask: str = spec("", label="Mask", kind="image", help="white = repaint, black = keep")
    invert_mask: bool = spec(False, label="Invert mask", help="repaint the black part instead")
    mask_blur: int = spec(
        4, label="Mask blur", minimum=0, maximum=64, step=1, help="softens the mask edge (pixels)"
    )
    steps: int = _steps()
    guidance_scale: float = _guidance()
    prior_steps: int = _prior_steps()
    prior_guidance_scale: float = _prior_guidance()
    seed: int = _seed()
    batch_count: int = _batch_count()
    batch_size: int = _batch_size()
    scheduler: str = _scheduler()
    loras: list[str] = _loras()
    prompt_mode: str = _prompt_mode()


@dataclass
class OutpaintParams(ImageTaskParams):
    """Outpainting: the canvas grows on the chosen sides and the new area is painted to match."""

    task: ClassVar[str] = "outpaint"

    prompt: str = _prompt()
    negative_prompt: str = _negative_prompt()
    negative_prior_prompt: str = _negative_prior_prompt()
    init_image: str = _init_image()
    expand: list[int] = spec(
        [0, 0, 0, 0], label="Expand", minimum=0, maximum=MAX_SIDE, step=8,
        help="pixels to add: left, top, right, bottom",
    )  # fmt: skip
    aspect: str = spec(
        "", label="Target aspect ratio", help="e.g. 16:9: grow evenly to reach it (instead of expand)"
    )
    feather: int = spec(
        16, label="Seam feather", minimum=0, maximum=256, step=1, help="blend width at the seam (pixels)"
    )
    steps: int = _steps()
    guidance_scale: float = _guidance()
    prior_steps: int = _prior_steps()
    prior_guidance_scale: float = _prior_guidance()
    seed: int = _seed()
    batch_count: int = _batch_count()
    batch_size: int = _batch_size()
    scheduler: str = _scheduler()
    loras: list[str] = _loras()
    prompt_mode: str = _prompt_mode()

    def validate(self) -> OutpaintParams:
        super().validate()
        if self.aspect:
            parse_aspect(self.aspect)
        else:
            if len(self.expand) != 4:
                raise InvalidParams(
                    f"Expand takes four numbers, left, top, right, bottom (got {len(self.expand)})."
                )
            if not any(self.expand):
                raise InvalidParams(
                    "Nothing to outpaint: expand at least one side, or give a target aspect ratio."
                )
        return self


@dataclass
class MixParams(ImageTaskParams):
    """Mix: images and prompts blended by weight in the prior's embedding space, then decoded."""

    task: ClassVar[str] = "mix"

    images: list[str] = spec([], label="Images", kind="image", help="paths of the images to mix")
    prompts: list[str] = spec([], label="Prompts", help="texts to mix, after the images")
    weights: list[float] = spec(
        [], label="Weights", minimum=-10.0, maximum=10.0, step=0.05,
        help="one per image, then one per prompt; normalised to sum 1",
    )  # fmt: skip
    negative_prompt: str = _negative_prompt()
    negative_prior_prompt: str = _negative_prior_prompt()
    width: int = _size("Width", 768)
    height: int = _size("Height", 768)
    steps: int = _steps()
    guidance_scale: float = _guidance()
    prior_steps: int = _prior_steps()
    prior_guidance_scale: float = _prior_guidance()
    seed: int = _seed()
    batch_count: int = _batch_count()
    batch_size: int = _batch_size()
    scheduler: str = _scheduler()
    loras: list[str] = _loras()

    @property
    def prompt(self) -> str:  # what the A1111 `parameters` line shows
        return " | ".join(self.prompts)

    def steps_per_batch(self) -> int:
        return self.steps  # the prior runs inside diffusers' interpolate, which reports no steps

    def validate(self) -> MixParams:
        super().validate()
        items = len(self.images) + len(self.prompts)
        if items < 2:
            raise InvalidParams(f"Mix needs at least 2 images and/or prompts (got {items}).")
        if len(self.weights) != items:
            raise InvalidParams(
                f"Mix needs one weight per image and prompt: {items} item(s) but {len(self.weights)} weight(s)."
            )
        if abs(sum(self.weights)) < 1e-6:
            raise InvalidParams(
                "The mix weights add up to zero, so they cannot be normalised; give them a non-zero total."
            )
        if any(not p.strip() for p in self.prompts):
            raise InvalidParams("A mix prompt is empty; remove it or write some text.")
        return self

    def normalised_weights(self) -> list[float]:
        total = sum(self.weights)
        return [w / total for w in self.weights]


# --- video ---------------------------------------------------------------------------------------
VIDEO_SIZE_STEP = 16  # the video VAE downsamples 8x and the transformer patches 2x2


def _video_size(name: str, default: int, from_image: bool = False):
    return spec(
        default, label=name, minimum=0 if from_image else 64, maximum=MAX_SIDE, step=VIDEO_SIZE_STEP,
        help="0 follows the init image's aspect ratio" if from_image else "",
    )  # fmt: skip


def _frames():
    return spec(
        121, label="Frames", minimum=1, maximum=481, step=4,
        help="video length in frames (4k+1: 121 is 5 s at 24 fps); the model's limit applies",
    )  # fmt: skip


def _fps():
    return spec(24, label="FPS", minimum=1, maximum=60, step=1, help="frames per second of the saved video")


def _sample_audio():
    return spec(True, label="Sound", help="a soundtrack with the video (in the mp4, and a WAV beside it)")


def _expand_prompt():
    return spec(
        False, label="Expand prompt",
        help="the model first rewrites the prompt into a detailed scene and sound description (saved with it)",
    )  # fmt: skip


# The video parameters that only models with a soundtrack read (Kandinsky 6): the others list them as unused.
SOUND_PARAMS = ("sample_audio", "expand_prompt")


@dataclass
class VideoTaskParams(ImageTaskParams):
    """What the video tasks share: one video per pipeline call, frames at a frame rate."""

    batch_size: ClassVar[int] = 1  # one video per call: video memory grows with every frame
    output_kind: ClassVar[str] = "video"

    def steps_per_batch(self) -> int:
        return self.steps

    def validate(self) -> VideoTaskParams:
        TaskParams.validate(self)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value % VIDEO_SIZE_STEP:
                step = VIDEO_SIZE_STEP
                raise InvalidParams(
                    f"{name.capitalize()} must be a multiple of {step} for video (got {value}); "
                    f"the nearest are {value // step * step or step} and {(value // step + 1) * step}."
                )
        return self


@dataclass
class Text2VideoParams(VideoTaskParams):
    """Text to video: the prompt becomes a clip of `frames` frames."""

    task: ClassVar[str] = "t2v"

    prompt: str = _prompt()
    negative_prompt: str = _negative_prompt()
    width: int = _video_size("Width", 768)
    height: int = _video_size("Height", 512)
    frames: int = _frames()
    fps: int = _fps()
    steps: int = _steps()
    guidance_scale: float = spec(5.0, label="Guidance scale", minimum=0.0, maximum=30.0, step=0.5)
    seed: int = _seed()
    batch_count: int = spec(1, label="Videos", minimum=1, maximum=100, step=1, help="made one after another")
    scheduler: str = _scheduler()
    loras: list[str] = _loras()
    prompt_mode: str = _prompt_mode()
    sample_audio: bool = _sample_audio()
    expand_prompt: bool = _expand_prompt()


@dataclass
class Image2VideoParams(VideoTaskParams):
    """Image to video: the init image is the first frame and the prompt says what happens next."""

    task: ClassVar[str] = "i2v"

    prompt: str = _prompt()
    negative_prompt: str = _negative_prompt()
    init_image: str = spec("", label="Init image", kind="image", help="the first frame of the video")
    width: int = _video_size("Width", 0, from_image=True)
    height: int = _video_size("Height", 0, from_image=True)
    frames: int = _frames()
    fps: int = _fps()
    steps: int = _steps()
    guidance_scale: float = spec(5.0, label="Guidance scale", minimum=0.0, maximum=30.0, step=0.5)
    seed: int = _seed()
    batch_count: int = spec(1, label="Videos", minimum=1, maximum=100, step=1, help="made one after another")
    scheduler: str = _scheduler()
    loras: list[str] = _loras()
    prompt_mode: str = _prompt_mode()
    sample_audio: bool = _sample_audio()
    expand_prompt: bool = _expand_prompt()


VIDEO_SCALES = ("2", "2.25", "4")  # what the Kandinsky 6 super-resolution pipeline makes


@dataclass
class VideoUpscaleParams(VideoTaskParams):
    """Video upscale: any video made 2, 2.25 or 4 times wider and taller by a video super-resolution model,
    in overlapping tiles; its frame rate and its sound are kept."""

    task: ClassVar[str] = "vsr"

    init_video: str = spec(
        "", label="Video", kind="video", help="path of the video to upscale (an mp4 or another video file)"
    )
    scale: str = spec("2", label="Scale", choices=VIDEO_SCALES, help="how many times wider and taller")
    steps: int = spec(2, label="Steps", minimum=1, maximum=50, step=1)
    tile_overlap: float = spec(
        0.2, label="Tile overlap", minimum=0.0, maximum=0.9, step=0.05,
        help="the least share of a tile its neighbours cover: more hides seams better, and takes longer",
    )  # fmt: skip
    seed: int = _seed()
    batch_count: int = spec(1, label="Videos", minimum=1, maximum=100, step=1, help="made one after another")

    def validate(self) -> VideoUpscaleParams:
        TaskParams.validate(self)  # no width or height: the size follows the video and the scale
        return self


# --- 3D (Shap-E) ----------------------------------------------------------------------------------
MESH_FRAME_STEP = 32  # Shap-E renders the turntable in whole batches of 4096 rays (20 views x size²)


def _frame_size(default: int):
    return spec(
        default, label="Preview size", minimum=32, maximum=512, step=MESH_FRAME_STEP,
        help="side of the turntable preview in pixels (a multiple of 32)",
    )  # fmt: skip


def _mesh_resolution():
    return spec(
        128, label="Mesh resolution", minimum=16, maximum=256, step=16,
        help="marching-cubes grid per side: higher is finer, slower and needs more memory",
    )  # fmt: skip


@dataclass
class MeshTaskParams(ImageTaskParams):
    """What the 3D tasks share: one object per pipeline call, a turntable preview and a mesh."""

    batch_size: ClassVar[int] = 1  # one object per call
    output_kind: ClassVar[str] = "3D object"

    def steps_per_batch(self) -> int:
        return self.steps

    def validate(self) -> MeshTaskParams:
        TaskParams.validate(self)
        if self.frame_size % MESH_FRAME_STEP:
            step = MESH_FRAME_STEP
            raise InvalidParams(
                f"Preview size must be a multiple of {step} for Shap-E (got {self.frame_size}); "
                f"the nearest are {max(step, self.frame_size // step * step)} and {(self.frame_size // step + 1) * step}."
            )
        return self


@dataclass
class Text2MeshParams(MeshTaskParams):
    """Text to 3D: Shap-E turns the prompt into a 3D object, saved as a mesh with a turntable preview."""

    task: ClassVar[str] = "t2mesh"

    prompt: str = _prompt()
    guidance_scale: float = spec(15.0, label="Guidance scale", minimum=0.0, maximum=30.0, step=0.5)
    steps: int = spec(64, label="Steps", minimum=1, maximum=500, step=1)
    frame_size: int = _frame_size(64)
    mesh_resolution: int = _mesh_resolution()
    seed: int = _seed()
    batch_count: int = spec(1, label="Objects", minimum=1, maximum=100, step=1, help="made one after another")
    prompt_mode: str = _prompt_mode()

    def validate(self) -> Text2MeshParams:
        super().validate()
        if not self.prompt.strip():
            raise InvalidParams('Text to 3D needs a prompt: describe the object, e.g. "a wooden chair".')
        return self


@dataclass
class Image2MeshParams(MeshTaskParams):
    """Image to 3D: Shap-E turns a picture of one object into a 3D object (a mesh and a turntable preview)."""

    task: ClassVar[str] = "i2mesh"

    init_image: str = spec(
        "", label="Init image", kind="image", help="a picture of one object, ideally on a plain background"
    )
    guidance_scale: float = spec(3.0, label="Guidance scale", minimum=0.0, maximum=30.0, step=0.5)
    steps: int = spec(64, label="Steps", minimum=1, maximum=500, step=1)
    frame_size: int = _frame_size(64)
    mesh_resolution: int = _mesh_resolution()
    seed: int = _seed()
    batch_count: int = spec(1, label="Objects", minimum=1, maximum=100, step=1, help="made one after another")


TASK_PARAMS: dict[str, type[ImageTaskParams]] = {
    cls.task: cls
    for cls in (
        Text2ImageParams,
        Image2ImageParams,
        MixParams,
        InpaintParams,
        OutpaintParams,
        Text2VideoParams,
        Image2VideoParams,
        VideoUpscaleParams,
        Text2MeshParams,
        Image2MeshParams,
    )  # fmt: skip
}
VIDEO_TASKS = ("t2v", "i2v")
MESH_TASKS = ("t2mesh", "i2mesh")
TASK_LABELS = {
    "t2i": "Text to image", "i2i": "Image to image", "mix": "Mix", "inpaint": "Inpaint", "outpaint": "Outpaint",
    "t2v": "Text to video", "i2v": "Image to video", "vsr": "Video upscale", "t2mesh": "Text to 3D", "i2mesh": "Image to 3D",
}  # fmt: skip


def params_class(task: str) -> type[ImageTaskParams]:
    try:
        return TASK_PARAMS[task]
    except KeyError:
        raise InvalidParams(f"Unknown task {task!r}; known tasks: {', '.join(TASK_PARAMS)}.") from None


ASPECT_RATIOS = ["1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9", "9:21"]


def parse_aspect(aspect: str) -> float:
    """Width over height for "16:9"; a clear error otherwise."""
    try:
        a, b = (float(x) for x in aspect.split(":"))
        if a <= 0 or b <= 0:
            raise ValueError
    except ValueError:
        raise InvalidParams(f"Aspect ratio must look like 16:9 (got {aspect!r}).") from None
    return a / b


def size_for_aspect(aspect: str, area: int, step: int = SIZE_STEP, limit: int = MAX_SIDE) -> tuple[int, int]:
    """Width and height (multiples of step) with the given aspect ratio and about the given pixel area."""
    ratio = parse_aspect(aspect)
    height_units = (area / ratio) ** 0.5
    width = max(step, min(limit, round(ratio * height_units / step) * step))
    height = max(step, min(limit, round(height_units / step) * step))
    return width, height
