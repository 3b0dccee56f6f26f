"""Depth maps for ControlNet: a depth model through transformers' `depth-estimation` pipeline (Depth
Anything V2 small by default; DPT-hybrid, which the original Kandinsky UI used, or any other id or folder
works the same). A map is a single-channel image of the input's size, white = near."""

from __future__ import annotations

from typing import Any

from PIL import Image

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
KNOWN_DEPTH_MODELS = (DEFAULT_DEPTH_MODEL, "Intel/dpt-hybrid-midas", "tiny-depth")
SETTING = "tools.depth_model (--depth-model)"


def load_depth(model_id: str, device: str = "cpu") -> Any:
    """The `depth-estimation` pipeline of `model_id`, its model placed on `device`."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation, pipeline

    from kubin.runtime.placement import place_tool_model
    from kubin.tools.weights import tool_folder

    folder = tool_folder(model_id, "depth model", SETTING)
    model = AutoModelForDepthEstimation.from_pretrained(folder).eval()
    place_tool_model(model, device)
    return pipeline(
        "depth-estimation",
        model=model,
        image_processor=AutoImageProcessor.from_pretrained(folder),
        device=device,
    )


def estimate_depth(depth_pipeline: Any, image: Image.Image) -> Image.Image:
    """The depth map of `image`: mode "L", the image's size, near is white."""
    import torch

    with torch.no_grad():
        depth = depth_pipeline(image.convert("RGB"))["depth"]
    if depth.size != image.size:
        depth = depth.resize(image.size, Image.Resampling.BILINEAR)
    return depth.convert("L")


def is_depth_map(image: Image.Image) -> bool:
    """Whether `image` already looks like a depth map: one channel, or three equal ones (grey)."""
    if image.mode in ("L", "I", "I;16", "F", "1", "LA"):
        return True
    import numpy as np

    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    return bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 2 and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= 2)
