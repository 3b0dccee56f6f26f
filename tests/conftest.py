"""Shared test setup: a private Kubin cache and an empty, offline Hugging Face home for the whole run (shared
by the pytest-xdist workers that test.sh starts; the cache writes each tiny model atomically).

The environment is set in pytest_configure, before any test module is collected, because
huggingface_hub reads HF_HOME and HF_HUB_OFFLINE once, when it is first imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_DIR
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: share its controller's cache and home
        shared = Path(os.environ["KUBIN_TEST_SESSION_DIR"])
    else:
        _SESSION_DIR = shared = Path(tempfile.mkdtemp(prefix="kubin-tests-"))
        os.environ["KUBIN_TEST_SESSION_DIR"] = str(shared)  # the workers, started later, inherit it
    os.environ["KUBIN_CACHE_DIR"] = str(shared / "kubin-cache")  # tiny models are built here once
    os.environ["HF_HOME"] = str(shared / "hf-home")  # empty: no real weights are ever found
    os.environ["HF_HUB_OFFLINE"] = "1"  # and none are ever downloaded
    # Tiny models gain nothing from threads, and on a busy machine torch's threads wait on each other:
    # one thread made a tiny step 20x faster under load (servers started by the tests inherit it).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_DIR is not None:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def model_manager():
    """One CPU ModelManager for the run, so tiny-kd22 is built and loaded once."""
    from kubin.models.manager import ModelManager

    manager = ModelManager(device="cpu", dtype="fp32")
    yield manager
    manager.unload()


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    return tmp_path / "output"


@pytest.fixture(scope="module")
def manager(model_manager):
    """The manager `engine` uses: the session's, with tiny-kd22 loaded once. A module testing another
    model overrides it with `fresh_manager` (its own model loads there and the session's stays loaded)."""
    return model_manager


@pytest.fixture(scope="module")
def fresh_manager():
    """A CPU ModelManager of the test module's own, unloaded when the module is done."""
    from kubin.models.manager import ModelManager

    manager = ModelManager(device="cpu", dtype="fp32")
    yield manager
    manager.unload()


@pytest.fixture
def engine(manager, output_dir: Path):
    """An Engine saving into this test's own output folder, on the module's manager (see `manager`)."""
    from kubin.engine import Engine

    engine = Engine(manager, output_dir)
    yield engine
    engine.close(wait=True)  # let a cancelled job finish its step before the next test uses the model


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    """A 100x70 photo (no side a multiple of 64)."""
    import numpy as np
    from PIL import Image

    path = tmp_path_factory.mktemp("pictures") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (70, 100, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="session")
def saved_tiny_folder(model_manager, tmp_path_factory) -> Path:
    """tiny-kd22 written to a folder by the manager, as `python -m kubin save` does."""
    return model_manager.save("tiny-kd22", tmp_path_factory.mktemp("saved") / "tiny-kd22")


@pytest.fixture
def t2i_only_model(monkeypatch) -> str:
    """A registry entry like tiny-kd22 that declares text-to-image only (for unsupported-task paths)."""
    from dataclasses import replace

    from kubin.models import registry

    spec = replace(registry.MODELS["tiny-kd22"], id="tiny-t2i-only", tasks=("t2i",))
    monkeypatch.setitem(registry.MODELS, spec.id, spec)
    return spec.id
