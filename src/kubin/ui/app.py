"""Builds the Gradio Blocks app (header, task tabs, settings) and launches it."""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from kubin import __version__
from kubin.config import LoadedConfig
from kubin.errors import KubinError
from kubin.extensions.loader import fail
from kubin.outputs import save_video_frame
from kubin.ui.context import UIContext, saved_prompt
from kubin.ui.tabs import extensions as extensions_tab
from kubin.ui.tabs import history as history_tab
from kubin.ui.tabs import img2img, img2vid, inpaint, mesh, mix, outpaint, txt2img, txt2vid, video_upscale
from kubin.ui.tabs import settings as settings_tab
from kubin.ui.tabs import training as training_tab
from kubin.ui.task_tab import TaskTab

log = logging.getLogger(__name__)
CSS_PATH = Path(__file__).with_name("kubin.css")
JS_PATH = Path(__file__).with_name("kubin.js")  # keyboard shortcut, results into view, slider steps
SHARE_HOST = "api.gradio.app"
TOOLS_TAB = "tools"  # the top-row tab holding the tool extensions' tabs

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def build_app(ctx: UIContext) -> gr.Blocks:
    with gr.Blocks(title="Kubin", analytics_enabled=False) as demo:
        with gr.Column(elem_id="kubin-header"):
            gr.Markdown(f"# Kubin\nKandinsky models on your own machine · v{__version__}")
            for notice in ctx.notices:
                gr.Markdown(f"⚠ {notice}", elem_classes=["kubin-warning"])
            # The settings file's warnings, as of each page load (a save clears them).
            if ctx.engine.cluster is not None:  # on each page load: a line while the cluster is gone
                gr.Markdown(lambda: cluster_warning(ctx), elem_classes=["kubin-warning"],
                            elem_id="kubin-cluster-warning")  # fmt: skip
            ctx.settings_warning_boxes.append(
                gr.Markdown(lambda: settings_tab.settings_text(ctx), elem_classes=["kubin-warning"],
                            elem_id="kubin-settings-warnings")
            )  # fmt: skip
        # The top row: the task tabs, 3D, Training, Tools (every tool extension's tab, nested), Settings, Extensions. On a
        # narrow screen it wraps onto more rows, in the same order, instead of hiding tabs behind a menu.
        with gr.Tabs(selected=start_tab(ctx), overflow_behavior="wrap", elem_id="kubin-tabs") as tabs:
            built = [tab.build(ctx) for tab in (txt2img, img2img, mix, inpaint, outpaint, txt2vid, img2vid)]
            mesh.build(ctx)  # 3D: a viewer instead of a gallery, nothing to send to the image tabs
            ctx.tabs, ctx.task_tabs = tabs, {t.task: t for t in built}  # for extension tabs that send
            training_tab.build(ctx)  # pictures or clips to a LoRA adapter (updates the tabs' LoRA pickers)
            built.append(build_extension_tabs(ctx))  # and Tools, with Video upscale and the job history
            settings_tab.build(ctx)
            extensions_tab.build(ctx)
        wire_send_to(tabs, {t.task: t for t in built}, ctx)
        wire_job_owners(ctx)
        for load, outputs, *inputs in ctx.page_loads:
            demo.load(
                load, inputs or None, outputs, queue=False, show_progress="hidden", api_visibility="private"
            )
    return demo


def cluster_warning(ctx: UIContext) -> str:
    problem = ctx.engine.cluster.problem
    return f"⚠ {problem} Jobs can run again once it is back." if problem else ""


