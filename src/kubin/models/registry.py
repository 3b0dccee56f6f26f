"""Every model Kubin knows: id, family, implementation, tasks, where the weights come from, defaults.

Adding a model means one family module and one entry here. A local folder holding a model in
diffusers layout (as `kubin save` writes it) is accepted as a model id too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubin.errors import UnknownModel


@dataclass(frozen=True)
class ModelSpec:
    id: str
    family: str  # "kd22"
    implementation: str  # "diffusers" or "native"
    tasks: tuple[str, ...]
    title: str
    module: str  # the family module under kubin.models, e.g. "kd22_diffusers"
    sources: dict[str, str] = field(default_factory=dict)  # component -> repo id or local folder
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> recommended params
    # Scheduler names offered in the UI, the model's own first; the loaded model's schedulers() agrees.
    schedulers: tuple[str, ...] = ()
    tiny: bool = False
    # Optional abilities beyond the tasks, e.g. "controlnet" (a hint image steers t2i and i2i).
    features: tuple[str, ...] = ()
    # Task parameters this model has no use for (no prior: prior_steps, ...): hidden in the UI, left out
    # of the saved metadata.
    unused_params: tuple[str, ...] = ()
    # Upper limits beyond the params' own ranges, e.g. {"frames": 121} for a 5-second video model.
    limits: dict[str, int] = field(default_factory=dict)
    # (width, height) pairs the model was trained for, offered as presets; empty = any multiple of 64.
    resolutions: tuple[tuple[int, int], ...] = ()
    # True when the model makes only those sizes: other requests snap to the nearest aspect ratio.
    resolutions_only: bool = False
    # The precision "auto" picks on a GPU when it is not the usual fp16 (models published in bf16).
    dtype: str = ""

    def supports(self, task: str) -> bool:
        return task in self.tasks

    def with_sources(self, overrides: dict[str, str] | None) -> ModelSpec:
        if not overrides:
            return self
        return replace(self, sources={**self.sources, **{k: str(v) for k, v in overrides.items() if v}})


# The 2.2 decoder loop never calls scale_model_input and passes generator= to step(), so only schedulers
# that need no input scaling and take a generator (UniPC, DEIS and PNDM do not).
KD22_SCHEDULERS = ("DDPM", "DDIM", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE")

KD22_TASKS = ("t2i", "i2i", "mix", "inpaint", "outpaint")


def _task_defaults(size: int, steps: int, prior_steps: int) -> dict[str, dict[str, Any]]:
    """Recommended values per task; only tasks with a free output size get width and height."""
    common = {"steps": steps, "guidance_scale": 4.0, "prior_steps": prior_steps, "prior_guidance_scale": 4.0}
    sized = {"width": size, "height": size, **common}
    return {
        "t2i": sized,
        "mix": sized,
        "i2i": {**common, "strength": 0.5},
        "inpaint": common,
        "outpaint": common,
    }


KD22_DEFAULTS = _task_defaults(768, steps=50, prior_steps=25)
TINY_KD22_DEFAULTS = _task_defaults(64, steps=4, prior_steps=2)

# The 2.1 decoders loop like 2.2's (no scale_model_input, generator= passed to step()); their own is DDIM.
KD21_SCHEDULERS = ("DDIM", "DDPM", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE")
KD21_TASKS = ("t2i", "i2i", "mix", "inpaint", "outpaint")
# diffusers' examples for 2.1: 768x768, 100 decoder steps, 25 prior steps, guidance 4 for both.
KD21_DEFAULTS = _task_defaults(768, steps=100, prior_steps=25)
TINY_KD21_DEFAULTS = _task_defaults(64, steps=4, prior_steps=2)

# Kandinsky 3.0: one pipeline (T5 text encoder, UNet, MoVQ), no prior and no ControlNet. Its loops
# skip scale_model_input and pass generator= to step(); Karras sigmas are left out because on its
# cosine schedule they pile the timesteps up at the end and the DPM solver steps past its last sigma.
KD30_SCHEDULERS = ("DDPM", "DDIM", "DPM++ 2M", "DPM++ SDE")
KD30_TASKS = ("t2i", "i2i")
KD30_UNUSED = ("negative_prior_prompt", "prior_steps", "prior_guidance_scale", "hint_image")


def _kd30_defaults(size: int, steps: int) -> dict[str, dict[str, Any]]:
    # diffusers' Kandinsky 3 examples: 1024x1024, 25 steps, guidance 3; image to image at strength 0.75.
    common = {"steps": steps, "guidance_scale": 3.0}
    return {"t2i": {"width": size, "height": size, **common}, "i2i": {**common, "strength": 0.75}}


KD30_DEFAULTS = _kd30_defaults(1024, steps=25)
TINY_KD30_DEFAULTS = _kd30_defaults(64, steps=4)

# Kandinsky 3.1: our conversion of the authors' checkpoints (kd31_native). The base UNet inpaints too (with
# its 9-channel twin); Flash is distilled for 4 steps without guidance, with its own sampler.
KD31_REPO = "ai-forever/Kandinsky3.1"
KD31_TASKS = ("t2i", "i2i", "inpaint", "outpaint")
KD31_FLASH_TASKS = ("t2i", "i2i")
KD31_SCHEDULERS = ("DDPM", "DDIM", "DPM++ 2M", "DPM++ SDE")
KD31_FLASH_SCHEDULERS = ("Flash",)
# A folder holding one of these files is laid out like the official repo (the first found decides).
KD31_OFFICIAL_FILES = {"weights/kandinsky3.pt": "kd31", "weights/kandinsky3_flash.pt": "kd31-flash"}


def _kd31(flash: bool, tiny: bool = False) -> ModelSpec:
    """The authors' settings: 1024x1024, 50 steps, guidance 3 (inpainting 4); Flash: 4 steps, no guidance."""
    size = 64 if tiny else 1024
    steps, guidance, inpaint_guidance = (4, 1.0, 1.0) if flash else (4 if tiny else 50, 3.0, 4.0)
    common = {"steps": steps, "guidance_scale": guidance}
    defaults = {"t2i": {"width": size, "height": size, **common}, "i2i": {**common, "strength": 0.75}}
    if not flash:
        defaults.update(inpaint={**common, "guidance_scale": inpaint_guidance},
                        outpaint={**common, "guidance_scale": inpaint_guidance})  # fmt: skip
    name = "kd31-flash" if flash else "kd31"
    return ModelSpec(
        id=f"tiny-{name}" if tiny else name,
        family="kd31",
        implementation="native",
        tasks=KD31_FLASH_TASKS if flash else KD31_TASKS,
        title=("Kandinsky 3.1 Flash" if flash else "Kandinsky 3.1")
        + (" (tiny, random weights, for tests and demos)" if tiny else ""),
        module="kd31_native",
        sources={} if tiny else {"repo": KD31_REPO},  # tiny: built by kubin.models.tiny in the same layout
        defaults=defaults,
        schedulers=KD31_FLASH_SCHEDULERS if flash else KD31_SCHEDULERS,
        features=("flash",) if flash else (),
        unused_params=KD30_UNUSED,  # no prior, no ControlNet
        tiny=tiny,
    )


MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in [
        ModelSpec(
            id="kd22",
            family="kd22",
            implementation="diffusers",
            tasks=KD22_TASKS,
            title="Kandinsky 2.2",
            module="kd22_diffusers",
            sources={
                "prior": "kandinsky-community/kandinsky-2-2-prior",
                "decoder": "kandinsky-community/kandinsky-2-2-decoder",
                "decoder_inpaint": "kandinsky-community/kandinsky-2-2-decoder-inpaint",
                "decoder_controlnet": "kandinsky-community/kandinsky-2-2-controlnet-depth",
            },
            defaults=KD22_DEFAULTS,
            schedulers=KD22_SCHEDULERS,
            features=("controlnet",),
        ),
        ModelSpec(
            id="tiny-kd22",
            family="kd22",
            implementation="diffusers",
            tasks=KD22_TASKS,
            title="Kandinsky 2.2 (tiny, random weights, for tests and demos)",
            module="kd22_diffusers",
            sources={},  # built in code by kubin.models.tiny on first use
            defaults=TINY_KD22_DEFAULTS,
            schedulers=KD22_SCHEDULERS,
            features=("controlnet",),
            tiny=True,
        ),
        ModelSpec(
            id="kd21",
            family="kd21",
            implementation="diffusers",
            tasks=KD21_TASKS,
            title="Kandinsky 2.1",
            module="kd21_diffusers",
            sources={
                "prior": "kandinsky-community/kandinsky-2-1-prior",
                "decoder": "kandinsky-community/kandinsky-2-1",
                "decoder_inpaint": "kandinsky-community/kandinsky-2-1-inpaint",
            },
            defaults=KD21_DEFAULTS,
            schedulers=KD21_SCHEDULERS,
        ),
        ModelSpec(
            id="tiny-kd21",
            family="kd21",
            implementation="diffusers",
            tasks=KD21_TASKS,
            title="Kandinsky 2.1 (tiny, random weights, for tests and demos)",
            module="kd21_diffusers",
            sources={},  # built in code by kubin.models.tiny on first use
            defaults=TINY_KD21_DEFAULTS,
            schedulers=KD21_SCHEDULERS,
            tiny=True,
        ),
        ModelSpec(
            id="kd30",
            family="kd30",
            implementation="diffusers",
            tasks=KD30_TASKS,
            title="Kandinsky 3.0",
            module="kd30_diffusers",
            sources={"pipeline": "kandinsky-community/kandinsky-3"},
            defaults=KD30_DEFAULTS,
            schedulers=KD30_SCHEDULERS,
            unused_params=KD30_UNUSED,
        ),
        ModelSpec(
            id="tiny-kd30",
            family="kd30",
            implementation="diffusers",
            tasks=KD30_TASKS,
            title="Kandinsky 3.0 (tiny, random weights, for tests and demos)",
            module="kd30_diffusers",
            sources={},  # built in code by kubin.models.tiny on first use
            defaults=TINY_KD30_DEFAULTS,
            schedulers=KD30_SCHEDULERS,
            unused_params=KD30_UNUSED,
            tiny=True,
        ),
        _kd31(flash=False),
        _kd31(flash=True),
        _kd31(flash=False, tiny=True),
    ]
}

