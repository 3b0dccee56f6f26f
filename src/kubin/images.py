"""Reading the images and masks a user gives: any mode or bit depth in, RGB (or L for masks) out.

Every fix-up that changes what the user gave (transparency flattened, 16-bit reduced, downscaled,
mask resized) is reported as a notice; input that cannot be used is an InvalidParams with one
sentence that says what to do.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from kubin.errors import InvalidParams, first_line, without_paths

DEFAULT_MAX_PIXELS = 2048 * 2048
ImageSource = str | os.PathLike | Image.Image | np.ndarray | None


def open_image(source: ImageSource, what: str) -> Image.Image:
    """The image behind a path, array or PIL image, fully decoded; a clear error if it is missing or damaged."""
    if source is None or (isinstance(source, str) and not source.strip()):
        raise InvalidParams(f"{what} is missing: upload one.")
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return Image.fromarray(source)
    path = Path(source)
    if not path.is_file():
        raise InvalidParams(f"{what} {path.name!r} does not exist.")
    try:
        image = Image.open(path)
        image.load()  # decode now: a truncated file fails here, not halfway through a job
    except Image.DecompressionBombError:
        raise InvalidParams(
            f"{what} {path.name!r} is too large to open safely (over {Image.MAX_IMAGE_PIXELS * 2} pixels); "
            "use a smaller image."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        said = _pillow_said(exc)
        raise InvalidParams(
            f"{what} {path.name!r} could not be read: it is not an image or it is damaged"
            + (f" ({said})." if said else ".")
        ) from None
    return image


def check_image_file(path: str | os.PathLike) -> None:
    """Refuse a file (an upload) that is not an image Kubin can read, in one sentence that names it by its
    file name, never by the folder it was uploaded into."""
    name = Path(path).name
    try:
        with Image.open(path) as image:
            image.load()
    except Image.DecompressionBombError:
        raise InvalidParams(
            f"{name} is too large to open safely (over {Image.MAX_IMAGE_PIXELS * 2} pixels); use a smaller image."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        said = _pillow_said(exc)
        reason = (
            f"it is damaged: {said}"
            if said
            else "Kubin reads PNG, JPEG, WebP, BMP, TIFF and other raster formats"
        )
        raise InvalidParams(f"{name} is not an image ({reason}).") from None


def _pillow_said(exc: BaseException) -> str:
    """What Pillow said about a file it could not read, without paths; nothing when it only says that it did
    not recognise the file (a message that is just the file's path)."""
    return "" if isinstance(exc, UnidentifiedImageError) else without_paths(first_line(exc))


def to_rgb(image: Image.Image, what: str, notices: list[str]) -> Image.Image:
    """RGB 8-bit: transparency is flattened onto white, 16-bit and float images are scaled to 8 bits."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        if image.mode == "F" and array.max() <= 1.0:
            top = 1.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        notices.append(f"{what} had more than 8 bits per channel; it was reduced to 8 bits.")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGBa"):
        rgba = image.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:
            notices.append(f"{what} had transparent areas; they were filled with white.")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def limit_pixels(image: Image.Image, max_pixels: int, what: str, notices: list[str]) -> Image.Image:
    """Downscale (keeping the aspect ratio) so the image has at most max_pixels pixels."""
    w, h = image.size
    if w * h <= max_pixels:
        return image
    scale = (max_pixels / (w * h)) ** 0.5
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    notices.append(
        f"{what} was {w}x{h}, more than the configured maximum of {max_pixels} pixels; "
        f"it was downscaled to {size[0]}x{size[1]}."
    )
    return image.resize(size, Image.Resampling.LANCZOS)


def load_image(
    source: ImageSource, what: str = "Init image", max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image, list[str]]:
    """An RGB image ready for a pipeline, and what was changed to get there."""
    notices: list[str] = []
    image = to_rgb(open_image(source, what), what, notices)
    return limit_pixels(image, max_pixels, what, notices), notices


def load_mask(
    source: ImageSource, size: tuple[int, int], invert: bool = False, blur: int = 0, what: str = "Mask"
) -> tuple[Image.Image, list[str]]:
    """An L mask of `size` where white (255) means repaint; resized, inverted and blurred as asked.

    A mask with transparency (a drawn layer) counts its painted (opaque) pixels as white.
    """
    notices: list[str] = []
    raw = ImageOps.exif_transpose(open_image(source, what))
    if raw.mode in ("RGBA", "LA", "PA") or (raw.mode == "P" and "transparency" in raw.info):
        rgba = raw.convert("RGBA")
        alpha = rgba.getchannel("A")
        # A drawn layer: strokes are opaque on a transparent sheet. A flat opaque image: use its brightness.
        mask = alpha if alpha.getextrema()[0] < 255 else rgba.convert("L")
    else:
        mask = to_rgb(raw, what, []).convert("L") if raw.mode not in ("L", "1") else raw.convert("L")
    if mask.size != tuple(size):
        notices.append(
            f"{what} was {mask.size[0]}x{mask.size[1]}; it was resized to {size[0]}x{size[1]} to match the image."
        )
        mask = mask.resize(tuple(size), Image.Resampling.NEAREST)
    if invert:
        mask = ImageOps.invert(mask)
    lo, hi = mask.getextrema()
    if hi < 128:
        raise InvalidParams(
            f"{what} is empty, so there is nothing to repaint: paint the area to change in white"
            + (" (or turn off 'invert mask')." if invert else ".")
        )
    if lo >= 128:
        notices.append(f"{what} covers the whole image, so all of it is repainted.")
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return mask, notices


def keep_unmasked(original: Image.Image, result: Image.Image, mask: Image.Image) -> Image.Image:
    """The result inside the mask, the original outside it, blended along a soft mask edge."""
    if result.size != original.size:
        result = result.resize(original.size, Image.Resampling.LANCZOS)
    return Image.composite(result, original, mask)


def snap_size(size: tuple[int, int], multiple: int = 64, limit: int = 2048) -> tuple[int, int]:
    """The nearest sizes that are multiples of `multiple` (at least one multiple, at most `limit`)."""
    return tuple(max(multiple, min(limit, round(v / multiple) * multiple)) for v in size)  # type: ignore[return-value]


def store_input(image: Image.Image, root: Path) -> Path:
    """Keep a copy of an input under root/inputs/<hash>.png so an output's metadata can point at it."""
    digest = hashlib.sha256(image.tobytes() + repr((image.mode, image.size)).encode()).hexdigest()[:20]
    folder = Path(root) / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.png"
    if not path.exists():
        tmp = folder / f".tmp-{digest}-{os.getpid()}.png"
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    return path
