"""Saving outputs with their parameters, atomically, and reading those parameters back.

Images are PNGs carrying an AUTOMATIC1111-style `parameters` text chunk (which other tools read)
and a `kubin` chunk with the full parameters as JSON (which Kubin reads back exactly). Videos are
H.264 mp4 files (through imageio-ffmpeg's own ffmpeg) with the same JSON in their comment tag and in a
sidecar `.json` next to them, plus an animated WebP preview.
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

import numpy as np
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


# --- video -----------------------------------------------------------------------------------------
PREVIEW_MAX_SIDE = 384


def save_video(
    frames: list[Image.Image], fps: float, root: Path, task: str, meta: dict[str, Any], preview: bool = True
) -> tuple[Path, Path | None]:
    """Write `frames` as root/task/YYYY-MM-DD/<counter>-<seed>.mp4 with a `.json` sidecar and (optionally)
    a `.webp` preview; returns (video, preview). Encoding goes to temporary names; the files are renamed
    into place together, the video last, so a listed video is always complete."""
    import imageio_ffmpeg

    if not frames:
        raise InvalidParams("The video has no frames.")
    if not fps > 0:
        raise InvalidParams(f"The frame rate must be above 0 (got {fps}).")
    width, height = frames[0].size
    odd = next((i for i, f in enumerate(frames) if f.size != (width, height)), None)
    if odd is not None:
        raise InvalidParams(
            f"Every frame of a video must have one size: frame {odd} is {frames[odd].width}x{frames[odd].height}, "
            f"frame 0 is {width}x{height}."
        )
    folder = output_folder(root, task)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=".mp4", dir=folder)
    os.close(fd)  # ffmpeg writes the file by its name
    tmp_video = Path(name)
    tmp_files = [tmp_video]
    try:
        writer = imageio_ffmpeg.write_frames(
            str(tmp_video),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=8,
            macro_block_size=2,  # yuv420p needs even sides; Kandinsky sizes are multiples of 16 anyway
            ffmpeg_log_level="error",
            output_params=["-metadata", f"comment={text}", "-movflags", "+faststart"],
        )
        writer.send(None)  # start ffmpeg
        for frame in frames:
            writer.send(np.ascontiguousarray(np.asarray(frame.convert("RGB"))))
        writer.close()
        if tmp_video.stat().st_size == 0:
            raise OSError("ffmpeg wrote an empty video")
        tmp_json = _write_temp(folder, ".json", text.encode("utf-8"))
        tmp_files.append(tmp_json)
        tmp_preview = None
        if preview:
            tmp_preview = _write_preview(folder, frames, fps, tmp_files)
        with _counter_lock:
            path = next_output_path(folder, int(meta.get("seed", 0)), ".mp4")
            preview_path = path.with_suffix(".webp") if tmp_preview else None
            os.replace(tmp_json, path.with_suffix(".json"))
            if tmp_preview:
                os.replace(tmp_preview, preview_path)
            os.replace(tmp_video, path)
    except BaseException:
        for tmp in tmp_files:
            tmp.unlink(missing_ok=True)
        raise
    return path, preview_path


def _write_temp(folder: Path, suffix: str, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(tmp)


def _write_preview(folder: Path, frames: list[Image.Image], fps: float, tmp_files: list[Path]) -> Path:
    """An animated WebP, at most PREVIEW_MAX_SIDE per side, that any browser shows inline. Its temporary
    name goes into `tmp_files` at once, so a failure leaves nothing behind."""
    duration = max(1, round(1000 / fps))
    scale = min(1.0, PREVIEW_MAX_SIDE / max(frames[0].size))
    size = (max(1, round(frames[0].width * scale)), max(1, round(frames[0].height * scale)))
    small = [f.convert("RGB").resize(size, Image.Resampling.BILINEAR) for f in frames]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".webp", dir=folder)
    tmp_files.append(Path(tmp))
    with os.fdopen(fd, "wb") as fh:
        small[0].save(fh, format="WEBP", save_all=True, append_images=small[1:],
                      duration=duration, loop=0, quality=80)  # fmt: skip
    return Path(tmp)


def read_video_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a Kubin video: from its `.json` sidecar, or from the mp4 comment tag if the sidecar
    was lost (a video copied on its own)."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # damaged sidecar: the copy inside the video is as good
    comment = video_tags(path).get("comment")
    if not comment:
        raise InvalidParams("This video carries no generation parameters.")
    try:
        return json.loads(comment)
    except ValueError:
        raise InvalidParams("The video's kubin metadata is damaged.") from None


def read_output_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of any Kubin output file: a video (.mp4 or its .json sidecar) or an image."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InvalidParams("This file is not a Kubin metadata file.") from None
    if suffix == ".mp4" or (suffix == ".webp" and Path(path).with_suffix(".mp4").is_file()):
        return read_video_metadata(Path(path).with_suffix(".mp4"))  # a video, or its preview
    return read_image_metadata(path)


def save_video_frame(video: str | os.PathLike, index: int = -1) -> Path:
    """Frame `index` of a Kubin video as a PNG beside it (`<name>-frame<N>.png`) that carries the video's
    parameters, so the tab it is sent to can read the prompt back."""
    video = Path(video)
    frames = video_info(video)["frames"]
    number = index + frames if index < 0 else index
    if not 0 <= number < frames:
        raise InvalidParams(f"The video has {frames} frames; there is no frame {index}.")
    path = video.with_name(f"{video.stem}-frame{number}.png")
    if not path.exists():
        image = video_frame(video, number)
        info = PngImagePlugin.PngInfo()
        try:
            meta = read_video_metadata(video) | {"source_video": video.name, "frame": number}
            info.add_text("kubin", json.dumps(meta, ensure_ascii=False, sort_keys=True))
        except InvalidParams:
            pass
        tmp = path.with_name(f".tmp-{path.name}")
        image.save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    return path


def video_tags(path: str | os.PathLike) -> dict[str, str]:
    """The container's global metadata tags (title, comment, ...), read with the bundled ffmpeg."""
    import subprocess

    import imageio_ffmpeg

    if not Path(path).is_file():
        raise InvalidParams(f"Video file not found: {path}.")
    run = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        timeout=60,
    )
    if run.returncode != 0:
        raise InvalidParams(
            f"Could not read the video file {path}: {run.stderr.decode(errors='replace').strip()}."
        )
    return _parse_ffmetadata(run.stdout.decode("utf-8", errors="replace"))


