"""Prompt styles: a style wraps the prompt in a template ("{prompt}, oil painting") and adds a negative
prompt. Pick one in any generation tab; list, search, add, change and delete your own in the Styles tab.

The styles shipped in styles.yaml are read-only; user styles live in this extension's settings
(`extensions.settings.styles.user_styles` in configs/kubin.user.yaml) and win when names match.
"""

# No `from __future__ import annotations`: Gradio reads the `gr.SelectData` hint of event functions.
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).with_name("styles.yaml")
NONE = "(no style)"
TASKS = ["t2i", "i2i", "inpaint", "outpaint", "t2v", "i2v"]


def shipped_styles() -> list[dict[str, str]]:
    from omegaconf import OmegaConf

    return [dict(s) for s in OmegaConf.to_container(OmegaConf.load(SHIPPED))]


class Styles:
    """The style list: shipped styles, then the user's (which replace shipped ones of the same name)."""

    def __init__(self, api):
        self.api = api
        self.shipped = shipped_styles()

    def user(self) -> list[dict[str, str]]:
        return [dict(s) for s in self.api.settings.get("user_styles") or []]

    def all(self) -> dict[str, dict[str, str]]:
        styles = {s["name"]: s | {"source": "shipped"} for s in self.shipped}
        styles.update({s["name"]: s | {"source": "yours"} for s in self.user()})
        return styles

    def names(self) -> list[str]:
        return sorted(self.all(), key=str.lower)

    def save(self, name: str, prompt: str, negative: str) -> str:
        name = (name or "").strip()
        if not name:
            raise ValueError("Give the style a name.")
        if "{prompt}" not in (prompt or ""):
            raise ValueError("The style's prompt must contain {prompt}, where your prompt goes.")
        user = [s for s in self.user() if s["name"] != name]
        user.append({"name": name, "prompt": prompt, "negative_prompt": negative or ""})
        self.api.save_settings({"user_styles": sorted(user, key=lambda s: s["name"].lower())})
        return f"Saved the style {name!r}."

    def delete(self, name: str) -> str:
        user = self.user()
        if name not in {s["name"] for s in user}:
            if name in {s["name"] for s in self.shipped}:
                raise ValueError(f"{name!r} is a shipped style; you can override it with one of your own.")
            raise ValueError(f"There is no style named {name!r}.")
        self.api.save_settings({"user_styles": [s for s in user if s["name"] != name]})
        return f"Deleted the style {name!r}."


