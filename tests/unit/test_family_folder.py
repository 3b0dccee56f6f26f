"""A model family is one folder: a toy family written to a temporary folder (specs, loading code, tiny
builder) is found by the registry and makes an image through the command line, with no edit to the
engine, outputs, tasks, runtime or UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from PIL import Image

from tests.cli_helpers import kubin_generate, printed

TOY_INIT = '''
"""A toy family: flat colour images, one step per colour channel."""

from kubin.models.spec import Family, ModelSpec

FAMILY = Family(
    id="toy",
    models=(
        ModelSpec(
            id="tiny-toy",
            family="toy",
            implementation="native",
            tasks=("t2i",),
            title="Toy colours (tiny)",
            defaults={"t2i": {"width": 64, "height": 64, "steps": 3}},
            schedulers=("Toy sampler",),
            tiny=True,
        ),
    ),
)
'''

TOY_MODEL = '''
"""Loads the palette the tiny builder saved and paints one flat colour per seed."""

import json
from pathlib import Path

from PIL import Image

from kubin.models.base import LoadedModel


class ToyModel(LoadedModel):
    def __init__(self, spec, placement, base):
        self.spec, self.placement, self.base = spec, placement, base

    def generate(self, task, params, prepared, seeds, on_step):
        for step in range(params.steps):
            on_step("toy", step)
        colours = [tuple((b + seed * 40 + len(params.prompt)) % 256 for b in self.base) for seed in seeds]
        return [Image.new("RGB", prepared.size, c) for c in colours], "Toy sampler"


def load(spec, sources, placement):
    base = json.loads((Path(sources["palette"]) / "palette.json").read_text())["base"]
    return ToyModel(spec, placement, base)
'''

TOY_TINY = '''
"""The tiny toy model: a palette saved as a folder, as a pipeline would be."""

import json
from pathlib import Path


class Palette:
    def save_pretrained(self, folder):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "palette.json").write_text(json.dumps({"base": [200, 30, 90]}))


def build(model_id):
    return {"palette": Palette()}
'''


def write_toy_family(root: Path) -> Path:
    package = root / "toy"
    package.mkdir(parents=True)
    for name, text in (("__init__.py", TOY_INIT), ("model.py", TOY_MODEL), ("tiny.py", TOY_TINY)):
        (package / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_a_family_added_as_a_folder_generates_through_the_cli(tmp_path, monkeypatch):
    families = write_toy_family(tmp_path / "families")
    monkeypatch.setenv("KUBIN_FAMILIES", str(families))
    out = tmp_path / "out"

    run = kubin_generate(  # a new process: the registry discovers the families as it is imported
        tmp_path, "--model", "tiny-toy", "--prompt", "a red square", "--seed", "7", "--output-dir", str(out),
        in_process=False,
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    [saved] = printed(run.stdout)
    path = Path(saved["path"])
    assert path.is_file() and path.parent.is_relative_to(out)
    with Image.open(path) as image:
        assert image.size == (64, 64)
        expected = tuple((b + 7 * 40 + len("a red square")) % 256 for b in (200, 30, 90))
        assert image.getpixel((10, 10)) == expected
        meta = json.loads(image.text["kubin"])
    assert (meta["model"], meta["family"], meta["scheduler"]) == ("tiny-toy", "toy", "Toy sampler")
    assert meta["params"]["steps"] == 3 and meta["params"]["prompt"] == "a red square"


def test_the_models_list_shows_a_family_found_in_a_folder(tmp_path):
    families = write_toy_family(tmp_path / "families")
    run = subprocess.run(
        [sys.executable, "-m", "kubin", "models", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBIN_FAMILIES": str(families)},
        timeout=120,
    )

    assert run.returncode == 0, run.stderr
    models = {m["id"]: m for m in map(json.loads, run.stdout.splitlines())}
    assert models["tiny-toy"]["family"] == "toy" and models["tiny-toy"]["tasks"] == ["t2i"]
    assert "tiny-kd22" in models  # the families in the tree are still there


def test_no_module_outside_the_family_folders_names_a_family_or_its_models():
    """The engine, runtime, outputs, tasks and UI read what a family declares; none of them branches on
    a family id or a model id (help text that shows an example command is not code)."""
    import ast

    from kubin.models.registry import FAMILIES, MODELS

    names = set(FAMILIES) | set(MODELS)
    src = Path(__file__).resolve().parents[2] / "src" / "kubin"
    found = []
    for path in src.rglob("*.py"):
        if "families" in path.relative_to(src).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(src)}:{node.lineno}: {node.value!r}")
    assert not found, found