# --- Kandinsky 5.0: one published model per task and variant ------------------------------------------
KD5_REPO = "kandinskylab/Kandinsky-5.0-{}-Diffusers"
KD5_NEGATIVE = (
    "Static, 2D cartoon, cartoon, 2d animation, paintings, images, worst quality, low quality, ugly, "
    "deformed, walking backwards"
)  # the authors' negative prompt for video, which the pipelines use when none is given
KD5_SCHEDULERS = ("Flow Match Euler",)
KD5_UNUSED_IMAGE = (
    "negative_prior_prompt",
    "prior_steps",
    "prior_guidance_scale",
    "hint_image",
    "batch_size",
)
KD5_LITE_VIDEO_SIZES = ((768, 512), (512, 768), (512, 512))
KD5_PRO_VIDEO_SIZES = ((1024, 768), (768, 1024), (768, 512), (512, 768))
# The sizes the image pipelines accept (width, height); others are snapped by aspect ratio.
KD5_IMAGE_SIZES = ((1024, 1024), (640, 1408), (1408, 640), (768, 1280), (1280, 768), (896, 1152), (1152, 896))
# Variant -> (steps, guidance): no-CFG and distilled models run without classifier-free guidance.
KD5_VARIANTS = {"sft": (50, 5.0), "pretrain": (50, 5.0), "nocfg": (50, 1.0), "distilled16steps": (16, 1.0)}
KD5_VARIANT_TITLES = {
    "sft": "SFT",
    "pretrain": "pretrain",
    "nocfg": "no-CFG",
    "distilled16steps": "distilled, 16 steps",
}


def _kd5_video(line: str, task: str, variant: str, seconds: int, sizes) -> ModelSpec:
    steps, guidance = KD5_VARIANTS[variant]
    frames = seconds * 24 + 1
    width, height = sizes[0]
    kind = "T2V" if task == "t2v" else "I2V"
    repo = KD5_REPO.format(f"{kind}-{line}-{variant}-{seconds}s")
    return ModelSpec(
        id=f"kd50-{task}-{line.lower()}-{'distilled' if variant.startswith('distilled') else variant}-{seconds}s",
        family="kd50",
        implementation="diffusers",
        tasks=(task,),
        title=f"Kandinsky 5.0 {kind} {line} {KD5_VARIANT_TITLES[variant]} {seconds} s",
        module="kd50_diffusers",
        sources={"pipeline": repo},
        # Image to video follows the init image's aspect ratio (width/height 0) unless asked otherwise.
        defaults={task: {**({"width": width, "height": height} if task == "t2v" else {}), "frames": frames,
                         "fps": 24, "steps": steps, "guidance_scale": guidance,
                         "negative_prompt": KD5_NEGATIVE if guidance > 1 else ""}},
        schedulers=KD5_SCHEDULERS,
        limits={"frames": frames, "frame_step": 4, **({"min_frames": 17} if task == "i2v" else {})},
        resolutions=sizes,
        dtype="bf16",
    )  # fmt: skip


