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
    ]
}

# The class in a folder's model_index.json tells which family a local model folder holds.
FOLDER_FAMILIES = {"KandinskyV22Pipeline": "kd22", "KandinskyPipeline": "kd21"}
# Written by `kubin save` next to prior/ and decoder/: the recommended defaults of the model saved.
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


def _spec_for_folder(folder: Path) -> ModelSpec:
    decoder_index = folder / "decoder" / "model_index.json"
    try:
        class_name = json.loads(decoder_index.read_text())["_class_name"]
    except (OSError, ValueError, KeyError):
        raise UnknownModel(
            f"{folder} is not a Kubin model folder: it needs prior/ and decoder/ subfolders in diffusers layout "
            "(as `python -m kubin save` writes them)."
        ) from None
    family = FOLDER_FAMILIES.get(class_name)
    if family is None:
        raise UnknownModel(f"{folder} holds a {class_name}, which Kubin cannot load yet.")
    base = MODELS[family]
    try:
        defaults = json.loads((folder / FOLDER_INFO).read_text(encoding="utf-8"))["defaults"]
    except (OSError, ValueError, KeyError):  # a folder saved by other tools: the family's defaults
        defaults = base.defaults
    return replace(
        base,
        id=str(folder.resolve()),
        title=f"{base.title} from {folder}",
        sources={
            sub.name: str(sub) for sub in sorted(folder.iterdir()) if (sub / "model_index.json").is_file()
        },
        defaults=defaults,
        # ControlNet needs its own decoder: only a folder that holds one has the feature.
        features=tuple(
            f for f in base.features if f != "controlnet" or (folder / "decoder_controlnet").is_dir()
        ),
    )
