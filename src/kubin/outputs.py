"""Saving outputs with their parameters, atomically, and reading those parameters back.

Images are PNGs carrying an AUTOMATIC1111-style `parameters` text chunk (which other tools read)
and a `kubin` chunk with the full parameters as JSON (which Kubin reads back exactly). Videos are
H.264 mp4 files (through imageio-ffmpeg's own ffmpeg) with the same JSON in their comment tag and in a
sidecar `.json` next to them, plus an animated WebP preview; a video with a soundtrack carries it as an
AAC track, with a `.wav` copy beside it. 3D objects are a `.glb` mesh (what viewers
show) with `.ply` and `.obj` copies, a turntable GIF preview and the same `.json` sidecar.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from kubin.errors import InvalidParams, first_line, without_paths

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
    """The `parameters` text in the AUTOMATIC1111 layout: prompt, negative prompt, then key: value pairs.
    A prompt expanded from a template is written as made, its template as "Template" (as A1111's Dynamic
    Prompts extension writes it)."""
    params = meta["params"]
    prompts = meta.get("prompts", params.get("prompts", []))
    lines = [meta.get("prompt", params.get("prompt")) or " | ".join(prompts)]
    negative = meta.get("negative_prompt", params.get("negative_prompt"))
    if negative:
        lines.append(f"Negative prompt: {negative}")
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
    loras = meta.get("loras") or []
    pairs.append(("Lora hashes", ", ".join(f"{lora['name']}: {lora['hash']}" for lora in loras)))
    pairs += [
        ("Template", meta.get("prompt_template")),
        ("Negative Template", meta.get("negative_prompt_template")),
    ]
    pairs.append(("Version", f"kubin {meta.get('kubin_version', '')}".strip()))
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in pairs if v is not None and v != ""))
    return "\n".join(lines)


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if ("," in text or ":" in text) and " " in text else text


@dataclass(frozen=True)
class OutputName:
    """Where an output goes when it keeps a name (a folder batch's `<folder>/<stem>.png`) instead of the
    day's `<counter>-<seed>` one."""

    folder: Path
    stem: str

    def indexed(self, index: int, count: int) -> OutputName:
        """The name of output `index` of `count` made from one source: `stem-1`, `stem-2`, ... when more than one."""
        return self if count <= 1 else OutputName(self.folder, f"{self.stem}-{index + 1}")


def next_output_path(directory: Path, seed: int, suffix: str = ".png", stem: str | None = None) -> Path:
    """`<counter>-<seed><suffix>` where counter is one more than the highest in the folder; with `stem`,
    `<stem><suffix>` (`<stem> (2)<suffix>`, ... when taken: nothing is ever overwritten).

    Call under `_counter_lock` together with the write, so that two jobs never pick one name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if stem is not None:
        path, n = directory / f"{stem}{suffix}", 1
        while path.exists() or path.with_suffix(".json").exists():
            n += 1
            path = directory / f"{stem} ({n}){suffix}"
        return path
    highest = 0
    for entry in os.scandir(directory):
        m = _COUNTER_RE.match(entry.name)
        if m:
            highest = max(highest, int(m.group(1)))
    return directory / f"{highest + 1:05d}-{seed}{suffix}"


def output_folder(root: Path, task: str, when: _dt.date | None = None) -> Path:
    return Path(root) / task / (when or _dt.date.today()).isoformat()


def save_image(
    image: Image.Image, root: Path, task: str, meta: dict[str, Any], name: OutputName | None = None
) -> Path:
    """Write `image` under root/task/YYYY-MM-DD/ (or as `name`) with its metadata; the file appears complete
    or not at all."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", a1111_parameters(meta))
    info.add_text("kubin", json.dumps(meta, ensure_ascii=False, sort_keys=True))
    folder = name.folder if name else output_folder(root, task)
    with _counter_lock:
        path = next_output_path(folder, int(meta.get("seed", 0)), stem=name.stem if name else None)
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


def save_tool_output(
    image: Image.Image,
    root: Path,
    task: str,
    model: str,
    params: dict[str, Any],
    inputs: dict[str, Any],
    name: OutputName | None = None,
) -> Path:
    """Save what a tool made from an image (an upscale, a mask, a cut-out) under root/task/ (or as `name`)
    like every output, with the tool's model and parameters and the input it came from."""
    from kubin import __version__

    meta = {
        "kubin_version": __version__,
        "task": task,
        "model": model,
        "seed": 0,
        "width": image.width,
        "height": image.height,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "params": params,
        "inputs": inputs,
    }
    return save_image(image, root, task, meta, name)


