"""What Kubin knows of a model before it loads it: `ModelSpec` (one model id: tasks, defaults, sizes,
schedulers) and `Family` (one folder under models/families: its specs, what its models can do, and how to
recognise its model folders). Light on purpose: the registry imports every family's spec at start."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# Written by `kubin save` next to the pipeline folders: the recommended defaults of the model saved.
FOLDER_INFO = "kubin.json"
TINY_NOTE = " (tiny, random weights, for tests and demos)"
# A model feature: its text encoder is a vision-language model (Kandinsky 5 and 6: Qwen2.5-VL) that also
# captions images and expands prompts (LoadedModel.caption, .expand_prompt), with no tool model beside it.
OWN_VLM = "vlm"
# The `limits` keys that narrow a task field's range: field -> (its least, its most, its step).
LIMIT_KEYS = {"frames": ("min_frames", "frames", "frame_step")}


@dataclass(frozen=True)
class ModelSpec:
    id: str
    family: str  # the id of the Family it belongs to, e.g. "kd22"
    implementation: str  # "diffusers" or "native"
    tasks: tuple[str, ...]
    title: str
    # The module that loads and runs it: `load(spec, sources, placement)`, optionally `download(spec)`,
    # `steps_per_batch(task, params)` and `find_weights(spec, sources, placement, task)`, which finds (or
    # fetches) every file a load of `task` reads and raises WeightsMissing if it cannot, before the model
    # in use is let go. Filled in by the family from its folder (its `model` module).
    module: str = ""
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
    # Limits beyond the params' own ranges (see LIMIT_KEYS): {"frames": 121, "frame_step": 4} for a 5-second
    # video model of 4k+1 frames, "min_frames" for one that needs a few. The engine refuses what is outside
    # them and the UI's widgets take their range from them.
    limits: dict[str, int] = field(default_factory=dict)
    # (width, height) pairs the model was trained for, offered as presets; empty = any multiple of 64.
    resolutions: tuple[tuple[int, int], ...] = ()
    # True when the model makes only those sizes: other requests snap to the nearest aspect ratio.
    resolutions_only: bool = False
    # The precision "auto" picks on a GPU when it is not the usual fp16 (models published in bf16).
    dtype: str = ""

    def supports(self, task: str) -> bool:
        return task in self.tasks

    def field_range(self, name: str, minimum: float | None, maximum: float | None, step: float | None):
        """A task field's (minimum, maximum, step) for this model: the params' own range, narrowed by
        the model's `limits` (frames: at least min_frames, at most frames, in steps of frame_step)."""
        keys = LIMIT_KEYS.get(name)
        if keys is None:
            return minimum, maximum, step
        least, most, every = (self.limits.get(key) for key in keys)
        if least is not None:
            minimum = least if minimum is None else max(minimum, least)
        if most is not None:
            maximum = most if maximum is None else min(maximum, most)
        return minimum, maximum, every or step

    def with_sources(self, overrides: dict[str, str] | None) -> ModelSpec:
        if not overrides:
            return self
        return replace(self, sources={**self.sources, **{k: str(v) for k, v in overrides.items() if v}})


def with_tiny_twin(spec: ModelSpec, **tiny: Any) -> tuple[ModelSpec, ModelSpec]:
    """A model and its tiny random-weight twin ("tiny-<id>", built in code: no sources), which differs in
    what `tiny` gives (its small defaults, sizes, ...)."""
    twin = replace(spec, id=f"tiny-{spec.id}", title=spec.title + TINY_NOTE, sources={}, tiny=True, **tiny)
    return spec, twin


@dataclass(frozen=True)
class LoraPart:
    """One part of a family's models that takes LoRA adapters: what a user calls it, the module names an
    adapter for it holds (a regular expression every adapted module's name matches in full), and the
    prefix diffusers writes before those names when a whole pipeline's adapters share one file.

    Where another family's part has the same module names (Kandinsky 2.1 and 2.2), `telltale` tells them
    apart by the file's layers: given {module name: (in features, out features)} it answers True (this
    part's), False (another model's) or None (nothing in the file says)."""

    name: str  # "decoder", "prior", "transformer": the loaded model's `lora_modules()` key
    title: str  # "decoder UNet"
    modules: str  # e.g. r"(down_blocks|mid_block|up_blocks)\..*"
    prefix: str = ""  # "unet", "transformer"; an adapter saved for the part alone has none
    telltale: Any = None  # Callable[[dict[str, tuple[int, int]]], bool | None]


@dataclass(frozen=True)
class Family:
    """Everything Kubin knows about one model family without loading it. The runtime, the engine and the UI
    read these fields and never name a family.

    A family lives in one package under `kubin.models.families` (or a folder listed in KUBIN_FAMILIES):
    its `__init__.py` defines `FAMILY = Family(...)`, its `model` module loads and runs the models, and its
    `tiny` module (when it has tiny models) has `build(model_id)`, returning the parts to save: pipelines
    (anything with `save_pretrained`) by folder name, and dicts written as JSON files.
    """

    id: str
    models: tuple[ModelSpec, ...]
    # Where it sits in model lists (lower first).
    order: int = 100
    # --medvram / --lowvram: the options that suit this family (runtime.presets.Preset by preset name);
    # a preset it leaves out gets the generic one.
    presets: dict[str, Any] = field(default_factory=dict)
    # Its big parts are mostly Linear layers (T5, Qwen, DiTs): int8 weight-only quantisation halves them.
    int8_helps: bool = False
    # Its VAE decodes in tiles (diffusers' VQModel, the MoVQ of 2.x and 3.x, cannot).
    vae_tiling: bool = False
    # Attention slicing saves memory on its UNet.
    attention_slicing: bool = False
    # Module name patterns of its denoiser that diffusers' TaylorSeer step cache predicts between full
    # steps (empty: TaylorSeer's own defaults).
    cache_modules: tuple[str, ...] = ()
    # Recognising model folders. Diffusers layout: a subfolder (main_pipelines) whose model_index.json names
    # one of pipeline_classes -> the model id whose spec the folder takes.
    main_pipelines: tuple[str, ...] = ()
    pipeline_classes: dict[str, str] = field(default_factory=dict)
    # Official layout: a file found at this path in the folder -> the model id it holds.
    official_files: dict[str, str] = field(default_factory=dict)
    # Tasks and features a folder offers only when it holds their subfolder (e.g. {"t2mesh": "t2mesh"}).
    task_folders: dict[str, str] = field(default_factory=dict)
    feature_folders: dict[str, str] = field(default_factory=dict)
    # The parts of its models that take LoRA adapters (kubin.models.lora recognises files by them); empty:
    # the family takes none.
    lora_parts: tuple[LoraPart, ...] = ()
    # Filled in by the registry from where the family was found.
    package: str = ""

    def module(self, name: str) -> str:
        """The dotted name of one of the family's modules ("model", "tiny")."""
        return f"{self.package}.{name}"
