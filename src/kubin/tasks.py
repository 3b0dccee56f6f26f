"""How each task turns its parameters into pipeline inputs: loading and checking images and masks,
choosing the working size, building the outpaint canvas. Runs at submit time, so bad input fails
before a job is queued; what was adjusted on the way is returned as notices for the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from kubin.errors import InvalidParams
from kubin.images import DEFAULT_MAX_PIXELS, keep_unmasked, load_image, load_mask, snap_size, store_input
from kubin.params import (
    MAX_SIDE,
    VIDEO_SIZE_STEP,
    Image2ImageParams,
    Image2MeshParams,
    ImageTaskParams,
    InpaintParams,
    MeshTaskParams,
    MixParams,
    OutpaintParams,
    VideoTaskParams,
    VideoUpscaleParams,
    parse_aspect,
)

if TYPE_CHECKING:
    from kubin.models.registry import ModelSpec


@dataclass
class Prepared:
    """Pipeline-ready inputs of one job, with the size it runs at and what was changed on the way."""

    size: tuple[int, int] | None = None  # (width, height) the pipeline runs at
    image: Image.Image | None = None  # init image at `size`
    mask: Image.Image | None = None  # L mask at `size`, white = repaint
    hint: Image.Image | None = None  # RGB ControlNet hint at `size`
    mix_items: list[Any] = field(default_factory=list)  # images and prompts, in weight order
    # To put a repainted result back: the original picture and the mask at the output size.
    original: Image.Image | None = None
    keep_mask: Image.Image | None = None
    notices: list[str] = field(default_factory=list)
    sources: dict[str, Image.Image | list[Image.Image]] = field(default_factory=dict)  # inputs as loaded
    frames: int = 0  # video tasks: the frame count the model makes (the request, snapped to its step)
    # A ControlNet hint that is a photo, not a depth map: the job estimates its depth map first
    # (kubin.tools.jobs.estimate_hint_depth), which then fills `hint`, `depth_map` and `depth_model`.
    depth_from: Image.Image | None = None
    depth_map: Path | None = None  # the estimated map, saved under <output>/depth/
    depth_model: str = ""
    # Video upscale: the source video's frames (as many as the model takes), frame rate and sound.
    video: list[Image.Image] = field(default_factory=list)
    fps: float = 0
    audio: tuple[Any, int] | None = None

    def finish(self, result: Image.Image) -> Image.Image:
        """The output image: a repainted result is put back over the original outside the mask."""
        if self.original is None or self.keep_mask is None:
            return result
        return keep_unmasked(self.original, result, self.keep_mask)

    def store_sources(self, root: Path) -> dict[str, Any]:
        """Copies of the inputs under root/inputs/, as paths relative to root, for the outputs' metadata."""
        stored: dict[str, Any] = {}
        for name, value in self.sources.items():
            if isinstance(value, list):
                stored[name] = [str(store_input(v, root).relative_to(root)) for v in value]
            else:
                stored[name] = str(store_input(value, root).relative_to(root))
        return stored


def prepare(
    params: ImageTaskParams, max_pixels: int = DEFAULT_MAX_PIXELS, spec: ModelSpec | None = None
) -> Prepared:
    """Pipeline inputs for `params`; with the model's spec, its sizes and frame steps are applied too."""
    if isinstance(params, VideoUpscaleParams):
        return _video_upscale(params, max_pixels)
    if isinstance(params, VideoTaskParams):
        return _video(params, max_pixels, spec)
    if isinstance(params, MeshTaskParams):
        return _mesh(params, max_pixels)
    prepared = _prepare(params, max_pixels)
    if spec is not None and spec.resolutions_only and prepared.size not in spec.resolutions:
        size = nearest_resolution(prepared.size, spec.resolutions)
        prepared.notices.append(
            f"{spec.title} makes only {', '.join(f'{w}x{h}' for w, h in spec.resolutions)}; "
            f"{prepared.size[0]}x{prepared.size[1]} became {size[0]}x{size[1]} (the nearest aspect ratio)."
        )
        prepared.size = size
        if prepared.image is not None:
            prepared.image = cover(prepared.image, size)
    if getattr(params, "hint_image", ""):
        hint, notices = load_image(params.hint_image, "ControlNet hint", max_pixels)
        if hint.size != prepared.size:
            notices.append(f"The ControlNet hint was {hint.width}x{hint.height}; it was resized to "
                           f"{prepared.size[0]}x{prepared.size[1]} to match the output.")  # fmt: skip
        prepared.hint = hint.resize(prepared.size, Image.Resampling.BILINEAR)
        prepared.notices += notices
        prepared.sources["hint_image"] = hint
        if _wants_depth(params, hint):
            prepared.depth_from = hint
    return prepared


