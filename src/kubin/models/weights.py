"""Where weights come from: a local folder, or a Hugging Face repo in the cache or downloaded on first use.

Missing weights while offline become one sentence naming the repo and how to fetch it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from kubin.errors import WeightsMissing, first_line

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """Where Kubin keeps what it builds or converts (tiny models, converted checkpoints): KUBIN_CACHE_DIR."""
    return Path(os.environ.get("KUBIN_CACHE_DIR") or Path.home() / ".cache" / "kubin")


def cached_folder(folder: Path, write: Callable[[Path], None], version: str) -> Path:
    """`folder` under the cache, written by `write` on first use into a temp folder that is renamed when
    complete (marked by a "complete" file), so a half-written one is never used."""
    if (folder / "complete").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write(staging)
        (staging / "complete").write_text(version)
        try:
            staging.rename(folder)
        except OSError:  # another process finished first; theirs is as good as ours
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def ensure_weights(source: str, model_id: str) -> str:
    """Return what `from_pretrained` should load for `source`, downloading a repo if needed and possible."""
    path = Path(source).expanduser()
    if path.is_absolute() or source.startswith((".", "~")) or path.exists():
        if not (path / "model_index.json").is_file():
            raise WeightsMissing(
                f"Model {model_id}: the folder {path} does not hold a diffusers pipeline (no model_index.json)."
            )
        missing = missing_components(path)
        if missing:
            raise WeightsMissing(
                f"Model {model_id}: the folder {path} lacks {', '.join(f'{name}/' for name in missing)}, which its "
                "model_index.json names; copy the whole pipeline folder."
            )
        return str(path)
    from diffusers import DiffusionPipeline

    try:  # the cache first, without touching the network
        return DiffusionPipeline.download(source, local_files_only=True)
    except OSError:
        pass
    hint = (
        f"run `python -m kubin download {model_id}` on a machine with internet access, "
        f"or point the config's models.{model_id} entries at local folders"
    )
    if hub_offline():
        raise WeightsMissing(
            f"Model {model_id} needs {source}, which is not in the Hugging Face cache and downloads are off "
            f"(HF_HUB_OFFLINE); {hint}."
        )
    log.warning("Downloading %s for %s (first use; progress below)...", source, model_id)
    try:  # diffusers picks the files the pipeline needs (safetensors over .bin, no extra variants)
        return DiffusionPipeline.download(source)
    except Exception as exc:  # network, DNS, auth, missing repo: all mean the same to the user
        raise WeightsMissing(
            f"Model {model_id} needs {source}, which is not in the Hugging Face cache and could not be "
            f"downloaded ({first_line(exc)}); {hint}."
        ) from None


def missing_components(folder: Path) -> list[str]:
    """The components a pipeline folder's model_index.json names whose subfolders are missing or empty."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # damaged: diffusers says how when it reads it
        return []
    named = [
        name
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and value and value[0] is not None
    ]
    return [name for name in named if not (folder / name).is_dir() or not any((folder / name).iterdir())]


def hub_file(repo: str, filename: str, what: str, folder: str | Path) -> Path:
    """One file of a hub repo (a tool's checkpoint): from the Hugging Face cache, else downloaded now unless
    offline; missing is one sentence naming the file, the repo and the folder to put it in."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, local_files_only=True))
    except Exception:  # not in the cache
        pass
    name = Path(filename).name
    hint = f"download {name} from https://huggingface.co/{repo} into {folder} on a connected machine"
    if hub_offline():
        raise WeightsMissing(
            f"{what} needs {filename} from {repo}, which is not in the Hugging Face cache and downloads are off "
            f"(HF_HUB_OFFLINE); {hint}."
        )
    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as exc:  # network, DNS, missing repo: the same to the user
        raise WeightsMissing(
            f"{what} needs {filename} from {repo}, which is not in the Hugging Face cache and could not be "
            f"downloaded ({first_line(exc)}); {hint}."
        ) from None
