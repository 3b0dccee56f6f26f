"""A training folder checked before a run: which pictures (or, for a video model, short clips) are usable (the
others are listed with why, and skipped), the caption of each (a same-named .txt, with the trigger word in
front), the aspect-ratio bucket each falls into, and a hash of the whole set that the adapter's metadata
records. Clips are read through imageio-ffmpeg and sampled at the run's frame rate to the longest frame count
they hold, up to the run's (frame-count buckets: 17, 13, 9, 5 for a 17-frame run)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov")
MIN_SIDE = 64  # smaller pictures teach nothing but blur


@dataclass(frozen=True)
class ClipShape:
    """What a video run trains on: up to `frames` frames of each clip, taken at `fps` from its start; a
    shorter clip gives the longest count of 1 + a multiple of `step` frames it holds, at least 1 + `step`."""

    frames: int
    fps: float
    step: int = 4  # the video VAE packs this many frames into one latent frame

    @property
    def shortest(self) -> int:
        return min(self.frames, 1 + self.step)

    def indices(self, source_fps: float, frames: int | None = None) -> list[int]:
        """The source frames that make `frames` (default: the most) at this frame rate (the nearest frame to
        each moment)."""
        return [round(i * source_fps / self.fps) for i in range(frames or self.frames)]

    def frames_for(self, count: int, source_fps: float) -> int:
        """How many frames a clip of `count` frames at `source_fps` trains with; 0 when it is too short."""
        frames = self.frames
        while frames >= self.shortest:
            if self.indices(source_fps, frames)[-1] < count:
                return frames
            frames -= self.step
        return 0


@dataclass(frozen=True)
class TrainingItem:
    """One usable picture or clip: its file, caption and the (height, width) bucket it is trained at."""

    path: Path
    caption: str
    size: tuple[int, int]  # (width, height) as found
    bucket: tuple[int, int]  # (height, width) it is resized and cropped to
    source_fps: float = 0.0  # a clip's own frame rate (0 for a picture)
    frames: int = 0  # the frames a clip trains with (0 for a picture)

    @property
    def group(self) -> tuple[tuple[int, int], int]:
        """Items of one group stack into a batch: same bucket, same frame count."""
        return self.bucket, self.frames


@dataclass(frozen=True)
class DatasetReport:
    """What the check found: the usable items, the skipped files with the reason each, and the buckets."""

    folder: Path
    items: tuple[TrainingItem, ...]
    skipped: tuple[tuple[str, str], ...]  # (file name, why)
    digest: str  # sha256 of the usable files' names, bytes and captions (first 16 hex digits)
    trigger: str = ""
    buckets: dict[tuple[int, int], int] = field(default_factory=dict)  # (height, width) -> how many
    clip: ClipShape | None = None  # a folder of clips: the frames and frame rate each is sampled to

    @property
    def groups(self) -> dict[tuple[tuple[int, int], int], int]:
        """(bucket, frames) -> how many items: the batches' groups."""
        return dict(Counter(item.group for item in self.items))

    @property
    def frame_buckets(self) -> dict[int, int]:
        """A folder of clips: frame count -> how many clips train with it, longest first."""
        return dict(sorted(Counter(item.frames for item in self.items).items(), reverse=True))

    @property
    def clip_frames(self) -> str:
        """ "5 frames at 8 fps", or with several frame counts "17 frames (3), 5 frames (1) at 8 fps"."""
        counts = self.frame_buckets
        if len(counts) == 1:
            return f"{next(iter(counts))} frames at {self.clip.fps:g} fps"
        return (
            ", ".join(f"{frames} frames ({n})" for frames, n in counts.items()) + f" at {self.clip.fps:g} fps"
        )

    @property
    def what(self) -> str:
        """What the items are: "image(s)", or "clip(s) (17 frames at 8 fps)"."""
        return f"clip(s) ({self.clip_frames})" if self.clip else "image(s)"

    def summary(self) -> str:
        buckets = ", ".join(f"{w}x{h}: {n}" for (h, w), n in sorted(self.buckets.items()))
        skipped = f"; skipped {len(self.skipped)}: " + "; ".join(f"{n} ({why})" for n, why in self.skipped)
        return f"{len(self.items)} {self.what} in buckets {buckets}" + (skipped if self.skipped else "")

    def as_json(self) -> dict[str, Any]:
        kind = "clips" if self.clip else "images"
        out = {
            "folder": str(self.folder),
            kind: len(self.items),
            "skipped": [{"file": n, "reason": why} for n, why in self.skipped],
            "buckets": [{"width": w, "height": h, kind: n} for (h, w), n in sorted(self.buckets.items())],
            "dataset_hash": self.digest,
        }
        if self.clip:
            out.update(frames=self.clip.frames, fps=self.clip.fps,
                       frame_buckets=[{"frames": f, "clips": n} for f, n in self.frame_buckets.items()])  # fmt: skip
        return out


def bucket_sizes(resolution: int, divisibility: int) -> list[tuple[int, int]]:
    """The (height, width) buckets near resolution² pixels, from diffusers' training helper."""
    from diffusers.training_utils import generate_aspect_ratio_buckets

    return generate_aspect_ratio_buckets(resolution, divisibility=divisibility)