def _wants_depth(params: ImageTaskParams, hint: Image.Image) -> bool:
    """Whether the hint is to be turned into a depth map: always, never, or (auto) when it is not one yet."""
    from kubin.tools.depth import is_depth_map

    mode = getattr(params, "estimate_depth", "never")
    return mode == "always" or (mode == "auto" and not is_depth_map(hint))


def with_prompts(prepared: Prepared, params: ImageTaskParams) -> Prepared:
    """The prepared inputs for `params` whose prompts were expanded from templates (see kubin.prompts):
    Mix's items hold its prompts after its images; the other tasks read their prompts from the params."""
    if isinstance(params, MixParams):
        return replace(prepared, mix_items=[*prepared.mix_items[: len(params.images)], *params.prompts])
    return prepared


def _prepare(params: ImageTaskParams, max_pixels: int) -> Prepared:
    if isinstance(params, Image2ImageParams):
        return _image_to_image(params, max_pixels)
    if isinstance(params, InpaintParams):
        return _inpaint(params, max_pixels)
    if isinstance(params, OutpaintParams):
        return _outpaint(params, max_pixels)
    if isinstance(params, MixParams):
        return _mix(params, max_pixels)
    return Prepared(size=(params.width, params.height))


def _image_to_image(params: Image2ImageParams, max_pixels: int) -> Prepared:
    image, notices = load_image(params.init_image, "Init image", max_pixels)
    size = (params.width or image.width, params.height or image.height)
    snapped = snap_size(size)
    if not (params.width and params.height) and snapped != size:
        notices.append(
            f"The init image is {size[0]}x{size[1]}; the result is {snapped[0]}x{snapped[1]} (multiples of 64)."
        )
    return Prepared(size=snapped, image=image.resize(snapped, Image.Resampling.LANCZOS), notices=notices,
                    sources={"init_image": image})  # fmt: skip


def _inpaint(params: InpaintParams, max_pixels: int) -> Prepared:
    image, notices = load_image(params.init_image, "Init image", max_pixels)
    mask, mask_notices = load_mask(params.mask, image.size, params.invert_mask, params.mask_blur)
    return _repaint(image, mask, notices + mask_notices, {"init_image": image, "mask": mask})


def _repaint(original: Image.Image, mask: Image.Image, notices: list[str], sources: dict) -> Prepared:
    """Run at the nearest multiple-of-64 size; the result goes back at the original size, masked."""
    size = snap_size(original.size)
    return Prepared(
        size=size,
        image=original.resize(size, Image.Resampling.LANCZOS),
        mask=mask.resize(size, Image.Resampling.BILINEAR),
        original=original,
        keep_mask=mask,
        notices=notices,
        sources=sources,
    )


