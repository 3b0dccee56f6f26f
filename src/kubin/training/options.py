"""The settings of one training run, typed, with their ranges and help in one place: the CLI's flags,
the API's body and the Training tab read them from here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from kubin.errors import InvalidParams

SCHEDULERS = ("constant", "constant_with_warmup", "cosine", "linear")
PRECISIONS = ("no", "fp16", "bf16")
OPTIMIZERS = ("adamw", "adamw8bit")
# Starting points by GPU memory (not measured on those GPUs: no GPU was lent to this work). An option given
# with the preset wins over the preset's value. 8 GB cards are often pre-Ampere, without bf16: fp16 there.
PRESETS: dict[str, dict[str, Any]] = {
    "8gb": {"batch_size": 1, "rank": 8, "resolution": 512, "mixed_precision": "fp16",
            "gradient_checkpointing": True, "cache_latents": True, "optimizer": "adamw8bit"},
    "16gb": {"batch_size": 1, "rank": 16, "resolution": 768, "mixed_precision": "bf16",
             "gradient_checkpointing": True, "cache_latents": True, "optimizer": "adamw"},
    "24gb": {"batch_size": 2, "rank": 32, "resolution": 768, "mixed_precision": "bf16",
             "gradient_checkpointing": False, "cache_latents": True, "optimizer": "adamw"},
}  # fmt: skip


def _opt(default: Any, help: str, minimum: float | None = None, maximum: float | None = None,
         choices: tuple[str, ...] = ()) -> Any:  # fmt: skip
    metadata = {"help": help, "min": minimum, "max": maximum, "choices": choices}
    if default is list:  # a list option: a fresh empty list per run
        return field(default_factory=list, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainingOptions:
    """One run. `model`, `data` and `output` say what to train on and where the adapter goes; the rest
    has a default that suits a first try on a 16 GB GPU."""

    model: str = _opt("", "model id to train an adapter for (see `kubin models`)")
    data: str = _opt("", "folder of pictures (of short video clips for a video model), each with an optional "
                     "same-named .txt caption")  # fmt: skip
    output: str = _opt("", "the adapter's name: written as NAME.safetensors in the LoRA folder")
    target: str = _opt("", "the part to train: decoder or prior (Kandinsky 2.2), transformer (Kandinsky 5 "
                       "text to image and text to video); "
                       "default: the model's first")  # fmt: skip
    steps: int = _opt(500, "optimizer steps", 1, 1_000_000)
    epochs: int = _opt(0, "passes over the pictures; sets the steps from the pictures' count (0: use steps)",
                       0, 10_000)  # fmt: skip
    rank: int = _opt(16, "LoRA rank", 1, 1024)
    alpha: float = _opt(0.0, "LoRA alpha (0: the rank)", 0, 4096)
    learning_rate: float = _opt(1e-4, "learning rate", 1e-8, 1.0)
    lr_scheduler: str = _opt("constant", "learning-rate schedule", choices=SCHEDULERS)
    warmup_steps: int = _opt(0, "steps of learning-rate warm-up", 0, 1_000_000)
    batch_size: int = _opt(1, "pictures (or clips) per batch", 1, 256)
    gradient_accumulation: int = _opt(1, "batches per optimizer step", 1, 1024)
    resolution: int = _opt(0, "training size: buckets hold about resolution² pixels (0: the model's own size)",
                           0, 4096)  # fmt: skip
    frames: int = _opt(
        0, "video models: at most this many frames a clip, 4k+1 (0: the model's own)", 0, 10_000
    )
    fps: float = _opt(
        0.0, "video models: the frame rate the clips are sampled at (0: the model's own)", 0, 240
    )
    mixed_precision: str = _opt("no", "bf16 or fp16 on a CUDA GPU (bf16 also on the CPU; the adapter stays fp32)",
                                choices=PRECISIONS)  # fmt: skip
    optimizer: str = _opt(
        "adamw", "adamw8bit saves memory (needs bitsandbytes and a CUDA GPU)", choices=OPTIMIZERS
    )
    preset: str = _opt("", "fill the options that suit a GPU of this much memory (those given win)",
                       choices=("", *PRESETS))  # fmt: skip
    gradient_checkpointing: bool = _opt(False, "recompute activations: less memory, slower")
    cache_latents: bool = _opt(True, "encode each picture once and keep its latents/embeddings on disk")
    seed: int = _opt(0, "seed of the noise, the timesteps and the picture order", 0, 2**31 - 1)
    trigger: str = _opt("", "a word put in front of every caption (and recorded in the adapter)")
    caption_missing: bool = _opt(
        False,
        "first caption the pictures that have no .txt, with the caption model (writing their .txt files)",
    )
    checkpoint_every: int = _opt(100, "write a resumable checkpoint every N steps (and at the end)", 1, 10**6)
    sample_every: int = _opt(
        0, "make samples (images; short videos for a video model) every N steps (0: never)", 0, 10**6
    )
    sample_prompts: list[str] = _opt(list, "prompts of the samples")
    target_modules: list[str] = _opt(list, "module names the adapter wraps (default: the part's attention)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParams(f"Unknown training option(s): {', '.join(unknown)}.")
        given = {k: v for k, v in values.items() if v is not None}
        preset = PRESETS.get(str(given.get("preset", "")), {})
        return cls(**{**preset, **given})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainingOptions:
        """Types and ranges; InvalidParams names the first option out of place."""
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if f.name in ("model", "data", "output") and not str(value).strip():
                raise InvalidParams(f"Training needs --{f.name.replace('_', '-')}: {meta['help']}.")
            if meta["choices"] and value not in meta["choices"]:
                raise InvalidParams(f"{f.name} must be one of {', '.join(meta['choices'])} (got {value!r}).")
            if meta["min"] is not None and not meta["min"] <= value <= meta["max"]:
                raise InvalidParams(
                    f"{f.name} must be between {meta['min']} and {meta['max']} (got {value})."
                )
        name = PurePosixPath(self.output.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts:
            raise InvalidParams(
                f"The adapter name {self.output!r} must stay inside the LoRA folder (subfolders allowed, no '..')."
            )
        return self

    @property
    def lora_alpha(self) -> float:
        return self.alpha or float(self.rank)


def option_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(TrainingOptions))
