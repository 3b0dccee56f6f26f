"""Typed parameters of every task, with their ranges, defaults and labels in one place.

The UI, the CLI and the engine read these specs; none of them restates a range.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kubin.errors import InvalidParams

SEED_MAX = 2**32 - 1
SIZE_STEP = 64


def spec(
    default: Any,
    *,
    label: str,
    minimum: float | None = None,
    maximum: float | None = None,
    step: float | None = None,
    help: str = "",
) -> Any:
    """A dataclass field that also carries its label, range and step for UIs and validation."""
    return field(
        default=default,
        metadata={"label": label, "minimum": minimum, "maximum": maximum, "step": step, "help": help},
    )


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: type
    default: Any
    label: str
    minimum: float | None
    maximum: float | None
    step: float | None
    help: str


@dataclass
class TaskParams:
    """Base of every task's parameters: field specs, dict round trip and range validation."""

    task: ClassVar[str] = ""

    @classmethod
    def field_specs(cls) -> dict[str, FieldSpec]:
        types = {"int": int, "float": float, "str": str, "bool": bool}
        out = {}
        for f in dataclasses.fields(cls):
            meta = f.metadata
            ftype = f.type if isinstance(f.type, type) else types.get(str(f.type), str)
            out[f.name] = FieldSpec(
                f.name,
                ftype,
                f.default,
                meta.get("label", f.name),
                meta.get("minimum"),
                meta.get("maximum"),
                meta.get("step"),
                meta.get("help", ""),
            )
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TaskParams:
        """Build from plain values (JSON, CLI, widgets), converting types; unknown names are an error."""
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
                if fs.type is int:
                    if isinstance(value, float) and not value.is_integer():
                        raise ValueError
                    converted[name] = int(value)
                elif fs.type is float:
                    converted[name] = float(value)
                elif fs.type is bool:
                    converted[name] = (
                        value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
                    )
                else:
                    converted[name] = str(value)
            except (TypeError, ValueError):
                kind = {int: "a whole number", float: "a number", bool: "true or false"}.get(fs.type, "text")
                raise InvalidParams(f"{fs.label} must be {kind} (got {value!r}).") from None
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TaskParams:
        """Check every ranged field; raise InvalidParams naming the first bad one. Returns self."""
        for fs in self.field_specs().values():
            value = getattr(self, fs.name)
            if fs.minimum is None and fs.maximum is None:
                continue
            if (fs.minimum is not None and value < fs.minimum) or (
                fs.maximum is not None and value > fs.maximum
            ):
                raise InvalidParams(
                    f"{fs.label} must be between {_num(fs.minimum)} and {_num(fs.maximum)} (got {_num(value)})."
                )
        return self


def _num(x: float | None) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


@dataclass
class Text2ImageParams(TaskParams):
    """Text to image: a prior turns the prompt into an image embedding, a decoder paints it."""

    task: ClassVar[str] = "t2i"

    prompt: str = spec("", label="Prompt")
    negative_prompt: str = spec("", label="Negative prompt")
    width: int = spec(768, label="Width", minimum=64, maximum=2048, step=SIZE_STEP)
    height: int = spec(768, label="Height", minimum=64, maximum=2048, step=SIZE_STEP)
    steps: int = spec(50, label="Steps", minimum=1, maximum=500, step=1)
    guidance_scale: float = spec(4.0, label="Guidance scale", minimum=0.0, maximum=30.0, step=0.5)
    prior_steps: int = spec(25, label="Prior steps", minimum=1, maximum=200, step=1)
    prior_guidance_scale: float = spec(4.0, label="Prior guidance scale", minimum=0.0, maximum=30.0, step=0.5)
    seed: int = spec(-1, label="Seed", minimum=-1, maximum=SEED_MAX, step=1, help="-1 picks a random seed")
    batch_count: int = spec(
        1, label="Batch count", minimum=1, maximum=100, step=1, help="jobs run one after another"
    )
    batch_size: int = spec(
        1, label="Batch size", minimum=1, maximum=16, step=1, help="images per pipeline call"
    )
    scheduler: str = spec("", label="Scheduler", help="empty uses the model's own scheduler")

    def validate(self) -> Text2ImageParams:
        super().validate()
        for name in ("width", "height"):
            value = getattr(self, name)
            if value % SIZE_STEP:
                raise InvalidParams(
                    f"{name.capitalize()} must be a multiple of {SIZE_STEP} (got {value}); "
                    f"the nearest are {value // SIZE_STEP * SIZE_STEP or SIZE_STEP} and {(value // SIZE_STEP + 1) * SIZE_STEP}."
                )
        return self

    @property
    def image_count(self) -> int:
        return self.batch_count * self.batch_size


TASK_PARAMS: dict[str, type[TaskParams]] = {Text2ImageParams.task: Text2ImageParams}
TASK_LABELS = {"t2i": "Text to image"}


def params_class(task: str) -> type[TaskParams]:
    try:
        return TASK_PARAMS[task]
    except KeyError:
        raise InvalidParams(f"Unknown task {task!r}; known tasks: {', '.join(TASK_PARAMS)}.") from None


ASPECT_RATIOS = ["1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9", "9:21"]


def size_for_aspect(aspect: str, area: int, step: int = SIZE_STEP, limit: int = 2048) -> tuple[int, int]:
    """Width and height (multiples of step) with the given aspect ratio and about the given pixel area."""
    try:
        a, b = (float(x) for x in aspect.split(":"))
        if a <= 0 or b <= 0:
            raise ValueError
    except ValueError:
        raise InvalidParams(f"Aspect ratio must look like 16:9 (got {aspect!r}).") from None
    unit = (area / (a * b)) ** 0.5
    width = max(step, min(limit, round(a * unit / step) * step))
    height = max(step, min(limit, round(b * unit / step) * step))
    return width, height
