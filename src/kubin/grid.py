"""The X/Y/Z grid: up to three parameters, each with a list of values, make one ordinary job per
combination, and the outputs are drawn into one labelled grid image that carries the whole plan.

Value strings follow AUTOMATIC1111's X/Y/Z plot: "1-5", "1-10 (+2)", "0.5-1 [3]", "20,30,40"; a prompt
search-and-replace axis ("prompt S/R") takes "a cat, a dog, a bird", the first value being the text that
the others replace. This module never imports Gradio: the UI, the API and the CLI all call it.
"""

from __future__ import annotations

import csv
import datetime as _dt
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from kubin.errors import InvalidParams, KubinError
from kubin.params import TASK_LABELS, params_class

DEFAULT_MAX_CELLS = 100  # config grid_max_cells
AXIS_LETTERS = ("X", "Y", "Z")
GRIDS_FOLDER = "grids"  # under the output folder: <output>/grids/<date>/

# Axes with names of their own; any other numeric parameter of the task is an axis under its own name.
AXIS_ALIASES = {
    "guidance": "guidance_scale",
    "cfg": "guidance_scale",
    "prior_guidance": "prior_guidance_scale",
    "sampler": "scheduler",
    "prompt_sr": "prompt S/R",
    "prompt s/r": "prompt S/R",
    "lora": "LoRA weight",
    "lora weight": "LoRA weight",
    "lora_weight": "LoRA weight",
}
SPECIAL_AXES = ("size", "model", "prompt S/R", "LoRA weight")
_RANGE = re.compile(
    r"^\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*(?:\(\s*([+-]?\d+(?:\.\d+)?)\s*\)|\[\s*(\d+)\s*\])?\s*$"
)
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def axis_choices(task: str) -> list[str]:
    """The axis names a task offers: its numeric parameters, the scheduler, size, model, prompt S/R and the
    weight of one LoRA."""
    specs = params_class(task).field_specs()
    names = [
        n for n, fs in specs.items() if fs.type in (int, float) and n not in ("batch_count", "batch_size")
    ]
    if "scheduler" in specs:
        names.append("scheduler")
    if "width" in specs and "height" in specs:
        names.append("size")
    names.append("model")
    if "prompt" in specs:
        names.append("prompt S/R")
    if "loras" in specs:
        names.append("LoRA weight")
    return names


@dataclass
class Axis:
    """One axis: a parameter (or size, model, prompt S/R) and the values it takes, as typed and parsed."""

    name: str
    text: str  # the values as the user wrote them: what the plan saves and a restore shows again
    values: list[Any] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        if self.name == "size":
            return [f"{w}x{h}" for w, h in self.values]
        if self.name == "prompt S/R":
            return [str(v) for v in self.values]
        if self.name == "LoRA weight":
            return [f"{self.values[0]}: {_show(w)}" for w in self.values[1:]]
        return [f"{self.name}: {_show(v)}" for v in self.values]

    @property
    def steps(self) -> list[Any]:
        """The values the cells take: a LoRA weight axis's first value is the adapter's name, not a cell."""
        return self.values[1:] if self.name == "LoRA weight" else self.values

    def apply(self, params: dict[str, Any], value: Any) -> dict[str, Any]:
        """The parameters of a cell with this axis at `value` (prompt S/R rewrites the prompts)."""
        if self.name == "size":
            return params | {"width": value[0], "height": value[1]}
        if self.name == "prompt S/R":
            search = self.values[0]
            return params | {
                key: params[key].replace(search, value)
                for key in ("prompt", "negative_prompt")
                if isinstance(params.get(key), str)
            }
        if self.name == "model":
            return params  # the cell's model, not a parameter
        if self.name == "LoRA weight":  # this adapter at this weight (0: left out), the others as they are
            adapter = self.values[0]
            others = [e for e in params.get("loras") or [] if _lora_name(e) != adapter]
            return params | {"loras": others + ([f"{adapter}:{_show(value)}"] if value else [])}
        return params | {self.name: value}

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "values": self.text}