def wire_job_owners(ctx: UIContext) -> None:
    """Each page load sets the tabs' job owners from an id kept in the browser's localStorage (made on the
    first visit), so a page reloaded while its job runs can still cancel it: its Cancel button is active."""
    browser_id = gr.BrowserState(None, storage_key="kubin-browser-id")
    states = [state for state, _ in ctx.owners]
    cancels = [button for button, _ in ctx.cancel_buttons]

    def adopt(stored: str | None, *session_owners: str) -> list:
        known = stored or uuid.uuid4().hex
        owners = [f"{known}:{key}" for _, key in ctx.owners]
        for old, new in zip(session_owners, owners, strict=True):  # a Generate clicked before this load ran
            ctx.engine.adopt_owner(old, new)
        running = [gr.update(interactive=ctx.has_jobs(f"{known}:{key}")) for _, key in ctx.cancel_buttons]
        return [known, *owners, *running]

    ctx.page_loads.append((adopt, [browser_id, *states, *cancels], browser_id, *states))


# Tab ids in the order the tabs stand; the 3D tab serves both 3D tasks.
TASK_TABS = {"t2i": "t2i", "i2i": "i2i", "mix": "mix", "inpaint": "inpaint", "outpaint": "outpaint",
             "t2v": "t2v", "i2v": "i2v", "t2mesh": mesh.TAB_ID, "i2mesh": mesh.TAB_ID, "vsr": TOOLS_TAB}  # fmt: skip


def start_tab(ctx: UIContext) -> str:
    """The page opens on the first tab the model selected at start can run (text to video for the
    default Kandinsky 5 Lite T2V), text to image when it cannot be resolved."""
    try:
        spec = ctx.spec(ctx.model_id)
    except Exception:
        return "t2i"
    return next((tab for task, tab in TASK_TABS.items() if spec.supports(task)), "t2i")


def build_extension_tabs(ctx: UIContext) -> TaskTab:
    """Each loaded extension's tabs: those of group "top" in the top row, the others (the tools) in the Tools
    tab, after which come Kubin's own tools: the job history and Video upscale (returned: video tabs send
    to it). An extension tab whose build raises is marked failed and its tab says so."""
    tabs = [(ext, i, tab) for ext in ctx.extensions if ext.status == "ok" and ext.api is not None
            for i, tab in enumerate(ext.api.tabs)]  # fmt: skip
    for ext, i, tab in tabs:
        if tab.group == "top":
            _build_extension_tab(ctx, ext, i, tab)
    tools = [(ext, i, tab) for ext, i, tab in tabs if tab.group != "top"]
    with gr.Tab("Tools", id=TOOLS_TAB, elem_id=f"tab-{TOOLS_TAB}") as tools_tab:
        with gr.Tabs(overflow_behavior="wrap", elem_id="kubin-tool-tabs") as tool_tabs:
            for ext, i, tab in tools:
                _build_extension_tab(ctx, ext, i, tab, (tools_tab, tool_tabs))
            # Kubin's own tools after the extensions' (so that the first tool still opens with the tab): the
            # job history, then Video upscale. (A tab after Video upscale's was drawn twice once selected.)
            ctx.tab_paths[history_tab.TAB_ID] = [(ctx.tabs, TOOLS_TAB), (tool_tabs, history_tab.TAB_ID)]
            with gr.Tab("History", id=history_tab.TAB_ID, elem_id=f"tab-{history_tab.TAB_ID}") as built:
                history_tab.build(ctx, [tools_tab, built])
            ctx.tab_paths[video_upscale.TASK] = [(ctx.tabs, TOOLS_TAB), (tool_tabs, video_upscale.TASK)]
            return video_upscale.build(ctx)


def _build_extension_tab(ctx: UIContext, ext, i: int, tab, tools: tuple | None = None) -> None:
    """One extension tab; `tools` is (the Tools gr.Tab, its gr.Tabs) for a tab nested there."""
    ctx.building_tab = tab_id = f"ext-{ext.name}" + (f"-{i}" if i else "")
    opened_by = []
    if tools is not None:
        ctx.tab_paths[tab_id] = [(ctx.tabs, TOOLS_TAB), (tools[1], tab_id)]
        opened_by.append(tools[0])
    with gr.Tab(tab.title, id=tab_id, elem_id=f"tab-{tab_id}") as built:
        ctx.opened_by = [*opened_by, built]
        try:
            tab.build(ctx)
        except Exception as exc:
            fail(ext, exc)
            gr.Markdown(f"✗ The extension {ext.name} failed to build this tab: {ext.error}")
    ctx.opened_by = []


