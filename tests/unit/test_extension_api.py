"""The extension API beyond tabs and hooks: controls in the task tabs whose values reach before_job, hooks
that chain, send targets, settings saved to the user config, and requirements installed on request."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
import yaml

from kubin.config import load_config
from kubin.engine import DONE, Job
from kubin.extensions.loader import discover, install_requirements, load_all
from kubin.outputs import read_output_metadata

SMALL = {"width": 64, "height": 64, "steps": 2, "prior_steps": 2}


def make(root: Path, name: str, code: str, requirements: list[str] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    manifest = {"name": name, "version": "0.1.0", "kubin": ">=0.1", "requirements": requirements or []}
    (folder / "extension.yaml").write_text(yaml.safe_dump(manifest))
    (folder / "main.py").write_text(textwrap.dedent(code))
    return folder


def loaded(root: Path, **kwargs):
    return load_all(discover(root), **kwargs)


def run(engine, prompt: str = "a red cat", values: dict | None = None):
    handle = engine.run(Job("t2i", "tiny-kd22", {"prompt": prompt, **SMALL}, extension_values=values or {}))
    assert handle.state == DONE, handle.error
    return handle


# --- controls' values reach before_job; hooks chain -------------------------------------------------
TAGGER = """
    seen = []
    def setup(api):
        def before_job(task, params, values):
            seen.append((task, values))
            return {**params, "prompt": params["prompt"] + ", " + values.get("suffix", "untagged")}
        api.on("before_job", before_job)
        api.add_controls(lambda ctx, task: {}, tasks=["t2i"], title="Tagger")
    """


def test_a_three_argument_before_job_gets_its_own_extensions_values(engine, tmp_path):
    root = tmp_path / "extensions"
    make(root, "tagger", TAGGER)
    engine.extensions = loaded(root)

    handle = run(engine, values={"tagger": {"suffix": "gold frame"}, "other": {"suffix": "not mine"}})

    assert sys.modules["kubin_extension_tagger"].seen == [("t2i", {"suffix": "gold frame"})]
    assert handle.results[0].meta["params"]["prompt"] == "a red cat, gold frame"


def test_a_three_argument_hook_without_values_gets_an_empty_dict(engine, tmp_path):
    root = tmp_path / "extensions"
    make(root, "tagger", TAGGER)
    engine.extensions = loaded(root)

    handle = run(engine)

    assert sys.modules["kubin_extension_tagger"].seen == [("t2i", {})]
    assert handle.results[0].meta["params"]["prompt"] == "a red cat, untagged"
    assert "extensions" not in handle.results[0].meta


def test_a_two_argument_before_job_still_works_when_values_are_given(engine, tmp_path):
    root = tmp_path / "extensions"
    make(root, "old", """
        def setup(api):
            api.on("before_job", lambda task, params: {**params, "prompt": params["prompt"] + ", old style"})
        """)  # fmt: skip
    engine.extensions = loaded(root)

    handle = run(engine, values={"old": {"anything": 1}})

    assert engine.extensions[0].status == "ok"
    assert handle.results[0].meta["params"]["prompt"] == "a red cat, old style"


def test_before_job_hooks_chain_each_sees_what_the_one_before_returned(engine, tmp_path):
    root = tmp_path / "extensions"
    for name in ("first", "second"):
        make(root, name, f"""
            seen = []
            def setup(api):
                def before_job(task, params):
                    seen.append(params["prompt"])
                    return {{**params, "prompt": params["prompt"] + ", {name}"}}
                api.on("before_job", before_job)
            """)  # fmt: skip
    engine.extensions = loaded(root)

    handle = run(engine)

    assert sys.modules["kubin_extension_second"].seen == ["a red cat, first"]
    assert handle.results[0].meta["params"]["prompt"] == "a red cat, first, second"


def test_the_values_are_saved_in_the_outputs_metadata(engine, tmp_path):
    root = tmp_path / "extensions"
    make(root, "tagger", TAGGER)
    engine.extensions = loaded(root)

    handle = run(engine, values={"tagger": {"suffix": "gold frame"}})

    expected = {"tagger": {"suffix": "gold frame"}}
    assert handle.results[0].meta["extensions"] == expected
    assert read_output_metadata(handle.results[0].path)["extensions"] == expected


# --- controls in the task tabs ------------------------------------------------------------------------
def test_build_extension_controls_names_widgets_per_extension_and_skips_other_tasks(tmp_path):
    from kubin.ui.task_tab import build_extension_controls

    root = tmp_path / "extensions"
    make(root, "my-ext", """
        def setup(api):
            api.add_controls(lambda ctx, task: {"strength": __import__("gradio").Slider(0, 1, value=0.5)},
                             tasks=["t2i", "i2i"], title="Mine")
            api.add_controls(lambda ctx, task: {"never": __import__("gradio").Checkbox()}, tasks=["mix"])
        """)  # fmt: skip
    ctx = SimpleNamespace(extensions=loaded(root))

    with gr.Blocks():
        t2i = build_extension_controls(ctx, "t2i")
        t2v = build_extension_controls(ctx, "t2v")

    assert list(t2i) == ["ext_my_ext_strength"]
    assert t2i["ext_my_ext_strength"].value == 0.5
    assert t2i.keys_by_name == {"ext_my_ext_strength": ("my-ext", "strength")}
    assert dict(t2v) == {}


def test_a_controls_build_that_raises_fails_its_extension_and_the_tab_still_builds(engine, tmp_path):
    from kubin.ui.context import UIContext
    from kubin.ui.task_tab import build_task_tab

    root = tmp_path / "extensions"
    make(root, "broken", """
        def setup(api):
            def build(ctx, task):
                raise RuntimeError("no widgets today")
            api.add_controls(build)
            api.on("before_job", lambda task, params, values: {**params, "prompt": "hijacked"})
        """)  # fmt: skip
    make(root, "fine", """
        def setup(api):
            api.add_controls(lambda ctx, task: {"flag": __import__("gradio").Checkbox(value=True)})
        """)  # fmt: skip
    extensions = loaded(root)
    ctx = UIContext(engine, load_config(tmp_path / "user.yaml"), "tiny-kd22", extensions=extensions)

    with gr.Blocks() as demo:
        tab = build_task_tab(ctx, "t2i")

    broken, fine = extensions
    assert broken.status_line() == "broken failed: RuntimeError: no widgets today"
    assert fine.status == "ok"
    assert "prompt" in tab.widgets and "ext_fine_flag" in tab.widgets
    assert not any(name.startswith("ext_broken") for name in tab.widgets)
    notes = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown)]
    assert any("broken failed to add its controls: RuntimeError: no widgets today" in str(n) for n in notes)
    # A failed extension's hooks no longer run.
    engine.extensions = extensions
    assert run(engine).results[0].meta["params"]["prompt"] == "a red cat"


def test_the_tabs_api_takes_extension_values_as_optional_named_parameters(engine, tmp_path):
    from kubin.ui.context import UIContext
    from kubin.ui.task_tab import build_task_tab

    root = tmp_path / "extensions"
    make(root, "tagger", TAGGER.replace("{}", '{"suffix": __import__("gradio").Textbox("default tag")}'))
    ctx = UIContext(engine, load_config(tmp_path / "user.yaml"), "tiny-kd22", extensions=loaded(root))

    with gr.Blocks() as demo:
        build_task_tab(ctx, "t2i")

    info = demo.get_api_info()["named_endpoints"]["/txt2img"]["parameters"]
    param = next(p for p in info if p["parameter_name"] == "ext_tagger_suffix")
    assert param["parameter_has_default"] and param["parameter_default"] == "default tag"


# --- send targets -------------------------------------------------------------------------------------
RECEIVER = """
    def setup(api):
        def tab(ctx):
            import gradio as gr
            ctx.receive("upscale", gr.Image(type="filepath", elem_id="receiver-image"))
        api.add_tab("Receiver", tab)
        api.add_send_target("upscale", "Upscaler")
    """


def build_app_with(engine, tmp_path, extensions):
    from kubin.ui.app import build_app
    from kubin.ui.context import UIContext

    ctx = UIContext(engine, load_config(tmp_path / "user.yaml"), "tiny-kd22", extensions=extensions)
    return ctx, build_app(ctx)


def test_a_send_target_adds_a_button_under_every_gallery_that_fills_the_receiver_and_opens_its_tool_tab(
    engine, tmp_path
):
    root = tmp_path / "extensions"
    make(root, "receiver", RECEIVER)

    ctx, demo = build_app_with(engine, tmp_path, loaded(root))

    receiver, tab_id = ctx.receivers["upscale"]
    assert tab_id == "ext-receiver"
    assert receiver.elem_id == "receiver-image"
    (tools, _), (tool_tabs, _) = ctx.tab_paths["ext-receiver"]
    assert tools is ctx.tabs and tool_tabs.elem_id == "kubin-tool-tabs"
    for task, tab in ctx.task_tabs.items():
        button = tab.send_buttons["ext:upscale"]
        assert (button.value, button.elem_id, button.visible) == (
            "→ Upscaler",
            f"{task}-send-ext-upscale",
            True,
        )
        (event,) = [d for d in demo.fns.values() if any(t[0] == button._id for t in d.targets)]
        assert [o._id for o in event.outputs][:3] == [receiver._id, ctx.tabs._id, tool_tabs._id]

    results, selected = ["/tmp/out/00001-1.png"], 0
    sent = event.fn(results, selected)
    assert sent[0] == "/tmp/out/00001-1.png"
    assert [s.selected for s in sent[1:3]] == ["tools", "ext-receiver"], "the Tools tab, then the tool's tab"


def test_extension_tabs_go_into_tools_unless_they_ask_for_the_top_row(engine, tmp_path):
    root = tmp_path / "extensions"
    make(root, "board", """
        def setup(api):
            api.add_tab("Board", lambda ctx: __import__("gradio").Markdown("top"), group="top")
            api.add_tab("Board tool", lambda ctx: __import__("gradio").Markdown("tool"))
        """)  # fmt: skip
    make(root, "odd", "def setup(api):\n    api.add_tab('Odd', lambda ctx: None, group='sidebar')\n")
    extensions = loaded(root)

    ctx, demo = build_app_with(engine, tmp_path, extensions)

    def labels(tabs):
        return [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab) and b.parent is tabs]

    assert labels(ctx.tabs)[-6:] == ["3D", "Training", "Board", "Tools", "Settings", "Extensions"]
    (_, (tool_tabs, _)) = ctx.tab_paths["ext-board-1"]
    assert labels(tool_tabs) == ["Board tool", "History", "Video upscale"], "the tools, then Kubin's own"
    assert "ext-board" not in ctx.tab_paths, "a top-row tab needs no nested selection"
    assert (
        extensions[1].status_line()
        == "odd failed: ValueError: Unknown tab group 'sidebar'; known groups: tools, top."
    )


def test_a_controls_build_with_a_third_argument_gets_the_tabs_prompt(engine, tmp_path):
    from kubin.ui.context import UIContext
    from kubin.ui.task_tab import build_task_tab

    root = tmp_path / "extensions"
    make(root, "echo", """
        seen = {}
        def setup(api):
            def build(ctx, task, widgets):
                seen[task] = widgets
                return {}
            api.add_controls(build, tasks=["t2i"])
        """)  # fmt: skip
    ctx = UIContext(engine, load_config(tmp_path / "user.yaml"), "tiny-kd22", extensions=loaded(root))

    with gr.Blocks():
        tab = build_task_tab(ctx, "t2i")

    seen = sys.modules["kubin_extension_echo"].seen["t2i"]
    assert seen["prompt"] is tab.prompt and seen["negative_prompt"] is tab.widgets["negative_prompt"]


def test_the_extensions_tab_saves_unticked_ones_as_disabled_and_a_ticked_example_as_enabled(engine, tmp_path):
    root = tmp_path / "extensions"
    make(root, "plain", "def setup(api):\n    pass\n")
    shy = make(root, "shy", "def setup(api):\n    pass\n")
    (shy / "extension.yaml").write_text(
        "name: shy\nversion: 0.1.0\nkubin: '>=0.1'\nenabled_by_default: false\n", encoding="utf-8"
    )
    _, demo = build_app_with(engine, tmp_path, loaded(root))
    (save,) = [d for d in demo.fns.values() if d.api_name == "save_extensions"]

    save.fn(["shy"])

    saved = yaml.safe_load((tmp_path / "user.yaml").read_text(encoding="utf-8"))["extensions"]
    assert (saved["disabled"], saved["enabled"]) == (["plain"], ["shy"])
    assert [e.status for e in discover(root, saved["disabled"], None, saved["enabled"])] == ["disabled", "ok"]


def test_a_send_target_whose_tab_did_not_receive_hides_its_buttons(engine, tmp_path):
    root = tmp_path / "extensions"
    make(root, "receiver", """
        def setup(api):
            api.add_tab("Receiver", lambda ctx: __import__("gradio").Image(elem_id="receiver-image"))
            api.add_send_target("upscale", "Upscaler")
        """)  # fmt: skip

    ctx, _ = build_app_with(engine, tmp_path, loaded(root))

    assert ctx.receivers == {}
    assert all(tab.send_buttons["ext:upscale"].visible is False for tab in ctx.task_tabs.values())


# --- settings -----------------------------------------------------------------------------------------
def test_save_settings_writes_the_user_config_keeps_other_keys_and_loads_back(tmp_path):
    root = tmp_path / "extensions"
    make(root, "saver", "def setup(api):\n    pass\n")
    user = tmp_path / "kubin.user.yaml"
    user.write_text("# by hand\nserver:\n  host: 127.0.0.1\nextensions:\n  settings:\n    other: {a: 1}\n")
    (ext,) = loaded(root, settings={"saver": {"kept": "yes"}}, user_config=user)

    ext.api.save_settings({"greeting": "Привет!", "count": 3})

    assert ext.api.settings == {"kept": "yes", "greeting": "Привет!", "count": 3}
    saved = yaml.safe_load(user.read_text(encoding="utf-8"))
    assert saved["server"] == {"host": "127.0.0.1"}
    assert saved["extensions"]["settings"] == {
        "other": {"a": 1},
        "saver": {"greeting": "Привет!", "count": 3},
    }
    # The next start reads them back into the extension's settings.
    settings = load_config(user).get("extensions.settings")
    (again,) = load_all(discover(root), settings, user)
    assert again.api.settings["greeting"] == "Привет!" and again.api.settings["count"] == 3


def test_save_settings_without_a_user_config_changes_only_the_running_settings(tmp_path):
    root = tmp_path / "extensions"
    make(root, "saver", "def setup(api):\n    pass\n")
    (ext,) = loaded(root)

    ext.api.save_settings({"greeting": "hi"})

    assert ext.api.settings == {"greeting": "hi"}
    assert [p.name for p in tmp_path.iterdir()] == ["extensions"]


# --- installing requirements --------------------------------------------------------------------------
MISSING = "kubin-no-such-package==1.0"


def offline_pip(monkeypatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")


def fake_wheel(folder: Path) -> Path:
    """A real, minimal wheel of `kubin-fake-dep` 1.0 (one module), built by hand: pip installs it offline."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "kubin_fake_dep/__init__.py": b"VALUE = 42\n",
        "kubin_fake_dep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: kubin-fake-dep\nVersion: 1.0\n",
        "kubin_fake_dep-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: kubin-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("kubin_fake_dep-1.0.dist-info/RECORD,,")
    wheel = folder / "kubin_fake_dep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("kubin_fake_dep-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def test_install_requirements_streams_pips_output_and_reports_a_failure(tmp_path, monkeypatch):
    offline_pip(monkeypatch)
    root = tmp_path / "extensions"
    make(root, "needs", "def setup(api):\n    pass\n", requirements=[MISSING])
    (ext,) = loaded(root)
    assert (ext.status, ext.missing) == ("needs-install", [MISSING])
    lines: list[str] = []

    ok = install_requirements(ext, emit=lines.append)

    assert ok is False
    assert lines[0] == f"$ {sys.executable} -m pip install {MISSING}"
    assert any("ERROR" in line and "kubin-no-such-package" in line for line in lines[1:-1]), lines
    assert lines[-1].startswith("pip failed with exit code ")
    assert (ext.status, ext.missing) == ("needs-install", [MISSING])