def _lora_name(entry: Any) -> str:
    """The adapter an entry of `loras` names ("ink:0.6" or {"name": "ink", ...})."""
    if isinstance(entry, dict):
        return str(entry.get("name", ""))
    name, _, weight = str(entry).rpartition(":")
    try:
        float(weight)
    except ValueError:
        return str(entry)
    return name


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def split_values(text: str) -> list[str]:
    """Comma-separated values; a value holding a comma is written in double quotes (as in CSV)."""
    rows = list(csv.reader([text], skipinitialspace=True)) if text.strip() else [[]]
    return [v.strip() for v in rows[0] if v.strip()]


def _numbers(text: str, kind: type) -> list[Any]:
    out: list[Any] = []
    for part in split_values(text):
        m = _RANGE.match(part)
        if m:
            start, end = kind(float(m.group(1))), kind(float(m.group(2)))
            if m.group(4):  # [count]: evenly spaced, ends included
                count = int(m.group(4))
                if count < 1:
                    raise ValueError(part)
                span = (end - start) / (count - 1) if count > 1 else 0
                out += [kind(round(start + i * span, 6)) for i in range(count)]
                continue
            step = kind(float(m.group(3))) if m.group(3) else kind(1 if end >= start else -1)
            if step == 0 or (end - start) * step < 0:
                raise ValueError(part)
            value, count = start, 0
            while (value <= end + 1e-9) if step > 0 else (value >= end - 1e-9):
                out.append(kind(round(value, 6)))
                value, count = start + (count + 1) * step, count + 1
                if count > 10_000:
                    raise ValueError(part)
            continue
        try:
            number = float(part)
        except ValueError:
            raise ValueError(part) from None
        if kind is int and not number.is_integer():
            raise ValueError(part)
        out.append(kind(number))
    return out


def parse_axis(
    task: str,
    name: str,
    text: str,
    letter: str = "X",
    *,
    model_ids: Callable[[str], Any] | None = None,
    schedulers: tuple[str, ...] = (),
) -> Axis:
    """Parse one axis's values and check each against the task's parameters; an error names the axis and
    the bad value. `model_ids(id)` returns the spec of a model id (raising for an unknown one);
    `schedulers` are the ones the grid's model offers (empty: any name)."""
    name = AXIS_ALIASES.get(name.strip().lower(), name.strip())
    cls = params_class(task)
    specs = cls.field_specs()
    where = f"{letter} axis ({name})"
    if name not in axis_choices(task):
        raise InvalidParams(
            f"{where}: {TASK_LABELS.get(task, task)} has no such axis; choose one of {', '.join(axis_choices(task))}."
        )
    if name == "prompt S/R":
        values: list[Any] = split_values(text)
        if len(values) < 2:
            raise InvalidParams(
                f'{where} needs the text to search for and at least one replacement, e.g. "cat, dog, bird".'
            )
        return Axis(name, text, values)
    if name == "LoRA weight":
        parts = split_values(text)
        if len(parts) < 2:
            raise InvalidParams(
                f'{where} needs the adapter\'s name, then its weights, e.g. "ink, 0, 0.5, 1".'
            )
        try:
            weights = _numbers(",".join(f'"{p}"' if "," in p else p for p in parts[1:]), float)
        except ValueError as exc:
            raise InvalidParams(
                f"{where}: {exc.args[0] if exc.args else text!r} is not a weight; give numbers after the name "
                '("ink, 0, 0.5, 1" or "ink, 0-1 [5]").'
            ) from None
        return Axis(name, text, [parts[0], *weights])
    parts = split_values(text)
    if not parts:
        raise InvalidParams(f"{where} has no values.")
    if name == "size":
        values = []
        for part in parts:
            m = _SIZE.match(part)
            if not m:
                raise InvalidParams(f"{where}: {part!r} is not a size; write sizes as 512x512.")
            values.append((int(m.group(1)), int(m.group(2))))
            _check(cls, {"width": values[-1][0], "height": values[-1][1]}, where, part)
        return Axis(name, text, values)
    if name == "model":
        for part in parts:
            try:
                spec = model_ids(part) if model_ids else None
            except KubinError as exc:
                raise InvalidParams(f"{where}: {exc}") from None
            if spec is not None and not spec.supports(task):
                raise InvalidParams(
                    f"{where}: {spec.title} cannot do {task}; it supports {', '.join(spec.tasks)}."
                )
        return Axis(name, text, parts)
    if name == "scheduler":
        for part in parts:
            if schedulers and part not in schedulers:
                raise InvalidParams(
                    f"{where}: {part!r} is not a scheduler of this model; choose from {', '.join(schedulers)}."
                )
        return Axis(name, text, parts)
    fs = specs[name]
    try:
        values = _numbers(text, fs.type)
    except ValueError as exc:
        what = "whole numbers" if fs.type is int else "numbers"
        raise InvalidParams(
            f'{where}: {exc.args[0] if exc.args else text!r} is not valid; give {what} ("20,30,40") or a range '
            '("1-5", "1-10 (+2)", "0.5-1 [3]").'
        ) from None
    for value in values:
        _check(cls, {name: value}, where, _show(value))
    return Axis(name, text, values)