def _parse_ffmetadata(text: str) -> dict[str, str]:
    """ffmetadata lines are key=value with '=', ';', '#', '\\' and newlines escaped by a backslash."""
    tags: dict[str, str] = {}
    key, value, escaped, in_value = [], [], False, False
    lines = iter(text.splitlines(keepends=True))
    for line in lines:
        if not in_value and (line.startswith(";") or line.startswith("[")):
            continue
        for ch in line:
            if escaped:
                (value if in_value else key).append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == "=" and not in_value:
                in_value = True
            elif ch == "\n":
                if in_value or key:
                    tags["".join(key).strip()] = "".join(value)
                key, value, in_value = [], [], False
            else:
                (value if in_value else key).append(ch)
    if key:
        tags["".join(key).strip()] = "".join(value)
    return tags


def video_info(path: str | os.PathLike) -> dict[str, Any]:
    """Frame count, size and frame rate of a video file."""
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        try:
            header = next(reader)
        finally:
            reader.close()
        frames, _seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (OSError, RuntimeError, StopIteration):
        raise InvalidParams(f"Could not read {Path(path).name} as a video.") from None
    width, height = header["size"]
    return {"frames": frames, "width": width, "height": height, "fps": header["fps"]}


def video_frame(path: str | os.PathLike, index: int = 0) -> Image.Image:
    """Frame `index` (0-based; negative counts from the end) of a video, as an RGB image."""
    import imageio_ffmpeg

    number = index + video_info(path)["frames"] if index < 0 else index
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        try:
            header = next(reader)
            width, height = header["size"]
            for i, raw in enumerate(reader):
                if i == number:
                    return Image.frombytes("RGB", (width, height), raw)
        finally:
            reader.close()
    except (OSError, RuntimeError, StopIteration):
        raise InvalidParams(f"Could not read {Path(path).name} as a video.") from None
    raise InvalidParams(f"The video has no frame {index}.")
