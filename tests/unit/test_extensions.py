"""Extensions: found in a folder, checked, loaded; a broken one is reported and skipped, never fatal."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubin.engine import DONE, Job
from kubin.extensions.loader import discover, load_all

REPO = Path(__file__).resolve().parents[2]
GOOD = """
def setup(api):
    api.add_tab("Good", lambda ctx: None)
    api.on("before_job", lambda task, params: {**params, "prompt": params.get("prompt", "") + ", oil painting"})
"""


def make(root: Path, name: str, code: str = GOOD, manifest: str = "") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "extension.yaml").write_text(manifest or f"name: {name}\nversion: 0.1.0\nkubin: '>=0.1'\n")
    (folder / "main.py").write_text(textwrap.dedent(code))
    return folder


def statuses(root: Path, **kwargs) -> dict[str, str]:
    return {e.name: e.status_line() for e in load_all(discover(root, **kwargs))}


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "extensions"
    make(root, "good")
    make(root, "syntax", "def setup(api):\n    return (\n")
    make(root, "imports", "import no_such_module_kubin\n\ndef setup(api):\n    pass\n")
    make(root, "crashes", "def setup(api):\n    raise RuntimeError('boom in setup')\n")
    make(root, "nosetup", "x = 1\n")
    make(root, "needs", manifest="name: needs\nrequirements: ['no-such-package-kubin>=1.0']\n")
    make(root, "future", manifest="name: future\nkubin: '>=99'\n")
    make(root, "badyaml", manifest="name: [unclosed\n")
    (root / "not-an-extension").mkdir()  # no manifest: ignored
    return root


def test_every_case_gets_its_status_and_none_stops_the_others(root):
    found = statuses(root)

    assert found == {
        "badyaml": found["badyaml"],
        "crashes": "crashes failed: RuntimeError: boom in setup",
        "future": "future failed: needs kubin >=99, this is 0.1.0",
        "good": "good ok",
        "imports": "imports failed: ModuleNotFoundError: No module named 'no_such_module_kubin'",
        "needs": "needs needs-install: no-such-package-kubin>=1.0",
        "nosetup": "nosetup failed: AttributeError: main.py defines no setup(api) function",
        "syntax": found["syntax"],
    }
    assert found["badyaml"].startswith("badyaml failed: bad extension.yaml")
    assert found["syntax"].startswith("syntax failed: SyntaxError")


def test_disabled_and_order_come_from_the_config(root):
    found = discover(root, disabled=["good"], order=["syntax", "crashes"])

    assert [e.name for e in found][:2] == ["syntax", "crashes"]
    assert {e.name: e.status for e in load_all(found)}["good"] == "disabled"


def test_a_failure_is_logged_with_its_traceback(root, caplog):
    load_all(discover(root))

    assert "Extension crashes failed and is skipped" in caplog.text
    assert "Traceback" in caplog.text and "boom in setup" in caplog.text


def test_a_before_job_hook_rewrites_the_prompt_that_is_saved(engine, root):
    engine.extensions = load_all(discover(root))
    handle = engine.run(
        Job("t2i", "tiny-kd22", {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2})
    )

    assert handle.results[0].meta["params"]["prompt"] == "a red cat, oil painting"


def test_a_hook_that_raises_fails_its_extension_but_not_the_job(engine, tmp_path):
    root = tmp_path / "extensions"
    make(root, "flaky", "def setup(api):\n    api.on('after_job', lambda task, results: 1 / 0)\n")
    engine.extensions = load_all(discover(root))

    handle = engine.run(
        Job("t2i", "tiny-kd22", {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2})
    )

    assert handle.state == DONE and len(handle.results) == 1
    assert engine.extensions[0].status_line() == "flaky failed: ZeroDivisionError: division by zero"


def test_the_bundled_example_loads_when_enabled(tmp_path):
    (ext,) = [e for e in load_all(discover(REPO / "extensions", enabled=["hello"])) if e.name == "hello"]

    assert ext.status == "ok"
    assert [(tab.title, tab.group) for tab in ext.api.tabs] == [("Hello", "tools")]
    assert len(ext.api.hooks["after_job"]) == 1


def test_the_bundled_example_is_off_by_default_and_the_tools_are_on():
    found = {e.name: e.status for e in discover(REPO / "extensions")}

    assert found.pop("hello") == "disabled"
    assert set(found.values()) == {"ok"}


def test_an_extension_off_by_default_loads_when_enabled_and_disabled_wins(tmp_path):
    root = tmp_path / "extensions"
    manifest = "name: Shy\nversion: 0.1.0\nkubin: '>=0.1'\nenabled_by_default: false\n"
    make(root, "shy", manifest=manifest)
    make(root, "good")

    assert statuses(root) == {"good": "good ok", "shy": "shy disabled"}
    assert statuses(root, enabled=["shy"]) == {"good": "good ok", "shy": "shy ok"}
    assert statuses(root, enabled=["shy"], disabled=["shy", "good"]) == {
        "good": "good disabled", "shy": "shy disabled",
    }  # fmt: skip


def test_the_cli_lists_each_extension_and_exits_0_even_when_some_failed(root):
    done = subprocess.run(
        [sys.executable, "-m", "kubin", "extensions", "--extensions-path", str(root)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "good ok" in lines
    assert "needs needs-install: no-such-package-kubin>=1.0" in lines
    assert any(line.startswith("syntax failed: SyntaxError") for line in lines)
    assert len(lines) == 8


def test_model_hooks_hear_loads_and_unloads(tmp_path):
    from kubin.engine import Engine
    from kubin.models.manager import ModelManager

    root = tmp_path / "extensions"
    make(root, "watcher", """
        seen = []
        def setup(api):
            api.on("model_loaded", lambda model_id: seen.append(("loaded", model_id)))
            api.on("model_unloaded", lambda model_id: seen.append(("unloaded", model_id)))
        """)  # fmt: skip
    manager = ModelManager(device="cpu", dtype="fp32")
    engine = Engine(manager, tmp_path / "out")
    engine.extensions = load_all(discover(root))

    manager.get("tiny-kd22")
    manager.unload()

    assert sys.modules["kubin_extension_watcher"].seen == [("loaded", "tiny-kd22"), ("unloaded", "tiny-kd22")]
