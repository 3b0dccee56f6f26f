"""Every model Kubin knows, found by asking the family packages under `kubin.models.families` (and the
folders named in KUBIN_FAMILIES) for their specs; lookup by id or by local model folder.

A local folder holding a model in diffusers layout (as `kubin save` writes it) or in a family's official
layout is accepted as a model id too: the family that recognises it gives its spec.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
from dataclasses import replace
from pathlib import Path

from kubin.errors import UnknownModel
from kubin.models.spec import FOLDER_INFO, Family, ModelSpec

__all__ = [
    "FAMILIES",
    "FOLDER_INFO",
    "MODELS",
    "Family",
    "ModelSpec",
    "family_of",
    "list_models",
    "resolve_model",
]

log = logging.getLogger(__name__)

# Folders of extra family packages (os.pathsep-separated), for a family developed outside the tree.
EXTRA_FAMILIES_VARIABLE = "KUBIN_FAMILIES"


def discover_families() -> dict[str, Family]:
    """Each family package's FAMILY, in the families' own order, with the dotted names of their modules."""
    from kubin.models import families as package

    extra = [d for d in os.environ.get(EXTRA_FAMILIES_VARIABLE, "").split(os.pathsep) if d]
    for folder in extra:
        if folder not in package.__path__:
            package.__path__.append(folder)  # they import as kubin.models.families.<name>
    found: list[Family] = []
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        name = f"{package.__name__}.{info.name}"
        family = getattr(importlib.import_module(name), "FAMILY", None)
        if not isinstance(family, Family):
            log.warning("%s defines no FAMILY; skipped", name)
            continue
        model_module = f"{name}.model"
        found.append(
            replace(
                family,
                package=name,
                models=tuple(s if s.module else replace(s, module=model_module) for s in family.models),
            )
        )
    found.sort(key=lambda f: (f.order, f.id))
    return {family.id: family for family in found}


FAMILIES: dict[str, Family] = discover_families()
MODELS: dict[str, ModelSpec] = {spec.id: spec for family in FAMILIES.values() for spec in family.models}


def list_models() -> list[ModelSpec]:
    return list(MODELS.values())


def family_of(spec: ModelSpec) -> Family:
    """The family a spec belongs to (one with no capabilities of note for a spec of unknown family)."""
    return FAMILIES.get(spec.family) or Family(id=spec.family, models=())


def resolve_model(model_id: str, source_overrides: dict[str, dict[str, str]] | None = None) -> ModelSpec:
    """The spec for a registry id or a local model folder; anything else is a clear error."""
    overrides = (source_overrides or {}).get(model_id)
    if model_id in MODELS:
        return MODELS[model_id].with_sources(overrides)
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        return _spec_for_folder(folder)
    raise UnknownModel(
        f"Unknown model {model_id!r}. Known models: {', '.join(MODELS)}; "
        "or give the path of a model folder saved in diffusers layout."
    )


def _folder_info(folder: Path) -> dict:
    try:
        info = json.loads((folder / FOLDER_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _spec_for_folder(folder: Path) -> ModelSpec:
    for family in FAMILIES.values():
        for name, model_id in family.official_files.items():
            if (folder / name).is_file():
                return _official_folder_spec(folder, MODELS[model_id])
    for family in FAMILIES.values():
        for name in family.main_pipelines:
            try:
                class_name = json.loads((folder / name / "model_index.json").read_text())["_class_name"]
            except (OSError, ValueError, KeyError):
                continue
            if class_name in family.pipeline_classes:
                return _diffusers_folder_spec(folder, family, MODELS[family.pipeline_classes[class_name]])
            known = any(class_name in f.pipeline_classes for f in FAMILIES.values())
            if not known:
                raise UnknownModel(f"{folder} holds a {class_name}, which Kubin cannot load yet.")
    raise UnknownModel(
        f"{folder} is not a Kubin model folder: it needs prior/ and decoder/ subfolders, or a pipeline/ "
        "subfolder, in diffusers layout (as `python -m kubin save` writes them)."
    )


def _official_folder_spec(folder: Path, base: ModelSpec) -> ModelSpec:
    """A folder in a family's official layout (as `kubin save` writes it, or a copy of the hub repo)."""
    return replace(
        base,
        id=str(folder.resolve()),
        title=f"{base.title} from {folder}",
        sources={"repo": str(folder.resolve())},
        # saved by `kubin save`: the saved model's defaults (a tiny one's small sizes)
        defaults=_folder_info(folder).get("defaults", base.defaults),
    )


def _diffusers_folder_spec(folder: Path, family: Family, base: ModelSpec) -> ModelSpec:
    info = _folder_info(folder)
    # The model it was saved from gives its limits and tasks (a folder saved by other tools: the family's).
    saved_from = MODELS.get(info.get("saved_from", ""))
    if saved_from is not None and saved_from.family == family.id:
        base = saved_from
    sizes = (info.get("attributes") or {}).get("resolutions")
    return replace(
        base,
        tiny=False,  # its weights are in the folder now
        resolutions=tuple(tuple(r) for r in sizes) if sizes else base.resolutions,
        id=str(folder.resolve()),
        title=f"{base.title} from {folder}",
        sources={
            sub.name: str(sub) for sub in sorted(folder.iterdir()) if (sub / "model_index.json").is_file()
        },
        defaults=info.get("defaults", base.defaults),
        # A task or feature whose own subfolder the folder lacks is not offered.
        tasks=tuple(
            t
            for t in base.tasks
            if t not in family.task_folders or (folder / family.task_folders[t]).is_dir()
        ),
        features=tuple(
            f
            for f in base.features
            if f not in family.feature_folders or (folder / family.feature_folders[f]).is_dir()
        ),
    )