def _check(cls, values: dict[str, Any], where: str, shown: str) -> None:
    try:
        cls.from_dict(values).validate()
    except InvalidParams as exc:
        raise InvalidParams(f"{where}: value {shown} is not allowed: {exc}") from None


@dataclass
class Cell:
    """One combination: its place in the grid (x, y, z), the model it runs on and its parameters."""

    x: int
    y: int
    z: int
    model_id: str
    params: dict[str, Any]


@dataclass
class GridPlan:
    """What a grid runs: a task and model, the parameters every cell starts from, and up to three axes."""

    task: str
    model_id: str
    base: dict[str, Any]
    axes: list[Axis]

    @property
    def shape(self) -> tuple[int, int, int]:
        sizes = [len(a.steps) for a in self.axes] + [1, 1, 1]
        return sizes[0], sizes[1], sizes[2]

    def cells(self) -> list[Cell]:
        """Every combination, X fastest, then Y, then Z (the order the grid is drawn in)."""
        nx, ny, nz = self.shape
        axes = self.axes + [None, None, None]
        out = []
        for z, y, x in itertools.product(range(nz), range(ny), range(nx)):
            params, model_id = dict(self.base), self.model_id
            for axis, i in zip(axes[:3], (x, y, z), strict=True):
                if axis is None:
                    continue
                params = axis.apply(params, axis.steps[i])
                if axis.name == "model":
                    model_id = axis.steps[i]
            out.append(Cell(x, y, z, model_id, params))
        return out

    def labels(self) -> tuple[list[str], list[str], list[str]]:
        axes = self.axes + [None, None, None]
        return tuple(a.labels if a is not None else [] for a in axes[:3])  # type: ignore[return-value]

    def as_json(self) -> dict[str, Any]:
        """The plan as the grid's metadata keeps it; input images are left out (a restore asks for them)."""
        images = params_class(self.task).image_fields()
        return {
            "task": self.task,
            "model": self.model_id,
            "axes": [a.as_json() for a in self.axes],
            "base": {k: v for k, v in self.base.items() if k not in images},
        }


