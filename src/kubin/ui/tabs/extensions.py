"""Extensions tab: what was found and its status; enabling or disabling is saved and applies on restart."""

import gradio as gr

from kubin.config import save_user_settings
from kubin.extensions.loader import enabled_by_default
from kubin.ui.context import UIContext

# Symbols every common font has (no emoji font is needed to see them).
ICONS = {"ok": "✓", "disabled": "○", "needs-install": "↓", "failed": "✗"}


def build(ctx: UIContext) -> None:
    extensions = ctx.extensions
    with gr.Tab("Extensions", id="extensions", elem_id="tab-extensions"):
        if not extensions:
            gr.Markdown("No extensions found. See `extensions/README.md` to write one.")
            return
        rows = []
        for ext in extensions:
            name = ext.manifest.get("name", ext.name)
            detail = (
                f" — {ext.error}"
                if ext.error
                else (f" — needs {', '.join(ext.missing)}" if ext.missing else "")
            )
            rows.append(f"- {ICONS.get(ext.status, '')} **{name}** (`{ext.name}`, {ext.status}){detail}")
        gr.Markdown("\n".join(rows), elem_id="extensions-list")
        enabled = gr.CheckboxGroup(
            [e.name for e in extensions], value=[e.name for e in extensions if e.status != "disabled"],
            label="Enabled extensions (applies on restart)", elem_id="extensions-enabled",
        )  # fmt: skip
        save = gr.Button("Save", elem_id="extensions-save")
        status = gr.Markdown(elem_id="extensions-status")

        def save_enabled(names: list[str]) -> str:
            # Unticked ones that would load are disabled; ticked ones off by default (the example) enabled.
            disabled = [e.name for e in extensions if e.name not in names and enabled_by_default(e)]
            enabled = [e.name for e in extensions if e.name in names and not enabled_by_default(e)]
            path = save_user_settings(
                ctx.settings.user_path, {"extensions.disabled": disabled, "extensions.enabled": enabled}
            )
            return f"Saved to `{path}`. Restart Kubin to apply."

        save.click(save_enabled, enabled, status, api_name="save_extensions")
        build_installer(ctx, [e for e in extensions if e.status == "needs-install"])


def build_installer(ctx: UIContext, waiting: list) -> None:
    """A button per extension that needs packages: pip runs only when the user presses it, with its output
    streamed into the box. Not offered when the server is open to the network without a password, and
    never reachable from the REST API or the Gradio client (private event)."""
    if not waiting:
        return
    gr.Markdown("### Requirements to install")
    host = str(ctx.settings.get("server.host") or "127.0.0.1")
    listen = bool(ctx.settings.get("server.listen"))
    local = host in ("127.0.0.1", "localhost", "::1") and not listen
    protected = bool(ctx.settings.get("server.auth") or ctx.settings.get("server.auth_file"))
    if not (local or protected):
        gr.Markdown(
            "Installing from the browser is off while Kubin is reachable from the network without a password. "
            "Run `python -m kubin --install-extension-deps` on the machine itself instead.",
            elem_id="extensions-install-off",
        )
        return
    log_box = gr.Textbox(label="pip output", lines=12, max_lines=24, elem_id="extensions-install-log")
    for ext in waiting:
        button = gr.Button(
            f"Install {', '.join(ext.missing)} for {ext.manifest.get('name', ext.name)}",
            elem_id=f"extensions-install-{ext.name}",
        )

        def install(_ext=ext):
            import queue
            import threading

            from kubin.extensions.loader import install_requirements

            lines: queue.Queue = queue.Queue()
            result: dict = {}
            worker = threading.Thread(
                target=lambda: result.update(ok=install_requirements(_ext, emit=lines.put)), daemon=True
            )
            worker.start()
            shown: list[str] = []
            while worker.is_alive() or not lines.empty():
                try:
                    shown.append(lines.get(timeout=0.2))
                except queue.Empty:
                    continue
                yield "\n".join(shown[-200:])
            shown.append(
                "Done: restart Kubin to load it." if result.get("ok") else "The install did not complete."
            )
            yield "\n".join(shown[-200:])

        button.click(install, None, log_box, api_visibility="private", concurrency_limit=1,
                     concurrency_id="extension-install")  # fmt: skip
