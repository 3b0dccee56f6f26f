"""Which tool models the app uses (`ToolModels`: a setting and a flag each, tiny ids for offline use), and
what a generation job asks of them on its own worker: a ControlNet photo hint's depth map. Kept apart from
kubin.tools.jobs (the queued calls), so that the engine needs nothing that needs the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from kubin.tools.caption import KNOWN_CAPTION_MODELS
from kubin.tools.depth import DEFAULT_DEPTH_MODEL, KNOWN_DEPTH_MODELS
from kubin.tools.enhance import KNOWN_ENHANCE_MODELS

if TYPE_CHECKING:
    from kubin.models.manager import ModelManager
    from kubin.tasks import Prepared


def is_tool_model(model_id: str) -> bool:
    """A model id Kubin knows as a tool's (the defaults and their named alternatives)."""
    return model_id in KNOWN_DEPTH_MODELS + KNOWN_CAPTION_MODELS + KNOWN_ENHANCE_MODELS


@dataclass
class ToolModels:
    """The model each tool uses: a Hugging Face id, a local folder or a tiny id (`tiny-depth`, ...)."""

    depth: str = DEFAULT_DEPTH_MODEL
    caption: str = ""  # filled in __post_init__ (kept out of the import of kubin.tools.caption)
    enhance: str = ""

    def __post_init__(self) -> None:
        from kubin.tools.caption import DEFAULT_CAPTION_MODEL
        from kubin.tools.enhance import DEFAULT_ENHANCE_MODEL

        self.depth = self.depth or DEFAULT_DEPTH_MODEL
        self.caption = self.caption or DEFAULT_CAPTION_MODEL
        self.enhance = self.enhance or DEFAULT_ENHANCE_MODEL

    @classmethod
    def from_settings(cls, settings) -> ToolModels:
        return cls(
            settings.get("tools.depth_model") or "",
            settings.get("tools.caption_model") or "",
            settings.get("tools.enhance_model") or "",
        )


def depth_pipeline(manager: ModelManager, model_id: str, device: str) -> Any:
    """The depth pipeline of `model_id`, kept by the model manager (call it from inside a job)."""
    from kubin.tools.depth import load_depth

    return manager.tool_model(f"depth:{model_id}", lambda: load_depth(model_id, device))


def estimate_hint_depth(engine: Any, prepared: Prepared) -> str:
    """Inside a generation job (`engine`, the kubin.engine.Engine running it): replace the ControlNet hint photo by its depth map and save the map with
    the outputs (under <output>/depth/); returns a notice for the user."""
    from kubin.outputs import save_tool_output
    from kubin.tools.depth import estimate_depth as run

    model_id = engine.tool_models.depth
    device = engine.manager.placement().device
    photo = prepared.depth_from
    depth = run(depth_pipeline(engine.manager, model_id, device), photo)
    prepared.hint = depth.convert("RGB").resize(prepared.size, Image.Resampling.BILINEAR)
    prepared.sources["hint_photo"], prepared.sources["hint_image"] = photo, depth
    saved = save_tool_output(depth, engine.output_dir, "depth", model_id, {}, {})
    prepared.depth_map = Path(saved)
    prepared.depth_model = model_id
    return f"The ControlNet hint was a photo: {model_id} estimated its depth map ({saved.name})."