def test_install_requirements_installs_a_missing_package_and_the_extension_then_loads(tmp_path, monkeypatch):
    """pip installs into a folder of this test (PIP_TARGET), never into Kubin's venv."""
    offline_pip(monkeypatch)
    target = tmp_path / "site"
    monkeypatch.setenv("PIP_TARGET", str(target))
    monkeypatch.syspath_prepend(str(target))
    requirement = f"kubin-fake-dep @ {fake_wheel(tmp_path / 'wheels').as_uri()}"
    root = tmp_path / "extensions"
    make(root, "needs", "import kubin_fake_dep\n\ndef setup(api):\n    api.value = kubin_fake_dep.VALUE\n",
         requirements=[requirement])  # fmt: skip
    (ext,) = loaded(root)
    assert ext.status == "needs-install"
    lines: list[str] = []

    ok = install_requirements(ext, emit=lines.append)

    assert ok is True, "\n".join(lines)
    assert ext.missing == []
    assert any("Successfully installed kubin-fake-dep-1.0" in line for line in lines), lines
    (again,) = loaded(root)
    assert again.status == "ok" and again.api.value == 42


def run_cli(root: Path, *flags: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kubin", "extensions", "--extensions-path", str(root), *flags],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env},
    )  # fmt: skip


def test_the_cli_installs_requirements_only_with_install_extension_deps(tmp_path):
    target = tmp_path / "site"  # stands for the venv's site-packages, which exists before pip runs
    target.mkdir()
    env = {"PIP_TARGET": str(target), "PYTHONPATH": str(target)}
    requirement = f"kubin-fake-dep @ {fake_wheel(tmp_path / 'wheels').as_uri()}"
    root = tmp_path / "extensions"
    make(root, "fake", "import kubin_fake_dep\n\ndef setup(api):\n    pass\n", requirements=[requirement])
    make(root, "needs", "def setup(api):\n    pass\n", requirements=[MISSING])

    without = run_cli(root, env=env)

    assert without.returncode == 0, without.stderr
    assert without.stdout.splitlines() == [
        f"fake needs-install: {requirement}",
        f"needs needs-install: {MISSING}",
    ]
    assert list(target.iterdir()) == []

    done = run_cli(root, "--install-extension-deps", env=env)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"$ {sys.executable} -m pip install {requirement}" in lines
    assert any("Successfully installed kubin-fake-dep-1.0" in line for line in lines), lines
    assert f"$ {sys.executable} -m pip install {MISSING}" in lines
    assert any(line.startswith("ERROR") and "kubin-no-such-package" in line for line in lines), lines
    assert "Installing the requirements of needs failed; it stays needs-install." in lines
    assert lines[-2:] == ["fake ok", f"needs needs-install: {MISSING}"]


