"""Extensions tab: what was found and its status; enabling or disabling is saved and applies on restart."""

import gradio as gr

from kubin.config import save_user_settings
from kubin.ui.context import UIContext

ICONS = {"ok": "✅", "disabled": "⏸️", "needs-install": "📦", "failed": "❌"}


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
            disabled = [e.name for e in extensions if e.name not in names]
            path = save_user_settings(ctx.settings.user_path, {"extensions.disabled": disabled})
            return f"Saved to `{path}`. Restart Kubin to apply."

        save.click(save_enabled, enabled, status, api_name="save_extensions")