def read_image_metadata(source: str | os.PathLike | Image.Image) -> dict[str, Any]:
    """The `kubin` metadata of a Kubin PNG, or {"parameters": text} for other A1111-style PNGs."""
    try:
        image = source if isinstance(source, Image.Image) else Image.open(source)
    except (OSError, ValueError) as exc:
        raise InvalidParams(f"Could not read the image file: {without_paths(first_line(exc))}.") from None
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
    frames: list[Image.Image],
    fps: float,
    root: Path,
    task: str,
    meta: dict[str, Any],
    preview: bool = True,
    name: OutputName | None = None,
    audio: tuple[Any, int] | None = None,
) -> tuple[Path, Path | None]:
    """Write `frames` as root/task/YYYY-MM-DD/<counter>-<seed>.mp4 with a `.json` sidecar and (optionally)
    a `.webp` preview; returns (video, preview). With `audio` ((channels, n) samples in -1..1, sample rate)
    the mp4 carries it as an AAC track and a `.wav` of it lies beside the video. Encoding goes to temporary
    names; the files are renamed into place together, the video last, so a listed video is always complete."""
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
    folder = name.folder if name else output_folder(root, task)
    stem = name.stem if name else None
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".mp4", dir=folder)
    os.close(fd)  # ffmpeg writes the file by its name
    tmp_video = Path(tmp_name)
    tmp_files = [tmp_video]
    try:
        tmp_wav = None
        if audio is not None:
            tmp_wav = _write_temp(folder, ".wav", wav_bytes(*audio))
            tmp_files.append(tmp_wav)
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
            # The soundtrack muxed in as AAC (which every browser plays in an mp4).
            audio_path=str(tmp_wav) if tmp_wav else None,
            audio_codec="aac" if tmp_wav else None,
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
            path = next_output_path(folder, int(meta.get("seed", 0)), ".mp4", stem)
            preview_path = path.with_suffix(".webp") if tmp_preview else None
            os.replace(tmp_json, path.with_suffix(".json"))
            if tmp_preview:
                os.replace(tmp_preview, preview_path)
            if tmp_wav:
                os.replace(tmp_wav, path.with_suffix(".wav"))
            os.replace(tmp_video, path)
    except BaseException:
        for tmp in tmp_files:
            tmp.unlink(missing_ok=True)
        raise
    return path, preview_path


def wav_bytes(samples: Any, sample_rate: int) -> bytes:
    """A 16-bit PCM WAV file of `samples` ((channels, n) or (n,) floats in -1..1)."""
    import io
    import wave

    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2 or data.shape[1] == 0:
        raise InvalidParams("The soundtrack has no samples.")
    pcm = (np.clip(np.nan_to_num(data), -1.0, 1.0) * 32767).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(data.shape[0])
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.T.tobytes())  # interleaved: one sample of each channel in turn
    return buffer.getvalue()


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
    """The metadata of any Kubin output file: a video (.mp4 or its .json sidecar), a 3D object (any of its
    files) or an image."""
    suffix = Path(path).suffix.lower()
    if suffix in MESH_SUFFIXES:
        return read_mesh_metadata(path)
    if suffix == ".json":
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise InvalidParams("This file is not a Kubin metadata file.") from None
    if suffix == ".mp4" or (suffix == ".webp" and Path(path).with_suffix(".mp4").is_file()):
        return read_video_metadata(Path(path).with_suffix(".mp4"))  # a video, or its preview
    return read_image_metadata(path)


# --- 3D --------------------------------------------------------------------------------------------
MESH_FORMATS = ("glb", "ply", "obj")
MESH_SUFFIXES = (".glb", ".ply", ".obj", ".gif")  # a mesh's files, and its preview
TURNTABLE_FPS = 10  # Shap-E renders 20 views around the object: a two-second turn


@dataclass
class Video:
    """A video a model made: its frames, in order (iterating a Video gives them). `audio` is there for the
    models that make a soundtrack with the picture (Kandinsky 6): (samples as a float array of shape
    (channels, n) in -1..1, sample rate). `expanded_prompt` is the prompt the model rewrote the user's into,
    when it was asked to."""

    frames: list[Image.Image]
    audio: tuple[Any, int] | None = None
    expanded_prompt: str = ""
    fps: float = 0  # its own frame rate (an upscaled video keeps its source's); 0: the params' fps

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self):
        return iter(self.frames)


@dataclass
class Mesh:
    """A triangle mesh with per-vertex colours (0..1), and the turntable frames rendered with it."""

    vertices: np.ndarray  # (N, 3) float
    faces: np.ndarray  # (M, 3) int, indices into vertices
    colors: np.ndarray | None = None  # (N, 3) float in 0..1
    turntable: list[Image.Image] = field(default_factory=list)