def _kd5_image(task: str, variant: str) -> ModelSpec:
    kind = task.upper()
    defaults: dict[str, Any] = {"steps": 50, "guidance_scale": 3.5}
    if task == "t2i":
        defaults.update(width=1024, height=1024)
    return ModelSpec(
        id=f"kd50-{task}-lite-{variant}",
        family="kd50",
        implementation="diffusers",
        tasks=(task,),
        title=f"Kandinsky 5.0 {kind} Lite {KD5_VARIANT_TITLES[variant]}",
        module="kd50_diffusers",
        sources={"pipeline": KD5_REPO.format(f"{kind}-Lite-{variant}")},
        defaults={task: defaults},
        schedulers=KD5_SCHEDULERS,
        # Image editing here follows the instruction at full steps: there is no strength.
        unused_params=KD5_UNUSED_IMAGE + (("strength",) if task == "i2i" else ()),
        resolutions=KD5_IMAGE_SIZES,
        resolutions_only=True,
        dtype="bf16",
    )


def _tiny_kd5(task: str) -> ModelSpec:
    """tiny-kd50-<task>: the same pipeline class at toy size (64x64; 17 frames for video)."""
    video = task in ("t2v", "i2v")
    base = {"steps": 4, "guidance_scale": 4.0}
    if video:
        base.update(frames=17, fps=8, **({"width": 64, "height": 64} if task == "t2v" else {}))
    elif task == "t2i":
        base.update(width=64, height=64)
    return ModelSpec(
        id=f"tiny-kd50-{task}",
        family="kd50",
        implementation="diffusers",
        tasks=(task,),
        title=f"Kandinsky 5.0 {task.upper()} (tiny, random weights, for tests and demos)",
        module="kd50_diffusers",
        defaults={task: base},
        schedulers=KD5_SCHEDULERS,
        unused_params=() if video else KD5_UNUSED_IMAGE + (("strength",) if task == "i2i" else ()),
        limits={"frames": 121, "frame_step": 4, "min_frames": 17} if video else {},
        resolutions=((64, 64), (128, 64), (64, 128)),
        resolutions_only=not video,
        tiny=True,
    )


KD5_MODELS = [
    *(_kd5_video("Lite", "t2v", v, s, KD5_LITE_VIDEO_SIZES) for s in (5, 10) for v in KD5_VARIANTS),
    _kd5_video("Pro", "t2v", "sft", 5, KD5_PRO_VIDEO_SIZES),
    _kd5_video("Pro", "i2v", "sft", 5, ((768, 512), (512, 768), (1024, 768), (768, 1024))),
    _kd5_image("t2i", "sft"),
    _kd5_image("t2i", "pretrain"),
    _kd5_image("i2i", "sft"),
    _kd5_image("i2i", "pretrain"),
    *(_tiny_kd5(task) for task in ("t2v", "i2v", "t2i", "i2i")),
]
MODELS.update({spec.id: spec for spec in KD5_MODELS})

# --- Shap-E: text to 3D and image to 3D, one pipeline per task ------------------------------------------
MESH_TASK_IDS = ("t2mesh", "i2mesh")
# diffusers' Shap-E examples: 64 steps, guidance 15 from text and 3 from an image, 256 px renders.
SHAPE_DEFAULTS = {
    "t2mesh": {"steps": 64, "guidance_scale": 15.0, "frame_size": 256, "mesh_resolution": 128},
    "i2mesh": {"steps": 64, "guidance_scale": 3.0, "frame_size": 256, "mesh_resolution": 128},
}
TINY_SHAPE_DEFAULTS = {
    task: {**values, "steps": 4, "frame_size": 32, "mesh_resolution": 32}
    for task, values in SHAPE_DEFAULTS.items()
}
MODELS.update(
    {
        spec.id: spec
        for spec in [
            ModelSpec(
                id="shap-e",
                family="shap-e",
                implementation="diffusers",
                tasks=MESH_TASK_IDS,
                title="Shap-E (OpenAI)",
                module="shape_diffusers",
                sources={"t2mesh": "openai/shap-e", "i2mesh": "openai/shap-e-img2img"},
                defaults=SHAPE_DEFAULTS,
            ),
            ModelSpec(
                id="tiny-shap-e",
                family="shap-e",
                implementation="diffusers",
                tasks=MESH_TASK_IDS,
                title="Shap-E (tiny, random weights, for tests and demos)",
                module="shape_diffusers",
                sources={},  # built in code by kubin.models.tiny on first use
                defaults=TINY_SHAPE_DEFAULTS,
                tiny=True,
            ),
        ]
    }
)

