"""Saving outputs with their parameters, atomically, and reading those parameters back.

Images are PNGs carrying an AUTOMATIC1111-style `parameters` text chunk (which other tools read)
and a `kubin` chunk with the full parameters as JSON (which Kubin reads back exactly).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from kubin.errors import InvalidParams

_counter_lock = threading.Lock()
_COUNTER_RE = re.compile(r"^(\d+)-")

# Parameters written as "Name: value" pairs after Steps/Sampler/CFG/Seed/Size/Model, in this order.
_EXTRA_LABELS = {
    "strength": "Denoising strength",
    "mask_blur": "Mask blur",
    "prior_steps": "Prior steps",
    "prior_guidance_scale": "Prior CFG scale",
    "batch_size": "Batch size",
    "batch_index": "Batch pos",
}


def a1111_parameters(meta: dict[str, Any]) -> str:
    """The `parameters` text in the AUTOMATIC1111 layout: prompt, negative prompt, then key: value pairs."""
    params = meta["params"]
    lines = [params.get("prompt") or " | ".join(params.get("prompts", []))]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    pairs = [
        ("Steps", params.get("steps")),
        ("Sampler", meta.get("scheduler")),
        ("CFG scale", params.get("guidance_scale")),
        ("Seed", meta.get("seed")),
        ("Size", f"{meta.get('width')}x{meta.get('height')}"),
        ("Model", meta.get("model")),
        ("Task", meta.get("task")),
    ]
    pairs += [(label, params.get(key, meta.get(key))) for key, label in _EXTRA_LABELS.items()]
    pairs.append(("Version", f"kubin {meta.get('kubin_version', '')}".strip()))
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in pairs if v is not None and v != ""))
    return "\n".join(lines)


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if ("," in text or ":" in text) and " " in text else text


def next_output_path(directory: Path, seed: int, suffix: str = ".png") -> Path:
    """`<counter>-<seed><suffix>` where counter is one more than the highest in the folder.

    Call under `_counter_lock` together with the write, so that two jobs never pick one name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    highest = 0
    for entry in os.scandir(directory):
        m = _COUNTER_RE.match(entry.name)
        if m:
            highest = max(highest, int(m.group(1)))
    return directory / f"{highest + 1:05d}-{seed}{suffix}"


def output_folder(root: Path, task: str, when: _dt.date | None = None) -> Path:
    return Path(root) / task / (when or _dt.date.today()).isoformat()


def save_image(image: Image.Image, root: Path, task: str, meta: dict[str, Any]) -> Path:
    """Write `image` under root/task/YYYY-MM-DD/ with its metadata; the file appears complete or not at all."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", a1111_parameters(meta))
    info.add_text("kubin", json.dumps(meta, ensure_ascii=False, sort_keys=True))
    folder = output_folder(root, task)
    with _counter_lock:
        path = next_output_path(folder, int(meta.get("seed", 0)))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                image.save(fh, format="PNG", pnginfo=info)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def read_image_metadata(source: str | os.PathLike | Image.Image) -> dict[str, Any]:
    """The `kubin` metadata of a Kubin PNG, or {"parameters": text} for other A1111-style PNGs."""
    try:
        image = source if isinstance(source, Image.Image) else Image.open(source)
    except (OSError, ValueError) as exc:
        raise InvalidParams(f"Could not read the image file: {exc}.") from None
    text = getattr(image, "text", None) or image.info
    if "kubin" in text:
        try:
            return json.loads(text["kubin"])
        except json.JSONDecodeError:
            raise InvalidParams("The image's kubin metadata is damaged.") from None
    if "parameters" in text:
        return {"parameters": text["parameters"]}
    raise InvalidParams("This image carries no generation parameters.")
