"""Loading a bundled extension in a test the way Kubin loads it (manifest, requirements, setup)."""

from __future__ import annotations

import sys

from kubin.config import REPO_ROOT
from kubin.extensions.loader import discover, load_all


def load_bundled(name: str):
    """(the loaded extension, its entry module) for extensions/<name>; fails the test if it did not load."""
    found = [e for e in discover(REPO_ROOT / "extensions") if e.name == name]
    assert found, f"extensions/{name} is missing"
    (loaded,) = load_all(found)
    assert loaded.status == "ok", loaded.status_line()
    return loaded, sys.modules[f"kubin_extension_{name}"]