def outpaint_margins(size: tuple[int, int], params: OutpaintParams) -> tuple[int, int, int, int]:
    """Left, top, right, bottom pixels to add: as given, or split evenly to reach the target aspect."""
    if not params.aspect:
        return tuple(params.expand)  # type: ignore[return-value]
    w, h = size
    ratio = parse_aspect(params.aspect)
    if w / h < ratio:  # too narrow: widen
        extra = round(h * ratio) - w
        return (extra // 2, 0, extra - extra // 2, 0)
    extra = round(w / ratio) - h
    return (0, extra // 2, 0, extra - extra // 2)


def _outpaint(params: OutpaintParams, max_pixels: int) -> Prepared:
    image, notices = load_image(params.init_image, "Init image", max_pixels)
    left, top, right, bottom = outpaint_margins(image.size, params)
    width, height = image.width + left + right, image.height + top + bottom
    if (width, height) == image.size:
        raise InvalidParams(f"The image already has the aspect ratio {params.aspect}; nothing to outpaint.")
    if max(width, height) > MAX_SIDE or width * height > max_pixels:
        raise InvalidParams(
            f"The outpainted image would be {width}x{height}, larger than the maximum "
            f"({MAX_SIDE} per side, {max_pixels} pixels); expand less or start from a smaller image."
        )
    # The new area starts as the image's edge pixels stretched outward and blurred, which gives the
    # model colours to continue instead of a flat fill.
    pixels = np.pad(np.asarray(image), ((top, bottom), (left, right), (0, 0)), mode="edge")
    canvas = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(8))
    canvas.paste(image, (left, top))
    mask = Image.new("L", (width, height), 255)
    mask.paste(0, (left, top, left + image.width, top + image.height))
    if params.feather:
        # The repaint fades `feather` pixels into the old image along the seams only: blurring spreads
        # the new area's white inward, and the max keeps the new area itself fully repainted.
        mask = ImageChops.lighter(mask, mask.filter(ImageFilter.GaussianBlur(params.feather / 2)))
    return _repaint(canvas, mask, notices, {"init_image": image})


def _mix(params: MixParams, max_pixels: int) -> Prepared:
    notices: list[str] = []
    images = []
    for i, source in enumerate(params.images, start=1):
        image, image_notices = load_image(source, f"Mix image {i}", max_pixels)
        images.append(image)
        notices += image_notices
    return Prepared(size=(params.width, params.height), mix_items=[*images, *params.prompts], notices=notices,
                    sources={"images": images} if images else {})  # fmt: skip


def _mesh(params: MeshTaskParams, max_pixels: int) -> Prepared:
    """3D: the preview's square size; image to 3D loads its picture (Shap-E's own processor resizes it)."""
    size = (params.frame_size, params.frame_size)
    if not isinstance(params, Image2MeshParams):
        return Prepared(size=size)
    if not params.init_image:
        raise InvalidParams("Image to 3D needs an init image: a picture of the object.")
    image, notices = load_image(params.init_image, "Init image", max_pixels)
    return Prepared(size=size, image=image, notices=notices, sources={"init_image": image})


def nearest_resolution(size: tuple[int, int], resolutions) -> tuple[int, int]:
    """The resolution whose aspect ratio is nearest to size's (then the nearest in area)."""
    w, h = size
    return min(resolutions, key=lambda r: (abs(r[0] / r[1] - w / h), abs(r[0] * r[1] - w * h)))


def cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` scaled to cover `size` and centre-cropped to it (no distortion)."""
    from PIL import ImageOps

    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)


def _video(params: VideoTaskParams, max_pixels: int, spec: ModelSpec | None) -> Prepared:
    notices: list[str] = []
    step = (spec.limits.get("frame_step", 1) if spec else 1) or 1
    frames = max(1, round((params.frames - 1) / step) * step + 1)
    if frames != params.frames:
        notices.append(
            f"This model makes videos of 4k+1 frames; {params.frames} frames became {frames}."
            if step == 4
            else f"This model makes videos of {step}k+1 frames; {params.frames} frames became {frames}."
        )
    size = (params.width, params.height)
    image = None
    sources: dict[str, Any] = {}
    init = getattr(params, "init_image", None)
    if init is not None:
        if not init:
            raise InvalidParams("Image to video needs an init image (the first frame).")
        loaded, load_notices = load_image(init, "Init image", max_pixels)
        notices += load_notices
        sources["init_image"] = loaded
        if not (params.width or params.height):
            if spec is not None and spec.resolutions:
                size = nearest_resolution(loaded.size, spec.resolutions)
            else:
                size = snap_size(loaded.size, VIDEO_SIZE_STEP)
        elif not (params.width and params.height):  # one side given: the other follows the picture
            ratio = loaded.width / loaded.height
            side = params.width or round(params.height * ratio)
            size = snap_size((side, params.height or round(params.width / ratio)), VIDEO_SIZE_STEP)
        if abs(size[0] / size[1] - loaded.width / loaded.height) > 0.01:
            notices.append(
                f"The init image is {loaded.width}x{loaded.height}; it was centre-cropped to the video's "
                f"{size[0]}x{size[1]} aspect ratio."
            )
        image = cover(loaded, size)
    return Prepared(size=size, image=image, notices=notices, sources=sources, frames=frames)


UPSCALE_FRAME_STEP = 4  # the super-resolution VAE packs 4 frames per latent: it takes 4k+1 of them


def _video_upscale(params: VideoUpscaleParams, max_pixels: int) -> Prepared:
    """The source video's frames (the first 4k+1 of them), frame rate and sound; the result's size is
    checked against the most pixels an output may have."""
    from kubin.outputs import read_video

    if not params.init_video:
        raise InvalidParams("Video upscale needs a video: give the path of an mp4 (or another video file).")
    frames, fps, audio = read_video(params.init_video, "The video")
    notices: list[str] = []
    keep = (len(frames) - 1) // UPSCALE_FRAME_STEP * UPSCALE_FRAME_STEP + 1
    if keep != len(frames):
        notices.append(
            f"The upscaler takes 4k+1 frames: the video's {len(frames)} frames became {keep} "
            f"(the last {len(frames) - keep} left out)."
        )
    width, height = frames[0].size
    scale = float(params.scale)
    out = (round(width * scale), round(height * scale))
    if out[0] * out[1] > max_pixels or max(out) > MAX_SIDE * 2:
        raise InvalidParams(
            f"A {width}x{height} video upscaled {params.scale}x would be {out[0]}x{out[1]}, more than the "
            f"largest output ({max_pixels} pixels); pick a smaller scale or a smaller video."
        )
    return Prepared(size=(width, height), frames=keep, video=frames[:keep], fps=fps, audio=audio,
                    notices=notices)  # fmt: skip