# --- the Extensions tab's installer -------------------------------------------------------------------
def build_installer_with(tmp_path, overrides: dict):
    from kubin.ui.tabs.extensions import build_installer

    root = tmp_path / "extensions"
    make(root, "needs", "def setup(api):\n    pass\n", requirements=[MISSING])
    waiting = loaded(root)
    ctx = SimpleNamespace(settings=load_config(tmp_path / "user.yaml", overrides))
    with gr.Blocks() as demo:
        build_installer(ctx, waiting)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    return demo, by_id


@pytest.mark.parametrize(
    "overrides",
    [{}, {"server.listen": True, "server.auth": "me:secret"}, {"server.host": "localhost"}],
    ids=["localhost", "network-with-password", "localhost-by-name"],
)
def test_the_installer_offers_a_button_per_extension_locally_or_with_a_password(tmp_path, overrides):
    demo, by_id = build_installer_with(tmp_path, overrides)

    button = by_id["extensions-install-needs"]
    assert button.value == f"Install {MISSING} for needs"
    assert "extensions-install-log" in by_id and "extensions-install-off" not in by_id
    # Private: no API client can start pip.
    api = demo.get_api_info()
    assert not any("install" in name for name in api["named_endpoints"])
    (event,) = [d for d in demo.fns.values() if any(t[0] == button._id for t in d.targets)]
    assert event.api_visibility == "private"


