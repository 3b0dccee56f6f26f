"""Settings tab: the main options, saved to the user config file (merged, so hand-written keys stay)."""

from pathlib import Path

import gradio as gr

from kubin.config import save_user_settings
from kubin.errors import KubinError
from kubin.params import Text2ImageParams
from kubin.runtime.device import choose_device, choose_dtype
from kubin.ui.context import UIContext

UI_DEFAULT_FIELDS = ["width", "height", "steps", "guidance_scale", "prior_steps", "prior_guidance_scale"]


def build(ctx: UIContext) -> None:
    s = ctx.settings
    specs = Text2ImageParams.field_specs()
    with gr.Tab("Settings", id="settings", elem_id="tab-settings"):
        gr.Markdown(
            f"Settings are saved to `{s.user_path}`. The output folder applies at once; model, device "
            "and dtype apply from the next model load (the loaded model is unloaded)."
        )
        for warning in s.warnings:
            gr.Markdown(f"⚠️ {warning}", elem_classes=["kubin-warning"])
        with gr.Row():
            model = gr.Dropdown(
                [m.id for m in ctx.models()],
                value=s.get("model"),
                label="Model at start",
                allow_custom_value=True,
                elem_id="settings-model",
                min_width=200,
            )
            device = gr.Dropdown(
                ["auto", "cpu", "cuda", "mps"],
                value=s.get("device"),
                label="Device",
                allow_custom_value=True,
                elem_id="settings-device",
                min_width=120,
            )
            dtype = gr.Dropdown(
                ["auto", "fp32", "fp16", "bf16"],
                value=s.get("dtype"),
                label="Precision",
                elem_id="settings-dtype",
                min_width=120,
            )
        output_dir = gr.Textbox(
            value=str(s.get("output_dir")), label="Output folder", elem_id="settings-output-dir"
        )
        gr.Markdown("**Text to image defaults** (empty keeps the model's own)")
        current = s.get("ui.defaults.t2i") or {}
        with gr.Row():
            defaults = [
                gr.Number(
                    value=current.get(name),
                    label=specs[name].label,
                    minimum=specs[name].minimum,
                    maximum=specs[name].maximum,
                    min_width=120,
                )
                for name in UI_DEFAULT_FIELDS
            ]
        save = gr.Button("Save settings", variant="primary", elem_id="settings-save")
        status = gr.Markdown(elem_id="settings-status")

        def save_settings(model_id, device_name, dtype_name, out_dir, *default_values):
            try:
                ctx.spec(model_id)
                choose_device(
                    device_name, cuda_available=True, cuda_count=16, mps_available=True
                )  # syntax only
                choose_dtype(dtype_name, "cuda")
                if not str(out_dir).strip():
                    raise KubinError("The output folder cannot be empty.")
                ui_defaults = {}
                for name, value in zip(UI_DEFAULT_FIELDS, default_values, strict=True):
                    if value is not None:
                        ui_defaults[name] = value
                Text2ImageParams.from_dict(ui_defaults).validate()
            except KubinError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            updates = {
                "model": model_id,
                "device": device_name,
                "dtype": dtype_name,
                "output_dir": out_dir,
                "ui.defaults.t2i": ui_defaults,
            }
            path = save_user_settings(s.user_path, updates)
            for key, value in updates.items():
                s.set(key, value)
            ctx.engine.output_dir = Path(out_dir)
            ctx.engine.manager.configure(device_name, dtype_name)
            return f"✅ Saved to `{path}`."

        save.click(
            save_settings,
            [model, device, dtype, output_dir, *defaults],
            status,
            api_name="save_settings",
            concurrency_limit=1,
        )
