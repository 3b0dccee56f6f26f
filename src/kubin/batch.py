"""Batch over a folder: every image of a folder through one task (image to image, inpaint with a masks folder
matched by name, outpaint, image to video, image to 3D) or one tool (upscale, remove background), each
output keeping its source's name in a new folder beside the day's outputs.

A folder is read once, up front: what is not a readable image is skipped and reported (never failing the
batch), so the user sees at once what will run. The jobs are ordinary engine jobs (queue, progress, Cancel,
saved with every parameter plus the source's path); only their file names differ.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from kubin.errors import InvalidParams
from kubin.outputs import OutputName, output_folder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
MAX_FOLDER_IMAGES = 10_000  # a folder larger than this is refused: pick a smaller one


@dataclass(frozen=True)
class FolderItem:
    """One image of the folder and, for inpainting, its mask."""

    source: Path
    mask: Path | None = None

    @property
    def name(self) -> str:
        return self.source.stem


@dataclass
class FolderPlan:
    """What a folder batch will do: the images to run, the files skipped with why, where outputs go."""

    folder: Path
    items: list[FolderItem]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)
    output: Path | None = None  # made when the batch is queued

    def report(self) -> str:
        """One line per skipped file, or empty."""
        return "\n".join(f"Skipped {name}: {why}" for name, why in self.skipped)

    def name_of(self, item: FolderItem) -> OutputName:
        if self.output is None:
            raise RuntimeError("make_output() first")
        return OutputName(self.output, item.name)

    def make_output(self, root: Path, task: str) -> Path:
        """A new folder `<root>/<task>/<date>/<folder name>` (`-2`, `-3`, ... when one exists): a batch
        run twice never overwrites the first run's files."""
        day = output_folder(root, task)
        base = _safe_name(self.folder.name) or "batch"
        for n in range(1, 10_000):
            candidate = day / (base if n == 1 else f"{base}-{n}")
            try:
                candidate.mkdir(parents=True)
            except FileExistsError:
                continue
            self.output = candidate
            return candidate
        raise InvalidParams(f"Too many batches of {base} today in {day}.")


def _safe_name(text: str) -> str:
    return re.sub(r"[^\w.\- ]+", "_", text).strip(" .")


def _natural(path: Path) -> list[Any]:
    """img2 before img10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _why_unreadable(path: Path) -> str | None:
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return "not an image Pillow can read"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"damaged ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return None


def _directory(path: str | Path | None, what: str) -> Path:
    if not path or not str(path).strip():
        raise InvalidParams(f"Choose the {what}.")
    folder = Path(str(path).strip()).expanduser()
    if not folder.exists():
        raise InvalidParams(f"The {what} {folder} does not exist.")
    if not folder.is_dir():
        raise InvalidParams(f"The {what} {folder} is a file, not a folder.")
    return folder


def scan_folder(folder: str | Path, masks: str | Path | None = None) -> FolderPlan:
    """The images of `folder` (not its subfolders; hidden files ignored), in natural name order, each with
    its mask from `masks` (the file with the same name, any image type) when a masks folder is given.
    Unreadable files and images without a mask are skipped with the reason; a folder with no image to run
    is an error that says what was found."""
    folder = _directory(folder, "input folder")
    mask_folder = _directory(masks, "masks folder") if masks else None
    mask_by_stem: dict[str, Path] = {}
    if mask_folder is not None:
        for entry in sorted(mask_folder.iterdir(), key=_natural):
            if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
                mask_by_stem.setdefault(entry.stem, entry)
    entries = [
        e for e in sorted(folder.iterdir(), key=_natural) if e.is_file() and not e.name.startswith(".")
    ]
    if len(entries) > MAX_FOLDER_IMAGES:
        raise InvalidParams(
            f"{folder} holds {len(entries)} files, more than {MAX_FOLDER_IMAGES}: pick a smaller folder."
        )
    plan = FolderPlan(folder, [])
    for entry in entries:
        why = _why_unreadable(entry)
        if why:
            plan.skipped.append((entry.name, why))
            continue
        mask = None
        if mask_folder is not None:
            mask = mask_by_stem.get(entry.stem)
            if mask is None:
                plan.skipped.append((entry.name, f"no mask named {entry.stem}.* in {mask_folder}"))
                continue
            why = _why_unreadable(mask)
            if why:
                plan.skipped.append((entry.name, f"its mask {mask.name} is {why}"))
                continue
        plan.items.append(FolderItem(entry, mask))
    if not plan.items:
        found = f" ({plan.report()})" if plan.skipped else ""
        raise InvalidParams(f"{folder} holds no image to run{found}.")
    return plan


def folder_params(task: str, params: dict[str, Any], item: FolderItem) -> dict[str, Any]:
    """The job parameters of one image: the task's image input is the file (and its mask for inpainting)."""
    out = dict(params, init_image=str(item.source))
    if item.mask is not None:
        out["mask"] = str(item.mask)
    return out


def check_task(task: str, masks: str | Path | None, params: dict[str, Any]) -> None:
    """A folder batch needs a task that starts from an image; inpainting needs a mask for each image (a
    masks folder) or one mask for all (the tab's)."""
    from kubin.params import params_class

    if "init_image" not in params_class(task).field_specs():
        raise InvalidParams(f"{task} does not start from an image, so it cannot run over a folder.")
    if task == "inpaint" and not masks and not params.get("mask"):
        raise InvalidParams(
            "Inpainting a folder needs a masks folder (a mask with the same name as each image) or one mask "
            "for every image."
        )