def scan_dataset(
    folder: str | Path,
    resolution: int,
    divisibility: int = 64,
    trigger: str = "",
    min_side: int = MIN_SIDE,
    clip: ClipShape | None = None,
) -> DatasetReport:
    """Check every picture in `folder` (not its subfolders), or with `clip` every video clip: one that cannot
    be read, is smaller than `min_side` or (a clip) is shorter than `clip` takes is skipped with its reason.
    InvalidParams when the folder is missing or nothing is usable."""
    from diffusers.training_utils import find_nearest_bucket

    folder = Path(folder).expanduser()
    kind = "short video clips" if clip else "pictures"
    suffixes = VIDEO_SUFFIXES if clip else IMAGE_SUFFIXES
    if not folder.is_dir():
        raise InvalidParams(f"The training folder {folder} does not exist; give a folder of {kind}.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    media = [p for p in files if p.suffix.lower() in suffixes]
    if not files:
        raise InvalidParams(
            f"The training folder {folder.name} is empty; put {kind} ({', '.join(suffixes[:3])}) in it."
        )
    if not media:
        raise InvalidParams(
            f"The training folder {folder.name} holds no {kind} ({len(files)} other file(s)); "
            f"training {'a video model ' if clip else ''}reads {', '.join(suffixes)} files with optional "
            "same-named .txt captions."
        )
    buckets = bucket_sizes(resolution, divisibility)
    items, skipped = [], []
    digest = hashlib.sha256()
    for path in media:
        found = _probe_clip(path, clip) if clip else _probe_picture(path)
        if isinstance(found, str):
            skipped.append((path.name, found))
            continue
        size, source_fps, frames = found
        if min(size) < min_side:
            skipped.append((path.name, f"too small: {size[0]}x{size[1]}, at least {min_side} px a side"))
            continue
        caption = read_caption(path, trigger)
        bucket = buckets[find_nearest_bucket(size[1], size[0], buckets)]
        items.append(TrainingItem(path, caption, size, tuple(bucket), source_fps, frames))
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0" + caption.encode() + b"\0")
    if not items:
        reasons = "; ".join(f"{n} ({why})" for n, why in skipped)
        raise InvalidParams(f"No usable {'clip' if clip else 'picture'} in {folder.name}: {reasons}.")
    counts = Counter(item.bucket for item in items)
    return DatasetReport(
        folder, tuple(items), tuple(skipped), digest.hexdigest()[:16], trigger, dict(counts), clip
    )


def _probe_picture(path: Path) -> tuple[tuple[int, int], float, int] | str:
    """The picture's (width, height) (and no frame rate or frames), or why it cannot be used."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # a truncated file fails here, not in the middle of the run
            return image.size, 0.0, 0
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return f"cannot be read: damaged or not an image ({type(exc).__name__})"


def _probe_clip(path: Path, clip: ClipShape) -> tuple[tuple[int, int], float, int] | str:
    """The clip's (width, height), frame rate and the frames it trains with, or why it cannot be used
    (unreadable, too short)."""
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        try:
            header = next(reader)
        finally:
            reader.close()
        count, _seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
        size, fps = tuple(header["size"]), float(header["fps"])
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError, TypeError) as exc:
        return f"cannot be read: damaged or not a video ({type(exc).__name__})"
    if not count or not fps > 0:
        return "cannot be read: no frames or no frame rate"
    frames = clip.frames_for(count, fps)
    if not frames:
        return (
            f"too short: {count} frames at {fps:g} fps ({count / fps:.2f} s); training takes at least "
            f"{clip.shortest} frames at {clip.fps:g} fps ({clip.shortest / clip.fps:.2f} s)"
        )
    return size, fps, frames


def read_caption(image: Path, trigger: str = "") -> str:
    """The picture's caption: its same-named .txt (first paragraph), the trigger word in front."""
    text = ""
    txt = image.with_suffix(".txt")
    if txt.is_file():
        text = " ".join(txt.read_text(encoding="utf-8", errors="replace").split())
    trigger = trigger.strip()
    if trigger and not text.startswith(trigger):
        text = f"{trigger}, {text}" if text else trigger
    return text


def batches_for_epoch(report: DatasetReport, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's batches as item indices: each batch from one group (same size and frames, so they stack), the
    order shuffled by (seed, epoch) alone, so a resumed run draws the same batches as an unbroken one."""
    import random

    rng = random.Random(seed * 100_003 + epoch)
    by_bucket: dict[tuple, list[int]] = {}
    for index, item in enumerate(report.items):
        by_bucket.setdefault(item.group, []).append(index)
    batches = []
    for bucket in sorted(by_bucket):
        indices = by_bucket[bucket]
        rng.shuffle(indices)
        batches += [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    rng.shuffle(batches)
    return batches


class BatchOrder:
    """Which pictures the n-th batch of a run holds: epoch after epoch of `batches_for_epoch`, one epoch's
    plan kept at a time. Every epoch has as many batches (the buckets' sizes do not change)."""

    def __init__(self, report: DatasetReport, batch_size: int, seed: int):
        self.report, self.batch_size, self.seed = report, batch_size, seed
        self._epoch, self._plan = 0, batches_for_epoch(report, batch_size, seed, 0)

    def __call__(self, index: int) -> list[int]:
        epoch, position = divmod(index, len(self._plan))
        if epoch != self._epoch:
            self._epoch, self._plan = epoch, batches_for_epoch(self.report, self.batch_size, self.seed, epoch)
        return self._plan[position]