def apply_style(style: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
    """The params with the prompt put into the style's template and its negative prompt added."""
    changed = dict(params)
    changed["prompt"] = style["prompt"].replace("{prompt}", str(params.get("prompt") or "")).strip(" ,")
    negative = ", ".join(
        p for p in (params.get("negative_prompt") or "", style.get("negative_prompt") or "") if p
    )
    changed["negative_prompt"] = negative
    return changed


def setup(api):
    styles = Styles(api)
    dropdowns: list = []  # every tab's style picker, refreshed when the list changes

    def before_job(task, params, values):
        name = (values or {}).get("style") or ""
        if not name or name == NONE:
            return None
        style = styles.all().get(name)
        if style is None:  # deleted in another session since this page was loaded: the user's mistake
            from kubin.errors import InvalidParams

            raise InvalidParams(f"There is no style named {name!r} (any more); pick another or none.")
        return apply_style(style, params)

    def sent(name, prompt, negative=""):
        """The prompt and negative prompt the model will get with the style `name` (hidden with none)."""
        import gradio as gr

        style = styles.all().get(name) if name and name != NONE else None
        if style is None:
            return gr.update(visible=False), gr.update(visible=False)
        styled = apply_style(style, {"prompt": prompt, "negative_prompt": negative})
        return (
            gr.update(value=styled["prompt"], visible=True),
            gr.update(value=styled["negative_prompt"], visible=True),
        )

    def controls(ctx, task, tab_widgets):
        import gradio as gr

        # Custom values allowed: a style saved after this page was built is valid by its name.
        picker = gr.Dropdown(
            [NONE, *styles.names()], value=NONE, label="Style", filterable=True, allow_custom_value=True,
            info="wraps the prompt in the style's template and adds its negative prompt",
            elem_id=f"{task}-style",
        )  # fmt: skip
        dropdowns.append(picker)
        prompt, negative = tab_widgets.get("prompt"), tab_widgets.get("negative_prompt")
        if prompt is not None:  # what the style makes of the prompt, as the user types and picks
            shown = [
                gr.Textbox(label="Prompt sent", info="your prompt in the style's template: what the model gets",
                           interactive=False, visible=False, lines=2, elem_id=f"{task}-style-prompt"),
                gr.Textbox(label="Negative prompt sent", interactive=False, visible=False,
                           elem_id=f"{task}-style-negative"),
            ]  # fmt: skip
            followed = [picker, prompt, *([negative] if negative is not None else [])]
            for component in followed:
                component.change(sent, followed, shown, queue=False, show_progress="hidden",
                                 api_visibility="private", trigger_mode="always_last")  # fmt: skip
        return {"style": picker}

    def tab(ctx):
        import gradio as gr

        def table(query: str = ""):
            q = (query or "").lower()
            return [
                [s["name"], s["prompt"], s.get("negative_prompt", ""), s["source"]]
                for name, s in sorted(styles.all().items(), key=lambda kv: kv[0].lower())
                if q in name.lower() or q in s["prompt"].lower()
            ]

        gr.Markdown("Styles wrap your prompt: `{prompt}` in a style is replaced by what you type.")
        search = gr.Textbox(
            label="Search", placeholder="name or words in the prompt", elem_id="styles-search"
        )
        listing = gr.Dataframe(
            table(), headers=["Name", "Prompt", "Negative prompt", "From"], interactive=False,
            wrap=True, elem_id="styles-table",
        )  # fmt: skip
        with gr.Row():
            name = gr.Textbox(label="Name", elem_id="styles-name")
            prompt = gr.Textbox(
                label="Prompt template", placeholder="{prompt}, oil painting", elem_id="styles-prompt"
            )
            negative = gr.Textbox(label="Negative prompt", elem_id="styles-negative")
        with gr.Row():
            save = gr.Button("Save style", variant="primary", elem_id="styles-save")
            delete = gr.Button("Delete style", variant="stop", elem_id="styles-delete")
        status = gr.Markdown(elem_id="styles-status")

        def pick(evt: gr.SelectData, rows):
            row = rows.iloc[evt.index[0]] if hasattr(rows, "iloc") else rows[evt.index[0]]
            values = list(row.iloc[:3]) if hasattr(row, "iloc") else list(row[:3])
            return values[0], values[1], values[2]

        def refreshed(message: str, query: str):
            choices = [NONE, *styles.names()]
            return [message, table(query), *[gr.update(choices=choices) for _ in dropdowns]]

        def on_save(n, p, ng, query):
            try:
                return refreshed(styles.save(n, p, ng), query)
            except ValueError as exc:
                return refreshed(f"⚠ {exc}", query)

        def on_delete(n, query):
            try:
                return refreshed(styles.delete((n or "").strip()), query)
            except ValueError as exc:
                return refreshed(f"⚠ {exc}", query)

        search.change(lambda q: table(q), search, listing, queue=False, api_visibility="private")
        listing.select(pick, listing, [name, prompt, negative], queue=False, api_visibility="private")
        outputs = [status, listing, *dropdowns]
        save.click(on_save, [name, prompt, negative, search], outputs, api_name="styles_save")
        delete.click(on_delete, [name, search], outputs, api_name="styles_delete")

    api.on("before_job", before_job)
    api.add_controls(controls, tasks=TASKS, title="Style")
    api.add_tab("Styles", tab)