@pytest.mark.parametrize(
    "overrides", [{"server.listen": True}, {"server.host": "0.0.0.0"}], ids=["listen", "host-0.0.0.0"]
)
def test_the_installer_is_off_while_open_to_the_network_without_a_password(tmp_path, overrides):
    _, by_id = build_installer_with(tmp_path, overrides)

    assert "extensions-install-needs" not in by_id and "extensions-install-log" not in by_id
    assert "--install-extension-deps" in by_id["extensions-install-off"].value


def test_the_install_button_streams_pips_output_into_the_box(tmp_path, monkeypatch):
    offline_pip(monkeypatch)
    demo, by_id = build_installer_with(tmp_path, {})
    button = by_id["extensions-install-needs"]
    (event,) = [d for d in demo.fns.values() if any(t[0] == button._id for t in d.targets)]

    shown = list(event.fn())

    assert len(shown) >= 3, "the box fills line by line"
    assert shown[0] == f"$ {sys.executable} -m pip install {MISSING}"
    assert all(later.startswith(earlier) for earlier, later in zip(shown, shown[1:], strict=False))
    assert "kubin-no-such-package" in shown[-1] and "ERROR" in shown[-1]
    assert shown[-1].endswith("pip failed with exit code 1.\nThe install did not complete.")


# --- REST routes ----------------------------------------------------------------------------------------
def test_an_extension_route_that_cannot_be_made_is_left_out_and_the_others_mount(engine, tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from kubin.api import mount_api

    root = tmp_path / "extensions"
    make(root, "broken", """
        def setup(api):
            def make(context):
                raise RuntimeError("no route today")
            api.add_route("run", make)
        """)  # fmt: skip
    make(root, "echo", """
        def setup(api):
            def make(context):
                def answer(word: str):
                    return {"said": word, "output": str(context.engine.output_dir)}
                return answer
            api.add_route("say/it", make, methods=("GET",))

            def look(context):
                def answer(folder: str):
                    context.check_folder(folder, "folder")
                    return {"read": folder}
                return answer
            api.add_route("look", look, methods=("GET",))
        """)  # fmt: skip
    engine.extensions = loaded(root)
    app = FastAPI()
    mount_api(app, engine, "tiny-kd22", folder_roots=[tmp_path / "allowed"])  # as a server others reach

    with TestClient(app) as client:
        assert client.get("/kubin/api/v1/ext/echo/say/it", params={"word": "hi"}).json() == {
            "said": "hi",
            "output": str(engine.output_dir),
        }
        assert client.post("/kubin/api/v1/ext/broken/run").status_code == 404
        look = "/kubin/api/v1/ext/echo/look"
        assert client.get(look, params={"folder": str(tmp_path / "allowed" / "pics")}).status_code == 200
        refused = client.get(look, params={"folder": str(tmp_path / "private")})
        assert refused.status_code == 403 and "api_folder_roots" in refused.json()["detail"]
    with pytest.raises(ValueError, match="between slashes"):
        engine.extensions[0].api.add_route("../up", lambda context: None)
