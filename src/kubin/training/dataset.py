"""A training folder checked before a run: which pictures are usable (the others are listed with why, and
skipped), the caption of each (a same-named .txt, with the trigger word in front), the aspect-ratio bucket
each falls into, and a hash of the whole set that the adapter's metadata records."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MIN_SIDE = 64  # smaller pictures teach nothing but blur


@dataclass(frozen=True)
class TrainingItem:
    """One usable picture: its file, caption and the (height, width) bucket it is trained at."""

    path: Path
    caption: str
    size: tuple[int, int]  # (width, height) as found
    bucket: tuple[int, int]  # (height, width) it is resized and cropped to


@dataclass(frozen=True)
class DatasetReport:
    """What the check found: the usable items, the skipped files with the reason each, and the buckets."""

    folder: Path
    items: tuple[TrainingItem, ...]
    skipped: tuple[tuple[str, str], ...]  # (file name, why)
    digest: str  # sha256 of the usable files' names, bytes and captions (first 16 hex digits)
    trigger: str = ""
    buckets: dict[tuple[int, int], int] = field(default_factory=dict)  # (height, width) -> how many

    def summary(self) -> str:
        buckets = ", ".join(f"{w}x{h}: {n}" for (h, w), n in sorted(self.buckets.items()))
        skipped = f"; skipped {len(self.skipped)}: " + "; ".join(f"{n} ({why})" for n, why in self.skipped)
        return f"{len(self.items)} image(s) in buckets {buckets}" + (skipped if self.skipped else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "images": len(self.items),
            "skipped": [{"file": n, "reason": why} for n, why in self.skipped],
            "buckets": [{"width": w, "height": h, "images": n} for (h, w), n in sorted(self.buckets.items())],
            "dataset_hash": self.digest,
        }


def bucket_sizes(resolution: int, divisibility: int) -> list[tuple[int, int]]:
    """The (height, width) buckets near resolution² pixels, from diffusers' training helper."""
    from diffusers.training_utils import generate_aspect_ratio_buckets

    return generate_aspect_ratio_buckets(resolution, divisibility=divisibility)


def scan_dataset(
    folder: str | Path, resolution: int, divisibility: int = 64, trigger: str = "", min_side: int = MIN_SIDE
) -> DatasetReport:
    """Check every picture in `folder` (not its subfolders): one that cannot be read or is smaller than
    `min_side` is skipped with its reason. InvalidParams when the folder is missing or nothing is usable."""
    from diffusers.training_utils import find_nearest_bucket
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InvalidParams(f"The training folder {folder} does not exist; give a folder of pictures.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    pictures = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise InvalidParams(
            f"The training folder {folder.name} is empty; put pictures (.png, .jpg, .webp) in it."
        )
    if not pictures:
        raise InvalidParams(
            f"The training folder {folder.name} holds no pictures ({len(files)} other file(s)); "
            f"training reads {', '.join(IMAGE_SUFFIXES)} files with optional same-named .txt captions."
        )
    buckets = bucket_sizes(resolution, divisibility)
    items, skipped = [], []
    digest = hashlib.sha256()
    for path in pictures:
        try:
            with Image.open(path) as image:
                image.load()  # a truncated file fails here, not in the middle of the run
                size = image.size
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            skipped.append((path.name, f"cannot be read: damaged or not an image ({type(exc).__name__})"))
            continue
        if min(size) < min_side:
            skipped.append((path.name, f"too small: {size[0]}x{size[1]}, at least {min_side} px a side"))
            continue
        caption = read_caption(path, trigger)
        bucket = buckets[find_nearest_bucket(size[1], size[0], buckets)]
        items.append(TrainingItem(path, caption, size, tuple(bucket)))
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0" + caption.encode() + b"\0")
    if not items:
        reasons = "; ".join(f"{n} ({why})" for n, why in skipped)
        raise InvalidParams(f"No usable picture in {folder.name}: {reasons}.")
    counts = Counter(item.bucket for item in items)
    return DatasetReport(folder, tuple(items), tuple(skipped), digest.hexdigest()[:16], trigger, dict(counts))


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
    """The epoch's batches as item indices: each batch from one bucket (same size, so they stack), the
    order shuffled by (seed, epoch) alone, so a resumed run draws the same batches as an unbroken one."""
    import random

    rng = random.Random(seed * 100_003 + epoch)
    by_bucket: dict[tuple[int, int], list[int]] = {}
    for index, item in enumerate(report.items):
        by_bucket.setdefault(item.bucket, []).append(index)
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
