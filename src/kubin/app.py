"""App setup that the command line and the web UI share: the engine (with its model manager) from the
settings, and the extensions. No Gradio here; the UI and the CLI both build on it."""

from __future__ import annotations

EXIT_USER_ERROR = 2  # the exit code for an error the user can fix (bad flag, unknown model, ...)
EXIT_CANCELLED = 130


def make_engine(settings, history: bool = False):
    """The engine of the settings; with `history` (the server's), it records every job in the output
    folder's history (see kubin.history), and marks what a previous server left unfinished."""
    from kubin.engine import DEFAULT_MAX_PROMPT_CHARS, Engine
    from kubin.history import History
    from kubin.models.lora import DEFAULT_FOLDER, LoraLibrary
    from kubin.models.manager import ModelManager
    from kubin.runtime.memory import MemoryOptions
    from kubin.tools.models import ToolModels

    manager = ModelManager(
        settings.get("device"),
        settings.get("dtype"),
        settings.get("models") or {},
        MemoryOptions.from_dict(settings.get("memory")),
    )
    cluster = start_cluster(settings)
    engine = Engine(
        manager,
        settings.get("output_dir"),
        max_pixels=int(settings.get("max_image_pixels")),
        max_prompt_chars=int(settings.get("max_prompt_chars", DEFAULT_MAX_PROMPT_CHARS)),
        wildcards=wildcards_from(settings),
        grid_max_cells=int(settings.get("grid_max_cells") or 100),
        loras=LoraLibrary(
            settings_folder(settings.get("lora.path"), DEFAULT_FOLDER), fuse=bool(settings.get("lora.fuse"))
        ),
        history=History(settings.get("output_dir")) if history else None,
        tool_models=ToolModels.from_settings(settings),
        cluster=cluster,
    )
    from kubin.training.runs import DEFAULT_FOLDER as TRAINING_FOLDER
    from kubin.training.runs import Trainings

    engine.trainings = Trainings(engine, settings_folder(settings.get("training.path"), TRAINING_FOLDER))
    return engine


def start_cluster(settings):
    """The Ray Serve cluster that runs the jobs when `cluster.address` is set (--cluster), connected and
    deployed; None without one. A cluster that cannot be set up is a ClusterUnavailable error now."""
    from kubin.cluster import ClusterSettings

    cluster_settings = ClusterSettings.from_config(settings.get("cluster"))
    if cluster_settings is None:
        return None
    from kubin.cluster.client import Cluster

    worker = {
        "device": settings.get("device"),
        "dtype": settings.get("dtype"),
        "sources": settings.get("models") or {},
        "memory": settings.get("memory") or {},
    }
    return Cluster(cluster_settings, worker).start()


def wildcards_from(settings):
    """The wildcards folder and combination limit of the settings."""
    from kubin.prompts import DEFAULT_MAX_COMBINATIONS, Wildcards

    limit = int(settings.get("wildcards.max_combinations") or DEFAULT_MAX_COMBINATIONS)
    return Wildcards(wildcards_folder(settings.get("wildcards.path")), limit)


def wildcards_folder(value: str | None):
    """The wildcards folder a setting names: a relative one is looked up in the working folder, then in
    the Kubin folder (as the extensions folder is)."""
    return settings_folder(value, "wildcards")


def settings_folder(value: str | None, default: str):
    """A folder a setting names (or the default): a relative one is looked up in the working folder, then
    in the Kubin folder."""
    from pathlib import Path

    from kubin.config import REPO_ROOT

    folder = Path(value or default)
    return folder if folder.is_absolute() or folder.exists() else REPO_ROOT / folder


def load_extensions(settings, install_deps: bool = False):
    """Discover and load the configured extensions; failures are recorded, never raised. With
    install_deps (the user's --install-extension-deps), missing requirements are pip-installed first."""
    from pathlib import Path

    from kubin.config import REPO_ROOT
    from kubin.extensions.loader import discover, install_requirements, load_all, missing_requirements

    root = Path(settings.get("extensions.path") or "extensions")
    root = root if root.is_absolute() or root.exists() else REPO_ROOT / root
    found = discover(
        root,
        settings.get("extensions.disabled") or [],
        settings.get("extensions.order") or [],
        settings.get("extensions.enabled") or [],
    )
    if install_deps:
        for ext in found:
            if ext.status == "ok":
                ext.missing = missing_requirements(ext.manifest.get("requirements") or [])
                if ext.missing and not install_requirements(ext, emit=lambda line: print(line, flush=True)):
                    print(
                        f"Installing the requirements of {ext.name} failed; it stays needs-install.",
                        flush=True,
                    )
    return load_all(found, settings.get("extensions.settings") or {}, settings.user_path)
