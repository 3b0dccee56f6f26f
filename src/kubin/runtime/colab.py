"""Google Colab: detecting it and the defaults Kubin uses there.

On Colab the outputs and the model caches go to Google Drive when it is mounted (so they survive the
session), the app is shared through a public link, and the low-VRAM preset is on (a T4 has 16 GB).
The rules are plain functions of the environment and the file system, tested without Colab.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DRIVE_ROOT = Path("/content/drive/MyDrive")
DRIVE_FOLDER = "kubin"  # everything Kubin keeps on Drive goes under MyDrive/kubin


def on_colab(environ: Mapping[str, str] | None = None) -> bool:
    """Colab sets COLAB_RELEASE_TAG (and COLAB_GPU on GPU runtimes) in every process it starts."""
    env = os.environ if environ is None else environ
    return bool(env.get("COLAB_RELEASE_TAG") or env.get("COLAB_GPU") is not None)


@dataclass
class ColabDefaults:
    """Config values (dotted keys, below the user's file and flags) and environment variables to set."""

    config: dict[str, Any] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def colab_defaults(drive_root: Path | None = None, environ: Mapping[str, str] | None = None) -> ColabDefaults:
    env = os.environ if environ is None else environ
    drive_root = DRIVE_ROOT if drive_root is None else drive_root
    out = ColabDefaults(config={"server.share": True, "memory.preset": "lowvram"})
    if drive_root.is_dir():
        home = drive_root / DRIVE_FOLDER
        out.config["output_dir"] = str(home / "output")
        # The caches move only if the user has not chosen them already.
        if "HF_HOME" not in env:
            out.environ["HF_HOME"] = str(home / "hf-cache")
        if "KUBIN_CACHE_DIR" not in env:
            out.environ["KUBIN_CACHE_DIR"] = str(home / "kubin-cache")
        out.notes.append(f"Google Drive is mounted: outputs and model caches go to {home}.")
    else:
        out.notes.append(
            "Google Drive is not mounted: outputs and downloaded weights stay in this Colab session and are "
            "lost when it ends (mount Drive in the notebook to keep them)."
        )
    return out