def make_plan(
    task: str,
    model_id: str,
    base: dict[str, Any],
    axes: list[tuple[str, str]],
    *,
    max_cells: int = DEFAULT_MAX_CELLS,
    model_ids: Callable[[str], Any] | None = None,
    schedulers: tuple[str, ...] = (),
) -> GridPlan:
    """Parse and check the axes [(name, values text), ...] (empty names skipped) and cap the cell count.
    One seed serves every cell unless seed is an axis, so that the cells differ only by the axes."""
    chosen = [(n, t) for n, t in axes if n and n.strip()]
    if not chosen:
        raise InvalidParams("Choose at least one grid axis and its values.")
    if len(chosen) > 3:
        raise InvalidParams(f"A grid has at most three axes, X, Y and Z (got {len(chosen)}).")
    parsed = [
        parse_axis(task, n, t, letter, model_ids=model_ids, schedulers=schedulers)
        for (n, t), letter in zip(chosen, AXIS_LETTERS, strict=False)
    ]
    names = [a.name for a in parsed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidParams(f"Each parameter can be on one axis only; {', '.join(twice)} is on two.")
    if "prompt S/R" in names:
        search = parsed[names.index("prompt S/R")].values[0]
        if search not in str(base.get("prompt", "")) + str(base.get("negative_prompt", "")):
            raise InvalidParams(f"Prompt S/R: the prompt does not contain {search!r}, the text to replace.")
    plan = GridPlan(task, model_id, dict(base) | {"batch_count": 1, "batch_size": 1}, parsed)
    count = len(plan.cells())
    if count > max_cells:
        shape = " x ".join(str(len(a.steps)) for a in parsed)
        raise InvalidParams(
            f"The grid would have {count} cells ({shape}); the limit is {max_cells} (grid_max_cells in the "
            "config). Use fewer values."
        )
    if "seed" not in names and int(plan.base.get("seed", -1)) == -1:
        from kubin.engine import pick_seed

        plan.base["seed"] = pick_seed(-1)
    return plan


def engine_plan(
    engine, task: str, model_id: str, base: dict[str, Any], axes: list[tuple[str, str]]
) -> GridPlan:
    """make_plan with what the engine knows: its models, the grid model's schedulers and the cell cap."""
    spec = engine.manager.spec(model_id)
    return make_plan(
        task,
        model_id,
        base,
        axes,
        max_cells=getattr(engine, "grid_max_cells", DEFAULT_MAX_CELLS),
        model_ids=engine.manager.spec,
        schedulers=tuple(spec.schedulers),
    )


# --- the grid image ------------------------------------------------------------------------------
FONT_FILES = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
BACKGROUND, INK, EMPTY = (255, 255, 255), (0, 0, 0), (200, 200, 200)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def wrap(text: str, font, width: int) -> list[str]:
    """Break `text` into lines no wider than `width` pixels: at spaces, or inside a word too long."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
            continue
        while font.getlength(word) > width and len(word) > 1:
            cut = max(
                1, max(i for i in range(1, len(word) + 1) if font.getlength(word[:i]) <= width or i == 1)
            )
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines or [""]


def make_grid(
    images: list[Image.Image | None],
    x_labels: list[str],
    y_labels: list[str] | None = None,
    z_labels: list[str] | None = None,
) -> Image.Image:
    """Draw the cells (X fastest, then Y, then Z; None for a cell not made) with the X labels above each
    column and the Y labels left of each row; a Z axis gives one grid per value, side by side, each under
    its Z label."""
    y_labels, z_labels = y_labels or [], z_labels or []
    nx, ny, nz = max(1, len(x_labels)), max(1, len(y_labels)), max(1, len(z_labels))
    if len(images) != nx * ny * nz:
        raise ValueError(f"{len(images)} images for a {nx}x{ny}x{nz} grid")
    made = [im for im in images if im is not None]
    cw = max((im.width for im in made), default=64)
    ch = max((im.height for im in made), default=64)
    font = _font(max(12, min(cw, ch) // 12))
    line = int(font.size * 1.25) if hasattr(font, "size") else 14
    pad = max(4, line // 3)
    # The Y labels' column: as wide as a cell, or as the longest label up to two cells (then they wrap).
    longest = max((font.getlength(t) for t in y_labels), default=0)
    left_w = max(cw, min(int(longest) + 2 * pad, max(2 * cw, 160))) if y_labels else 0
    x_lines = [wrap(t, font, cw - 2 * pad) for t in x_labels]
    y_lines = [wrap(t, font, left_w - 2 * pad) for t in y_labels]
    top_h = (max(len(ls) for ls in x_lines) * line + 2 * pad) if x_labels else 0
    z_lines = [wrap(t, font, left_w + nx * cw - 2 * pad) for t in z_labels]
    z_h = (max(len(ls) for ls in z_lines) * line + 2 * pad) if z_labels else 0
    sub_w, sub_h = left_w + nx * cw, z_h + top_h + ny * ch
    gap = pad * 4 if nz > 1 else 0
    sheet = Image.new("RGB", (nz * sub_w + (nz - 1) * gap, sub_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)

    def text_block(lines: list[str], box: tuple[int, int, int, int]) -> None:
        x0, y0, x1, y1 = box
        top = y0 + max(0, (y1 - y0 - len(lines) * line) // 2)
        for i, text in enumerate(lines):
            w = font.getlength(text)
            draw.text((x0 + (x1 - x0 - w) / 2, top + i * line), text, fill=INK, font=font)

    for z in range(nz):
        ox = z * (sub_w + gap)
        if z_labels:
            text_block(z_lines[z], (ox, 0, ox + sub_w, z_h))
        for x in range(nx if x_labels else 0):
            cx = ox + left_w + x * cw
            text_block(x_lines[x], (cx + pad, z_h, cx + cw - pad, z_h + top_h))
        for y in range(ny):
            cy = z_h + top_h + y * ch
            if y_labels:
                text_block(y_lines[y], (ox + pad, cy, ox + left_w - pad, cy + ch))
            for x in range(nx):
                image = images[(z * ny + y) * nx + x]
                cx = ox + left_w + x * cw
                if image is None:
                    draw.rectangle((cx, cy, cx + cw - 1, cy + ch - 1), fill=EMPTY)
                    continue
                sheet.paste(
                    image.convert("RGB"), (cx + (cw - image.width) // 2, cy + (ch - image.height) // 2)
                )
    return sheet


# --- running ---------------------------------------------------------------------------------------
@dataclass
class GridRun:
    """A grid under way: one engine job per cell, all queued at once."""

    plan: GridPlan
    handles: list[Any]  # JobHandle per cell, in the plan's order
    path: Path | None = None  # the grid image, once saved

    def cancel(self, engine) -> None:
        for handle in self.handles:
            engine.cancel(handle)

    def wait(self) -> None:
        for handle in self.handles:
            handle.wait()

    @property
    def finished(self) -> bool:
        return all(h.finished for h in self.handles)

    def cell_paths(self) -> list[str | None]:
        return [str(h.results[0].path) if h.results else None for h in self.handles]


def start_grid(engine, plan: GridPlan, owner: str = "", submit: Callable | None = None) -> GridRun:
    """Queue every cell as an ordinary job (each saves its image with its own parameters). A cell the
    engine refuses cancels the cells queued before it and raises, naming the cell."""
    from kubin.engine import Job

    submit = submit or (lambda cell: engine.submit(Job(plan.task, cell.model_id, cell.params, owner=owner)))
    handles: list[Any] = []
    xl, yl, zl = plan.labels()
    for cell in plan.cells():
        try:
            handles.append(submit(cell))
        except KubinError as exc:
            for queued in handles:
                engine.cancel(queued)
            where = ", ".join(labels[i] for labels, i in ((xl, cell.x), (yl, cell.y), (zl, cell.z)) if labels)
            raise type(exc)(f"Grid cell {where}: {exc}") from None
    return GridRun(plan, handles)


def save_grid(run: GridRun, output_dir: Path) -> Path | None:
    """Draw and save the grid once every cell has ended; cells that were cancelled or failed are left
    grey. Nothing is saved when no cell made an image. The PNG's metadata holds the whole plan."""
    import json

    from kubin import __version__
    from kubin.outputs import save_image

    run.wait()
    images: list[Image.Image | None] = []
    for handle in run.handles:
        if handle.results:
            with Image.open(handle.results[0].path) as im:
                images.append(im.convert("RGB"))
        else:
            images.append(None)
    if not any(im is not None for im in images):
        return None
    sheet = make_grid(images, *run.plan.labels())
    first = next(h for h in run.handles if h.results)
    meta = {
        "kubin_version": __version__,
        "task": run.plan.task,
        "model": run.plan.model_id,
        "seed": first.results[0].seed,
        "width": sheet.width,
        "height": sheet.height,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "params": first.params.to_dict() | run.plan.base,  # what a restore of the grid puts in the tab
        "grid": run.plan.as_json() | {"cells": run.cell_paths(), "complete": all(images)},
    }
    json.dumps(meta)  # fails here, not half way through the write, if a value is not JSON
    run.path = save_image(sheet, output_dir, GRIDS_FOLDER, meta)
    return run.path


def run_grid(engine, plan: GridPlan, owner: str = "") -> GridRun:
    """Queue every cell, wait for them, save the grid: what the CLI and tests call."""
    run = start_grid(engine, plan, owner)
    save_grid(run, engine.output_dir)
    return run


def plan_from_grid(path: str | Path, max_cells: int = DEFAULT_MAX_CELLS) -> GridPlan:
    """The plan a grid image was made from, parsed again from its metadata (ready to run again)."""
    from kubin.outputs import read_image_metadata

    meta = read_image_metadata(path)
    grid = meta.get("grid")
    if not isinstance(grid, dict):
        raise InvalidParams("This image is not a Kubin grid: it carries no grid plan.")
    return make_plan(
        grid["task"],
        grid["model"],
        dict(grid.get("base", {})),
        [(a["name"], a["values"]) for a in grid.get("axes", [])],
        max_cells=max_cells,
    )
