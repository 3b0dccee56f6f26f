"""Where an extension's tool models (upscalers, SAM, ...) come from: its models folder (configurable, a
relative one inside the Kubin folder), the checkpoint files in it, and hub entries offered beside them.
For extensions: `from kubin.extensions.tool_files import models_dir, model_choices, weights_path`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams, WeightsMissing
from kubin.models.weights import hub_file

HUB_PREFIX = "hub: "  # how a hub entry is shown among the files


def models_dir(settings: dict[str, Any], default: str) -> Path:
    """The configured models folder (settings["models_dir"], else `default`); a relative one lies in the
    Kubin folder."""
    from kubin.config import REPO_ROOT

    folder = Path(str(settings.get("models_dir") or default)).expanduser()
    return folder if folder.is_absolute() else REPO_ROOT / folder


def model_choices(folder: Path, suffixes: tuple[str, ...], hub: dict[str, tuple[str, str]]) -> list[str]:
    """The checkpoint files in the models folder (by name, sorted), then the hub entries."""
    local = (
        sorted(p.name for p in folder.glob("*") if p.suffix.lower() in suffixes and p.is_file())
        if folder.is_dir()
        else []
    )
    return local + [HUB_PREFIX + label for label in hub]


def weights_path(
    choice: str, folder: Path, suffixes: tuple[str, ...], hub: dict[str, tuple[str, str]], what: str
) -> Path:
    """The checkpoint file for a choice: a file in the models folder, or a hub file (cache first, else a
    download; offline, a clear error). `what` names the kind of model in messages ("upscaler")."""
    if not choice:
        raise InvalidParams(f"Choose {what} model first.")
    if choice.startswith(HUB_PREFIX):
        label = choice.removeprefix(HUB_PREFIX)
        if label not in hub:
            raise InvalidParams(f"Unknown {what} {label!r}.")
        repo, filename = hub[label]
        return hub_file(repo, filename, f"{what[0].upper()}{what[1:]} {label}", folder)
    path = (folder / choice).resolve()
    if not path.is_relative_to(folder.resolve()) or path.suffix.lower() not in suffixes:
        raise InvalidParams(f"{choice!r} is not {what} file in the models folder {folder}.")
    if not path.is_file():
        raise WeightsMissing(f"The {what} file {path} is gone; press ↻ to list the models folder again.")
    return path