# --- Kandinsky 2.0: our own implementation (kd20_native) over the official files --------------------------
# One repo holds both UNets, the autoencoder and both text encoders. The authors' recommended settings:
# 512x512, guidance 10, DDIM; 50 steps (a divisor of 1000, where our DDIM schedule is exactly theirs); their
# image-to-image strength 0.8 means "keep 80 %", which is Kubin's 0.2.
KD20_REPO = "sberbank-ai/Kandinsky_2.0"
KD20_OFFICIAL_FILE = "Kandinsky-2-0.pt"  # a folder holding it is a Kandinsky 2.0 model folder
KD20_TASKS = ("t2i", "i2i", "inpaint", "outpaint")
KD20_SCHEDULERS = ("DDIM", "DDPM", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE", "UniPC", "Euler", "Euler a")


def _kd20(tiny: bool) -> ModelSpec:
    size, steps = (64, 4) if tiny else (512, 50)
    common = {"steps": steps, "guidance_scale": 10.0}
    return ModelSpec(
        id="tiny-kd20" if tiny else "kd20",
        family="kd20",
        implementation="native",
        tasks=KD20_TASKS,
        title="Kandinsky 2.0" + (" (tiny, random weights, for tests and demos)" if tiny else ""),
        module="kd20_native",
        sources={} if tiny else {"repo": KD20_REPO},  # tiny: built in code by kubin.models.tiny on first use
        defaults={"t2i": {"width": size, "height": size, **common}, "i2i": {**common, "strength": 0.2},
                  "inpaint": common, "outpaint": common},
        schedulers=KD20_SCHEDULERS,
        unused_params=KD30_UNUSED,  # no prior, no ControlNet
        tiny=tiny,
    )  # fmt: skip


MODELS.update({spec.id: spec for spec in (_kd20(tiny=False), _kd20(tiny=True))})

# --- Kandinsky 4.0 T2V Flash: our own implementation (kd40_native) ---------------------------------
# The authors' 480p sizes (width, height). Their clips have an odd number of latent frames (2 per second
# + 1), which the CogVideoX VAE decodes to 8k+1 frames: 12 s is 25 latent frames = 97 frames at their
# 8 fps. The distilled model runs 4 steps without guidance (no negative prompt).
KD40_SIZES = ((672, 384), (384, 672), (512, 512), (736, 352), (352, 736), (544, 480), (480, 544))
KD40_UNUSED = ("negative_prompt", "guidance_scale")
KD40_SAMPLER = "Kandinsky 4 Flash (CogVideoX DDIM, renoise)"


def _kd40(tiny: bool) -> ModelSpec:
    width, height = (64, 64) if tiny else KD40_SIZES[0]
    return ModelSpec(
        id="tiny-kd40" if tiny else "kd40",
        family="kd40",
        implementation="native",
        tasks=("t2v",),
        title="Kandinsky 4.0 T2V Flash" + (" (tiny, random weights, for tests and demos)" if tiny else ""),
        module="kd40_native",
        # built in code by kubin.models.tiny on first use when tiny
        sources={} if tiny else {"dit": "ai-forever/kandinsky-4-t2v-flash", "cogvideox": "THUDM/CogVideoX-5b"},
        defaults={"t2v": {"width": width, "height": height, "frames": 17 if tiny else 97, "fps": 8,
                          "steps": 4, "guidance_scale": 1.0, "negative_prompt": ""}},
        schedulers=(KD40_SAMPLER,),
        unused_params=KD40_UNUSED,
        limits={"frames": 97, "frame_step": 8},
        resolutions=((64, 64), (128, 64), (64, 128)) if tiny else KD40_SIZES,
        dtype="bf16",
        tiny=tiny,
    )  # fmt: skip


MODELS.update({spec.id: spec for spec in (_kd40(tiny=False), _kd40(tiny=True))})
DEFAULT_MODEL = "kd50-t2v-lite-sft-5s"  # what a new install starts with

# A local model folder holds its main pipeline in one of these subfolders: decoder/ for the 2.x prior +
# decoder layout, pipeline/ for models of one pipeline (3.0, 5.0), t2mesh/ and i2mesh/ for Shap-E.
FOLDER_MAIN_PIPELINES = ("decoder", "pipeline", *MESH_TASK_IDS)
# The class in that pipeline's model_index.json -> the registry model whose spec the folder takes.
FOLDER_FAMILIES = {
    "KandinskyV22Pipeline": "kd22",
    "KandinskyPipeline": "kd21",
    "Kandinsky3Pipeline": "kd30",
    "Kandinsky5T2VPipeline": "kd50-t2v-lite-sft-5s",
    "Kandinsky5I2VPipeline": "kd50-i2v-pro-sft-5s",
    "Kandinsky5T2IPipeline": "kd50-t2i-lite-sft",
    "Kandinsky5I2IPipeline": "kd50-i2i-lite-sft",
    "ShapEPipeline": "shap-e",
    "ShapEImg2ImgPipeline": "shap-e",
}
# Written by `kubin save` next to the pipeline folders: the recommended defaults of the model saved.
FOLDER_INFO = "kubin.json"


def list_models() -> list[ModelSpec]:
    return list(MODELS.values())


def resolve_model(model_id: str, source_overrides: dict[str, dict[str, str]] | None = None) -> ModelSpec:
    """The spec for a registry id or a local model folder; anything else is a clear error."""
    overrides = (source_overrides or {}).get(model_id)
    if model_id in MODELS:
        return MODELS[model_id].with_sources(overrides)
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        return _spec_for_folder(folder)
    raise UnknownModel(
        f"Unknown model {model_id!r}. Known models: {', '.join(MODELS)}; "
        "or give the path of a model folder saved in diffusers layout."
    )


def _main_pipeline_class(folder: Path) -> str | None:
    for name in FOLDER_MAIN_PIPELINES:
        try:
            return json.loads((folder / name / "model_index.json").read_text())["_class_name"]
        except (OSError, ValueError, KeyError):
            continue
    return None


def _spec_for_folder(folder: Path) -> ModelSpec:
    if (folder / KD20_OFFICIAL_FILE).is_file():
        return _kd20_folder_spec(folder)
    for name, model_id in KD31_OFFICIAL_FILES.items():
        if (folder / name).is_file():
            base = MODELS[model_id]
            try:  # saved by `kubin save`: the saved model's defaults (a tiny one's small sizes)
                defaults = json.loads((folder / FOLDER_INFO).read_text(encoding="utf-8"))["defaults"]
            except (OSError, ValueError, KeyError):
                defaults = base.defaults
            return replace(base, id=str(folder.resolve()), title=f"{base.title} from {folder}",
                           sources={"repo": str(folder.resolve())}, defaults=defaults)  # fmt: skip
    class_name = _main_pipeline_class(folder)
    if class_name is None:
        raise UnknownModel(
            f"{folder} is not a Kubin model folder: it needs prior/ and decoder/ subfolders, or a pipeline/ "
            "subfolder, in diffusers layout (as `python -m kubin save` writes them)."
        )
    family = FOLDER_FAMILIES.get(class_name)
    if family is None:
        raise UnknownModel(f"{folder} holds a {class_name}, which Kubin cannot load yet.")
    try:
        info = json.loads((folder / FOLDER_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    # The model it was saved from gives its limits and tasks (a folder saved by other tools: the family's).
    saved_from = MODELS.get(info.get("saved_from", ""))
    base = (
        saved_from
        if saved_from is not None and saved_from.module == MODELS[family].module
        else MODELS[family]
    )
    defaults = info.get("defaults", base.defaults)
    sizes = (info.get("attributes") or {}).get("resolutions")
    return replace(
        base,
        tiny=False,  # its weights are in the folder now
        resolutions=tuple(tuple(r) for r in sizes) if sizes else base.resolutions,
        id=str(folder.resolve()),
        title=f"{base.title} from {folder}",
        sources={
            sub.name: str(sub) for sub in sorted(folder.iterdir()) if (sub / "model_index.json").is_file()
        },
        defaults=defaults,
        # Shap-E: a task whose pipeline the folder lacks is not offered.
        tasks=tuple(t for t in base.tasks if t not in MESH_TASK_IDS or (folder / t).is_dir()),
        # ControlNet needs its own decoder: only a folder that holds one has the feature.
        features=tuple(
            f for f in base.features if f != "controlnet" or (folder / "decoder_controlnet").is_dir()
        ),
    )


def _kd20_folder_spec(folder: Path) -> ModelSpec:
    """A folder in the official Kandinsky 2.0 layout (as `kubin save` writes it, or a copy of the hub repo)."""
    try:
        info = json.loads((folder / FOLDER_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    base = MODELS["kd20"]
    return replace(
        base,
        id=str(folder.resolve()),
        title=f"{base.title} from {folder}",
        sources={"repo": str(folder.resolve())},
        defaults=info.get("defaults", base.defaults),
    )
