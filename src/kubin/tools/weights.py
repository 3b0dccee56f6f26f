"""Where a tool model's files come from: a tiny id (`tiny-depth`, `tiny-caption`, `tiny-enhance`) built in
code and saved once under the Kubin cache, a local folder in transformers layout, or a Hugging Face repo
from the cache (downloaded on first use unless offline). Missing weights offline are one sentence naming
the model and `kubin download`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from kubin.errors import WeightsMissing, first_line
from kubin.models.weights import cache_root, cached_folder, hub_offline

log = logging.getLogger(__name__)

TINY_TOOLS_VERSION = "v1"  # bump when a tiny tool config changes, so stale cached copies are rebuilt
# The files of a transformers model repo that loading needs (no .bin duplicates, no ONNX, no images).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]


def tiny_builders() -> dict[str, Callable[[Path], None]]:
    from kubin.tools import tiny

    return {
        "tiny-depth": tiny.save_depth,
        "tiny-caption": tiny.save_caption,
        "tiny-enhance": tiny.save_enhance,
    }


def is_tiny(model_id: str) -> bool:
    return model_id in tiny_builders()


def tool_folder(model_id: str, what: str, setting: str) -> str:
    """The folder `from_pretrained` loads for `model_id`. `what` names the tool in messages ("depth
    model"), `setting` is the config key and flag that choose it ("tools.depth_model / --depth-model")."""
    model_id = str(model_id or "").strip()
    if not model_id:
        raise WeightsMissing(f"No {what} is set; set {setting}.")
    builders = tiny_builders()
    if model_id in builders:
        folder = cache_root() / "tiny" / f"{model_id}-{TINY_TOOLS_VERSION}"
        return str(cached_folder(folder, builders[model_id], TINY_TOOLS_VERSION))
    path = Path(model_id).expanduser()
    if path.is_absolute() or model_id.startswith((".", "~")) or path.exists():
        if not (path / "config.json").is_file():
            raise WeightsMissing(
                f"The {what} folder {path} holds no transformers model (no config.json); "
                f"point {setting} at a folder saved with save_pretrained or at a Hugging Face id."
            )
        return str(path)
    return download(model_id, what, setting)


def download(model_id: str, what: str = "tool model", setting: str = "") -> str:
    """A hub repo's folder in the Hugging Face cache: the cache first, else downloaded now unless offline."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model_id, allow_patterns=HUB_PATTERNS, local_files_only=True)
    except Exception:  # not (completely) in the cache
        pass
    hint = f"run `python -m kubin download {model_id}` on a machine with internet access"
    hint += f", or set {setting} to a local folder" if setting else ""
    if hub_offline():
        raise WeightsMissing(
            f"The {what} {model_id} is not in the Hugging Face cache and downloads are off (HF_HUB_OFFLINE); "
            f"{hint}."
        )
    log.warning("Downloading %s (the %s; first use)...", model_id, what)
    try:
        return snapshot_download(model_id, allow_patterns=HUB_PATTERNS)
    except Exception as exc:  # network, DNS, auth, a missing repo: all mean the same to the user
        raise WeightsMissing(
            f"The {what} {model_id} is not in the Hugging Face cache and could not be downloaded "
            f"({first_line(exc)}); {hint}."
        ) from None
