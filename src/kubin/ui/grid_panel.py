"""A tab's "X/Y/Z grid": up to three axes (a parameter and its values) queue one job per combination over
the tab's own values; the gallery shows the cells as they come, then the labelled grid first. Restoring a
grid PNG in the tab fills the axes again (kubin.grid keeps the plan in the PNG)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from kubin.engine import CANCELLED, Job
from kubin.errors import KubinError
from kubin.grid import AXIS_LETTERS, engine_plan, save_grid, start_grid
from kubin.outputs import read_output_metadata
from kubin.ui import components as ui
from kubin.ui.context import UIContext
from kubin.ui.job_view import GENERATE_WAITERS, follow_jobs

HELP = (
    "One job per combination, over this tab's values. Values as in A1111: `20,30,40`, `1-5`, `1-10 (+2)`, "
    "`0.5-1 [3]`; sizes `512x512, 768x512`; models by id; **prompt S/R** `cat, dog, bird` replaces the "
    "first (found in the prompt) by each; **LoRA weight** `ink, 0, 0.5, 1` is an adapter's name, then its "
    "weights. Cancel stops the cells left and saves a grid of those made."
)


class GridPanel:
    """The panel's widgets: (axis dropdown, values box) for X, Y and Z, the Run button and its status."""

    def __init__(self, task: str, choices: list[str]):
        self.axes: list[tuple[gr.Dropdown, gr.Textbox]] = []
        with gr.Accordion("X/Y/Z grid", open=False, elem_id=f"{task}-grid-box"):
            gr.Markdown(HELP)
            for letter in AXIS_LETTERS:
                with gr.Row(equal_height=True):
                    name = gr.Dropdown(
                        ["", *choices], value="", label=f"{letter} axis", min_width=140, scale=1,
                        elem_id=f"{task}-grid-{letter.lower()}-axis",
                    )  # fmt: skip
                    values = gr.Textbox(
                        label=f"{letter} values", lines=1, scale=2, min_width=160,
                        elem_id=f"{task}-grid-{letter.lower()}-values",
                    )  # fmt: skip
                self.axes.append((name, values))
            self.run = gr.Button("Run grid", variant="primary", elem_id=f"{task}-grid-run")
            self.status = gr.Markdown(elem_id=f"{task}-grid-status")

    @property
    def components(self) -> list[Any]:
        return [c for pair in self.axes for c in pair]


def grid_panel(task: str) -> GridPanel:
    from kubin.grid import axis_choices

    return GridPanel(task, axis_choices(task))


def wire_grid_panel(
    ctx: UIContext,
    task: str,
    panel: GridPanel,
    owner: Any,
    model: Any,
    names: list[str],
    components: list[Any],
    event_outputs: list[Any],
    to_params: Callable[[dict[str, Any]], dict[str, Any]],
    extension_keys: dict[str, tuple[str, str]],
    restore_file: Any,
    cancel: tuple[Any, Any],
) -> None:
    """Run grid queues every cell, follows them, then saves and shows the grid; a restored grid PNG fills
    the axes."""
    axis_count = len(panel.components)

    def run_grid(owner_id, model_id, *values_in, progress=gr.Progress()):  # noqa: B008
        pairs = values_in[:axis_count]
        axes = [(pairs[i] or "", pairs[i + 1] or "") for i in range(0, axis_count, 2)]
        values = dict(zip(names, values_in[axis_count:], strict=True))
        extension_values: dict[str, dict[str, Any]] = {}  # each cell gets them, as Generate's job does
        for name, (ext_name, control) in extension_keys.items():
            extension_values.setdefault(ext_name, {})[control] = values.pop(name)
        base = {k: v for k, v in to_params(values).items() if v is not None}
        try:
            plan = engine_plan(ctx.engine, task, model_id, base, axes)
            grid = start_grid(
                ctx.engine,
                plan,
                submit=lambda cell: ctx.engine.submit(
                    Job(task, cell.model_id, cell.params, owner=owner_id, extension_values=extension_values)
                ),
            )
        except KubinError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        failures: list[str] = []
        count = len(grid.handles)
        done = yield from follow_jobs(
            ctx,
            ((f"**X/Y/Z grid: cell {n} of {count}**", f"Cell {n}", handle)
             for n, handle in enumerate(grid.handles, start=1)
             # cancelled while queued: nothing to show (a grid of 100 cells cancels at once)
             if not (handle.state == CANCELLED and not handle.results)),
            progress, failures,
        )  # fmt: skip
        path = save_grid(grid, ctx.engine.output_dir)
        made = sum(1 for p in grid.cell_paths() if p)
        shape = " x ".join(str(n) for n in plan.shape[: len(plan.axes)])
        if path is None:
            info = f"**X/Y/Z grid ({shape})**: no cell was made, so no grid was saved."
            gallery = done
        else:
            info = f"**X/Y/Z grid ({shape})**: {made} of {count} cells · saved `{path}`"
            if made < count:
                info += "\n\n⚠ Cells not made are left grey in the grid."
            gallery = [(str(path), "X/Y/Z grid"), *done]
        details = plan.as_json() | {"grid": str(path) if path else None, "cells": grid.cell_paths()}
        yield gallery, info, details, plan.base.get("seed", -1), [p for p, _ in gallery], 0
        if failures:
            raise gr.Error("\n".join(failures), print_exception=False)

    cancel_btn, cancel_status = cancel  # the tab's Cancel stops the grid's cells (they are the tab's jobs)
    panel.run.click(
        lambda: ("", gr.update(interactive=True)), None, [cancel_status, cancel_btn],
        queue=False, show_progress="hidden", api_visibility="private",
    )  # fmt: skip
    panel.run.click(
        run_grid, [owner, model, *panel.components, *components], event_outputs,
        api_visibility="private", concurrency_limit=GENERATE_WAITERS, concurrency_id="generate",
    ).then(
        lambda owner_id: ui.cancel_state(ctx, owner_id), owner, cancel_btn,
        queue=False, show_progress="hidden", api_visibility="private",
    )  # fmt: skip

    def restore_axes(path: str | None):
        """The axes of a grid PNG, or nothing changed for any other file."""
        keep = [gr.update()] * axis_count
        if not path:
            return [*keep, ""]
        try:
            grid = read_output_metadata(path).get("grid")
        except KubinError:
            return [*keep, ""]
        if not isinstance(grid, dict):
            return [*keep, ""]
        axes = list(grid.get("axes", []))[:3]
        updates: list[Any] = []
        for i in range(len(AXIS_LETTERS)):
            axis = axes[i] if i < len(axes) else {"name": "", "values": ""}
            updates += [gr.update(value=axis["name"]), gr.update(value=axis["values"])]
        return [*updates, "Restored the grid's axes: **Run grid** makes it again."]

    restore_file.upload(
        restore_axes, restore_file, [*panel.components, panel.status],
        api_visibility="private", show_progress="hidden",
    )  # fmt: skip