@dataclass
class _ExtensionTarget:
    """An extension tab as a send target, shaped like the TaskTab fields wire_send_to reads."""

    task: str  # the tab id
    receive_image: Any
    prompt: Any = None
    receive_value: Any = None


def wire_send_to(tabs: gr.Tabs, by_task: dict[str, TaskTab], ctx: UIContext) -> None:
    """Every gallery's "→ tab" buttons put the selected image (and its prompt) into that tab and open it (a
    tool's tab inside the Tools tab too); from a video, the frame chosen in "Frame to send" goes (saved as a
    PNG beside the video)."""
    for source in by_task.values():
        for target_task, button in source.send_buttons.items():
            target = by_task.get(target_task)
            if target_task.startswith("ext:") and target_task[4:] in ctx.receivers:
                component, tab_id = ctx.receivers[target_task[4:]]
                target = _ExtensionTarget(tab_id, component)
            if target is None:  # a tab that is not built (an extension's that failed): no button
                button.visible = False
                continue
            opened = ctx.tabs_of(target.task)
            outputs = [target.receive_image, *opened] + ([target.prompt] if target.prompt is not None else [])
            frame = [source.send_frame] if source.send_frame is not None else []

            def send(results, selected, frame_index=-1, _target=target):
                if not results:
                    raise gr.Error("Nothing to send yet: generate something first.", print_exception=False)
                path = results[min(int(selected or 0), len(results) - 1)]
                if path.endswith(".mp4") and _target.task != "vsr":  # the upscaler takes the whole video
                    try:
                        path = str(save_video_frame(path, int(frame_index or 0)))
                    except KubinError as exc:
                        raise gr.Error(str(exc), print_exception=False) from None
                value = _target.receive_value(path) if _target.receive_value else path
                sent = [value, *ctx.opening(_target.task)]
                if _target.prompt is not None:
                    prompt = saved_prompt(path)
                    sent.append(gr.update(value=prompt) if prompt else gr.update())
                return sent

            button.click(send, [source.results, source.selected, *frame], outputs, queue=False,
                         api_visibility="private", show_progress="hidden")  # fmt: skip


def share_reachable(timeout: float = 5.0) -> str | None:
    """None when the share service answers, else why not (checked before Gradio tries, which is slow)."""
    try:
        with socket.create_connection((SHARE_HOST, 443), timeout=timeout):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"


def api_folder_roots(settings: LoadedConfig) -> list[Path] | None:
    """The server folders an API folder batch may read: those of `api_folder_roots` when set; else any on a
    server only this machine reaches, none on one others reach (--listen, --share, a non-loopback host)."""
    roots = settings.get("api_folder_roots") or []
    if isinstance(roots, str):
        roots = [roots]
    if roots:
        return [Path(str(r)).expanduser() for r in roots]
    host = str(settings.get("server.host") or "127.0.0.1")
    exposed = settings.get("server.listen") or settings.get("server.share") or host not in LOOPBACK_HOSTS
    return [] if exposed else None


def api_lifespan(
    mounted: dict, engine, model_id: str, settings: LoadedConfig, credentials, max_upload_mb: float
):
    """A FastAPI lifespan that adds the REST API to Gradio's app as the server starts, before it accepts
    connections (routes added after launch() left a moment when the page answered and the API was a 404);
    the API's state lands in mounted["api"]."""
    from kubin.api import mount_api

    @contextlib.asynccontextmanager
    async def lifespan(app):
        mounted["api"] = mount_api(
            app, engine, model_id, credentials, max_upload_mb,
            int(settings.get("server.max_upload_pixels", 8192 * 8192)), api_folder_roots(settings),
        )  # fmt: skip
        yield

    return lifespan


