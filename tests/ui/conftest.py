"""UI test setup: one real Kubin server (tiny-kd22, offline) for the session, API clients and Chromium.

The server runs as a subprocess exactly as a user starts it (`python -m kubin --model tiny-kd22 ...`),
with its own output folder, user config file, Kubin cache and Gradio temp folder under a session
temp dir, so the tests touch nothing in the repository or the user's home. Browser tests drive the
system Chromium (Playwright cannot download its own here). test.sh installs it; without one the browser
tests fail, unless KUBIN_SKIP_BROWSER_TESTS=1 says to skip them on purpose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import start_server, stop_server

UI_TESTS = Path(__file__).resolve().parent
REPO_ROOT = UI_TESTS.parent.parent
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
START_TIMEOUT_S = 60
# A hand-written key in the user file before the server starts; saving settings must keep it. The bundled
# example extension (off by default) is switched on, for the tests of its tab.
HAND_WRITTEN_CONFIG = (
    "# written by hand before Kubin starts\nserver:\n  host: 127.0.0.1\nextensions:\n  enabled: [hello]\n"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class KubinServer:
    url: str
    output_dir: Path
    user_config: Path
    log_path: Path
    process: subprocess.Popen
    wildcards_dir: Path  # holds colors.txt: red, green, blue
    lora_dir: Path  # the LoRA folder, empty at start

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def saved_images(self, task: str = "t2i") -> set[Path]:
        """Every PNG of `task` saved so far (finished files only; temp files start with a dot)."""
        return {p for p in (self.output_dir / task).glob("*/*.png") if not p.name.startswith(".")}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every UI test starts a real Kubin server or talks to the shared one: it is marked `server`, and one
    that drives Chromium (the `browser` fixture) `browser` too, so `-m "not server"` needs no list by hand."""
    for item in items:
        if not item.path.is_relative_to(UI_TESTS):
            continue  # the hook is given the whole session's tests
        item.add_marker(pytest.mark.server)
        if "browser" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed UI test's report ends with the server's log, where a server-side traceback would be."""
    report = yield
    server = getattr(item, "funcargs", {}).get("kubin_server")
    if report.failed and isinstance(server, KubinServer):
        report.sections.append(("Kubin server log (tail)", server.log_tail()))
    return report


@pytest.fixture(scope="session")
def kubin_server(tmp_path_factory: pytest.TempPathFactory):
    """A running `python -m kubin --model tiny-kd22` on a free port, with a wildcards folder of its own;
    stopped after the last test."""
    root = tmp_path_factory.mktemp("kubin-ui")
    output_dir = root / "output"
    wildcards_dir = root / "wildcards"
    wildcards_dir.mkdir()
    (wildcards_dir / "colors.txt").write_text("red\ngreen\nblue\n", encoding="utf-8")
    lora_dir = root / "lora"  # empty at start: a test adds files and refreshes
    lora_dir.mkdir()
    env = {"KUBIN_CACHE_DIR": str(root / "kubin-cache"), "HF_HOME": str(root / "hf-home")}
    running = start_server(
        root, "--model", "tiny-kd22", "--output-dir", str(output_dir), "--wildcards-dir", str(wildcards_dir),
        "--lora-dir", str(lora_dir), "--training-dir", str(root / "training"),
        "--depth-model", "tiny-depth", "--caption-model", "tiny-caption", "--enhance-model", "tiny-enhance",
        config=HAND_WRITTEN_CONFIG, env=env, timeout=START_TIMEOUT_S,
    )  # fmt: skip
    try:
        yield KubinServer(
            running.url,
            output_dir,
            running.user_config,
            running.log_path,
            running.process,
            wildcards_dir,
            lora_dir,
        )
    finally:
        stop_server(running)


@pytest.fixture
def api_client(kubin_server: KubinServer, tmp_path: Path):
    """A fresh gradio_client Client (its own session) that downloads result files into tmp_path."""
    from gradio_client import Client

    client = Client(kubin_server.url, verbose=False, download_files=tmp_path, analytics_enabled=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR


def _chromium_path() -> str | None:
    return os.environ.get("KUBIN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    """Headless system Chromium, launched once for the session."""
    executable = _chromium_path()
    if not executable:
        message = "no Chromium found: install Debian's `chromium` (test.sh does) or set KUBIN_CHROMIUM"
        if os.environ.get("KUBIN_SKIP_BROWSER_TESTS") == "1":
            pytest.skip(message)
        pytest.fail(message)
    from playwright.sync_api import expect, sync_playwright

    # A check that holds passes at once; one that waits on a busy 2-core machine (frames seconds apart while
    # a model computes beside the page) gets 20 s, not Playwright's 5 s.
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, kubin_server: KubinServer):
    """Opens Kubin in a fresh browser context (own storage, own Gradio session); closes them after the test."""
    contexts = []

    def open_page(path: str = "/", **context_options):
        context_options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(**context_options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)  # generous: CI machines may be busy
        page.goto(kubin_server.url + path)
        # The whole app's first render: over 30 s was seen with the machine's load at 10-13 on 2 cores.
        page.wait_for_selector("#prompt textarea", timeout=60_000)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def http(kubin_server):
    """An HTTP client of the shared test server, for the REST API tests."""
    import httpx

    with httpx.Client(base_url=kubin_server.url, timeout=120) as client:
        yield client