def mesh_files(mesh: Mesh) -> dict[str, bytes]:
    """The mesh as GLB, PLY and OBJ, written by trimesh, turned to +Y up (the glTF convention, and what
    Blender and three.js expect; Shap-E makes objects +Z up)."""
    import trimesh

    if len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        raise InvalidParams("The model made an empty 3D object (no surface was found); try another seed.")
    colors = None
    if mesh.colors is not None:
        colors = (np.clip(np.asarray(mesh.colors, dtype=np.float64), 0, 1) * 255).round().astype(np.uint8)
    shape = trimesh.Trimesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64),
                            vertex_colors=colors, process=False)  # fmt: skip
    shape.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    out = {}
    for kind in MESH_FORMATS:
        data = shape.export(file_type=kind)
        out[kind] = data.encode("utf-8") if isinstance(data, str) else data
    return out


def save_mesh(
    mesh: Mesh, root: Path, task: str, meta: dict[str, Any], name: OutputName | None = None
) -> dict[str, Path]:
    """Write root/task/YYYY-MM-DD/<counter>-<seed>.glb with .ply, .obj, a .gif turntable (if frames are given)
    and a .json sidecar; returns {"glb", "ply", "obj", "preview", "json"} -> path. Everything is written to
    temporary names first and renamed into place with the .glb last, so a listed .glb is complete."""
    folder = name.folder if name else output_folder(root, task)
    stem = name.stem if name else None
    folder.mkdir(parents=True, exist_ok=True)
    files = mesh_files(mesh)
    meta = meta | {"vertices": len(mesh.vertices), "faces": len(mesh.faces)}
    temps: dict[str, Path] = {}
    try:
        temps["json"] = _write_temp(
            folder, ".json", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode()
        )
        for kind in ("ply", "obj", "glb"):
            temps[kind] = _write_temp(folder, f".{kind}", files[kind])
        if mesh.turntable:
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".gif", dir=folder)
            temps["preview"] = Path(tmp_name)
            frames = [f.convert("RGB") for f in mesh.turntable]
            with os.fdopen(fd, "wb") as fh:
                frames[0].save(fh, format="GIF", save_all=True, append_images=frames[1:],
                               duration=round(1000 / TURNTABLE_FPS), loop=0)  # fmt: skip
        with _counter_lock:
            glb = next_output_path(folder, int(meta.get("seed", 0)), ".glb", stem)
            paths = {kind: glb.with_suffix(".gif" if kind == "preview" else f".{kind}") for kind in temps}
            for kind in ("json", "preview", "ply", "obj", "glb"):  # the mesh that lists the object goes last
                if kind in temps:
                    os.replace(temps[kind], paths[kind])
    except BaseException:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        raise
    return paths


def read_mesh_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a Kubin 3D object, from the `.json` sidecar beside any of its files."""
    sidecar = Path(path).with_suffix(".json")
    try:
        return json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidParams(
            f"{Path(path).name} carries no generation parameters (its {sidecar.name} sidecar is missing)."
        ) from None
    except (OSError, ValueError):
        raise InvalidParams(f"The 3D object's metadata ({sidecar.name}) is damaged.") from None


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


def read_video(
    path: str | os.PathLike, what: str = "The video"
) -> tuple[list[Image.Image], float, tuple | None]:
    """Every frame of a video file, its frame rate, and its sound ((channels, n) floats in -1..1, sample
    rate) or None when it has none; a file that is not a video, or has no frames, is an InvalidParams."""
    import re
    import subprocess

    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise InvalidParams(f"{what} {str(path)!r} does not exist.")
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                           capture_output=True, text=True, errors="replace", timeout=60)  # fmt: skip
    streams = [line for line in probe.stderr.splitlines() if line.strip().startswith("Stream #")]
    if not any(": Video: " in line for line in streams):
        raise InvalidParams(
            f"{what} ({path.name}) is not a video file ffmpeg can read: it has no video stream."
        )
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        header = next(reader)
        width, height = header["size"]
        frames = [Image.frombytes("RGB", (width, height), raw) for raw in reader]
    except (OSError, RuntimeError, StopIteration):
        raise InvalidParams(f"Could not read {path.name} as a video.") from None
    if not frames:
        raise InvalidParams(f"{what} ({path.name}) has no frames.")
    audio = None
    sound = next((line for line in streams if ": Audio: " in line), None)
    found = re.search(r"(\d+) Hz, (mono|stereo|(\d+) channels)", sound or "")
    if found:
        rate = int(found.group(1))
        channels = {"mono": 1, "stereo": 2}.get(found.group(2)) or int(found.group(3))
        run = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le",
             "-ac", str(channels), "-ar", str(rate), "-"],
            capture_output=True, timeout=600,
        )  # fmt: skip
        if run.returncode == 0 and run.stdout:
            samples = np.frombuffer(run.stdout, "<i2").reshape(-1, channels).T.astype(np.float32) / 32768
            audio = (samples, rate)
    return frames, float(header["fps"]), audio


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