async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
    """A client that went away in the middle of its request (a tab closed during an upload, an API call
    aborted) is nothing the server did wrong: no traceback in the log, and no one to answer."""
    log.debug("%s %s: the client disconnected", request.method, request.url.path)
    # 499: nginx's "client closed request". uvicorn sends nothing to a client that is gone.
    return Response(status_code=499)


def stop_on_sigterm() -> None:
    """SIGTERM ends the server as Ctrl+C does, through the same cleanup."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def launch(settings: LoadedConfig, block: bool = True) -> int | gr.Blocks:
    """Start the server; returns an exit code (or, with block=False, the running Blocks for tests)."""
    from kubin.api.security import listen_warning, load_credentials
    from kubin.app import EXIT_USER_ERROR, load_extensions, make_engine

    host = "0.0.0.0" if settings.get("server.listen") else settings.get("server.host")
    port = int(settings.get("server.port"))
    share = bool(settings.get("server.share"))
    credentials = load_credentials(settings.get("server.auth"), settings.get("server.auth_file"))
    max_upload_mb = float(settings.get("server.max_upload_mb", 50))
    if share:
        reason = share_reachable()
        if reason:
            print(
                f"error: --share needs internet access to reach {SHARE_HOST} to create a public link, and it could not "
                f"({reason}). Start Kubin without --share to use it on this machine.",
                flush=True,
            )
            return EXIT_USER_ERROR
    engine = make_engine(settings, history=True)
    engine.extensions = load_extensions(settings, bool(settings.get("extensions.install_deps")))
    ctx = UIContext(engine, settings, str(settings.get("model")), extensions=engine.extensions)
    try:
        ctx.spec(ctx.model_id)
    except Exception as exc:
        ctx.notices.append(f"The model selected at start cannot be used: {exc}")
    output_dir = Path(settings.get("output_dir")).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=1)
    mounted: dict = {}
    app_kwargs: dict[str, Any] = {"exception_handlers": {ClientDisconnect: client_gone}}
    if settings.get("server.api", True):
        app_kwargs["lifespan"] = api_lifespan(
            mounted, engine, ctx.model_id, settings, credentials, max_upload_mb
        )
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            share=share,
            prevent_thread_lock=True,
            show_error=True,
            allowed_paths=[str(output_dir)],
            auth=credentials or None,
            max_file_size=int(max_upload_mb * 1024 * 1024),
            css_paths=[CSS_PATH],
            # Gradio's own start lines name launch() arguments (`share=True`), not Kubin's flags: Kubin prints
            # its own below. Errors (a failed share link) are printed either way.
            quiet=True,
            js=JS_PATH.read_text(encoding="utf-8"),
            inbrowser=False,
            app_kwargs=app_kwargs,
        )
    except OSError as exc:
        print(
            f"error: could not listen on {host}:{port} ({exc}). Use --port to pick another port.", flush=True
        )
        engine.close()
        return EXIT_USER_ERROR
    if share and not getattr(demo, "share_url", None):
        print(
            "error: Gradio could not create the share link (see the lines above). Start without --share.",
            flush=True,
        )
        demo.close()
        return EXIT_USER_ERROR
    api_state = mounted.get("api")
    warning = listen_warning(host, bool(credentials), share)
    if warning:
        print(warning, flush=True)
    print(
        f"Kubin is running at http://{host}:{port} (dark mode: http://{host}:{port}/?__theme=dark)"
        + (f"; REST API docs at http://{host}:{port}/docs" if api_state else "")
        + (f"; public link: {demo.share_url}" if share else "; start with --share for a public link"),
        flush=True,
    )
    if not block:
        return demo
    if engine.cluster is not None:
        stop_on_sigterm()  # so the finally below stops a local Ray instance too
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        engine.close()
        if api_state is not None:
            from kubin.api import remove_uploads

            remove_uploads(api_state)
    return 0