def queue_folder(
    engine,
    task: str,
    model_id: str,
    params: dict[str, Any],
    folder: str | Path,
    masks: str | Path | None = None,
    owner: str = "",
    extension_values: dict[str, dict[str, Any]] | None = None,
) -> tuple[FolderPlan, list[tuple[FolderItem, Any]]]:
    """Queue one job per image of `folder` with `params` (the task's image input set to the file). An image
    the task refuses (an empty mask, ...) is skipped with the reason, as unreadable files are; when no image
    can run, nothing is queued and the error says why. Returns the plan (its `skipped` to report) and the
    (item, JobHandle) pairs in the folder's order."""
    from kubin.engine import Job

    check_task(task, masks, params)
    plan = scan_folder(folder, masks)
    plan.make_output(Path(engine.output_dir), task)
    queued: list[tuple[FolderItem, Any]] = []
    try:
        for item in plan.items:
            job = Job(
                task, model_id, folder_params(task, params, item), owner=owner,
                extension_values=dict(extension_values or {}), output_name=plan.name_of(item),
            )  # fmt: skip
            try:
                queued.append((item, engine.submit(job)))
            except InvalidParams as exc:
                plan.skipped.append((item.source.name, str(exc)))
        if not queued:
            raise InvalidParams(f"No image of {plan.folder} can run:\n{plan.report()}")
    except BaseException:
        for _, handle in queued:  # nothing of a folder half queued
            engine.cancel(handle)
        if not any(plan.output.iterdir()):
            plan.output.rmdir()
        raise
    return plan, queued


@dataclass
class ToolFolderRun:
    """A tool's pass over a folder as it goes: the outputs saved so far and the images that failed."""

    plan: FolderPlan
    saved: list[tuple[FolderItem, Path]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)


def tool_over_folder(
    engine,
    title: str,
    task: str,
    folder: str | Path,
    work: Callable[[Any, Image.Image], Image.Image],
    save: Callable[[Image.Image, FolderItem, OutputName], Path],
    owner: str = "",
):
    """Queue one tool job (an upscale, a background removal) that runs `work(tool, image)` on each image of
    `folder` in turn and `save`s each result under the image's name, in a new folder under `task`. An image
    the tool refuses is reported and the job goes on; Cancel stops it between images (or inside one, where
    the tool reports progress), keeping what was saved. Returns (the ToolHandle, the ToolFolderRun it fills)."""
    from kubin.engine import ToolJob
    from kubin.images import open_image

    plan = scan_folder(folder)
    plan.make_output(Path(engine.output_dir), task)
    run = ToolFolderRun(plan)

    def job(tool) -> ToolFolderRun:
        for done, item in enumerate(plan.items, start=1):
            try:
                result = work(tool, open_image(str(item.source), item.source.name))
                run.saved.append((item, save(result, item, plan.name_of(item))))
            except InvalidParams as exc:
                run.failed.append((item.source.name, str(exc)))
            tool.progress(done, len(plan.items))  # stops here when cancelled
        return run

    return engine.submit_tool(ToolJob(f"{title} ({len(plan.items)} images)", job, owner)), run


def tool_run_answer(handle, run: ToolFolderRun) -> dict[str, Any]:
    """A tool's folder pass as an API answers it, once the job has ended: its state, the new output folder,
    each saved result (`path`, `source`) and the files skipped or failed with why. A failed job raises its
    error (the API answers it with its status)."""
    from kubin.engine import FAILED

    handle.wait()
    if handle.state == FAILED and handle.error is not None:
        raise handle.error
    return {
        "state": handle.state,
        "folder": str(run.plan.folder),
        "output": str(run.plan.output),
        "outputs": [{"path": str(path), "source": str(item.source)} for item, path in run.saved],
        "skipped": [{"file": name, "why": why} for name, why in [*run.plan.skipped, *run.failed]],
    }


def print_tool_run(engine, handle, run: ToolFolderRun) -> int:
    """A tool's folder pass on the command line: one JSON line per saved result (its `path` and `source`)
    as it comes, skipped and failed files on stderr; Ctrl+C cancels, keeping what was saved. Returns the
    exit code (0, 2 when nothing was made, 130 cancelled)."""
    import json
    import sys

    from kubin.app import EXIT_CANCELLED, EXIT_USER_ERROR
    from kubin.engine import CANCELLED, FAILED

    for name, why in run.plan.skipped:
        print(f"skipped: {name}: {why}", file=sys.stderr, flush=True)
    printed = 0

    def flush() -> None:
        nonlocal printed
        for item, path in run.saved[printed:]:
            print(json.dumps({"path": str(path), "source": str(item.source)}), flush=True)
        printed = len(run.saved)

    try:
        while not handle.wait(0.2):
            flush()
    except KeyboardInterrupt:
        engine.cancel(handle)
        handle.wait()
    flush()
    for name, why in run.failed:
        print(f"skipped: {name}: {why}", file=sys.stderr, flush=True)
    if handle.state == CANCELLED:
        print(f"cancelled: {len(run.saved)} of {len(run.plan.items)} saved.", file=sys.stderr)
        return EXIT_CANCELLED
    if handle.state == FAILED:
        print(f"error: {handle.error}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0 if run.saved else EXIT_USER_ERROR
