"""The X/Y/Z grid (kubin/grid.py): axis values parse as A1111 writes them, bad values are named, a plan
makes every combination up to the cap, the grid image has its labels, and a grid run on tiny-kd22 saves
the cells and a grid whose metadata restores the plan."""

import numpy as np
import pytest
from job_helpers import StepGate
from PIL import Image

from kubin.engine import Job
from kubin.errors import InvalidParams
from kubin.grid import (
    axis_choices,
    make_grid,
    make_plan,
    parse_axis,
    plan_from_grid,
    run_grid,
    save_grid,
    start_grid,
)
from kubin.models.registry import resolve_model
from kubin.outputs import read_image_metadata

SMALL = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2}


@pytest.mark.parametrize(
    ("name", "text", "values"),
    [
        ("steps", "1-5", [1, 2, 3, 4, 5]),
        ("steps", "1-10 (+2)", [1, 3, 5, 7, 9]),
        ("steps", "20,30, 40", [20, 30, 40]),
        ("guidance", "0.5-1 [3]", [0.5, 0.75, 1.0]),
        ("seed", "-1, 7", [-1, 7]),
        ("size", "64x64, 128x64", [(64, 64), (128, 64)]),
        ("prompt S/R", 'cat, dog, "bird, small"', ["cat", "dog", "bird, small"]),
        ("scheduler", "DDIM, DDPM", ["DDIM", "DDPM"]),
    ],
)
def test_axis_values_parse_as_a1111_writes_them(name, text, values):
    assert parse_axis("t2i", name, text).values == values


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("steps", "0, 3", "X axis (steps): value 0 is not allowed: Steps must be between 1 and 500"),
        ("steps", "two", "X axis (steps): 'two' is not valid"),
        ("steps", "1.5", "X axis (steps): '1.5' is not valid"),
        ("guidance", "5, 40", "X axis (guidance_scale): value 40 is not allowed"),
        ("size", "64x65", "X axis (size): value 64x65 is not allowed: Height must be a multiple of 64"),
        ("size", "big", "X axis (size): 'big' is not a size"),
        ("prompt S/R", "cat", "X axis (prompt S/R) needs the text to search for"),
        ("scheduler", "DDIM, Nope", "X axis (scheduler): 'Nope' is not a scheduler of this model"),
        ("model", "tiny-kd22, tiny-kd50-t2v", "X axis (model): Kandinsky 5"),
        ("colour", "1", "X axis (colour): Text to image has no such axis"),
    ],
)
def test_a_bad_axis_value_is_refused_naming_the_axis_and_the_value(name, text, said):
    with pytest.raises(InvalidParams) as err:
        parse_axis("t2i", name, text, schedulers=("DDIM", "DDPM"), model_ids=resolve_model)
    assert said in str(err.value)


def test_a_2x3_plan_has_6_cells_x_fastest_with_one_seed_for_all():
    plan = make_plan("t2i", "tiny-kd22", dict(SMALL), [("steps", "2,3"), ("prior_steps", "2-4"), ("", "")])
    cells = plan.cells()
    assert plan.shape == (2, 3, 1)
    assert [(c.params["steps"], c.params["prior_steps"]) for c in cells] == [
        (2, 2), (3, 2), (2, 3), (3, 3), (2, 4), (3, 4),
    ]  # fmt: skip
    assert len({c.params["seed"] for c in cells}) == 1 and cells[0].params["seed"] != -1
    assert plan.labels() == (
        ["steps: 2", "steps: 3"],
        ["prior_steps: 2", "prior_steps: 3", "prior_steps: 4"],
        [],
    )


def test_prompt_sr_and_model_axes_change_the_cells():
    plan = make_plan(
        "t2i", "tiny-kd22", dict(SMALL), [("prompt S/R", "red, blue"), ("model", "tiny-kd22, tiny-kd21")]
    )
    assert [(c.params["prompt"], c.model_id) for c in plan.cells()] == [
        ("a red cat", "tiny-kd22"), ("a blue cat", "tiny-kd22"), ("a red cat", "tiny-kd21"), ("a blue cat", "tiny-kd21"),
    ]  # fmt: skip
    with pytest.raises(InvalidParams, match="does not contain 'green'"):
        make_plan("t2i", "tiny-kd22", dict(SMALL), [("prompt S/R", "green, blue")])


def test_a_plan_over_the_cap_is_refused_with_the_count():
    with pytest.raises(InvalidParams, match=r"would have 120 cells \(10 x 12\); the limit is 100"):
        make_plan("t2i", "tiny-kd22", {}, [("steps", "1-10"), ("seed", "1-12")])
    assert len(make_plan("t2i", "tiny-kd22", {}, [("steps", "1-10")], max_cells=10).cells()) == 10
    with pytest.raises(InvalidParams, match="one axis only; steps"):
        make_plan("t2i", "tiny-kd22", {}, [("steps", "1,2"), ("steps", "3")])


def test_the_grid_image_is_the_cells_plus_label_margins_with_the_labels_drawn():
    cells = [Image.new("RGB", (64, 64), (255, 0, 0)) for _ in range(6)]
    sheet = make_grid(cells, ["steps: 2", "steps: 3"], ["seed: 1", "seed: 2", "seed: 3"])
    pixels = np.asarray(sheet)
    red = np.all(pixels == (255, 0, 0), axis=-1)
    rows, cols = np.nonzero(red)
    top, left = rows.min(), cols.min()
    assert (rows.max() - top + 1, cols.max() - left + 1) == (3 * 64, 2 * 64), "the cells, edge to edge"
    assert top > 0 and left > 0, "label margins above and left"
    assert sheet.size == (left + 2 * 64, top + 3 * 64)
    assert (pixels[:top, left:] < 128).any(), "the X labels are drawn above the cells"
    assert (pixels[top:, :left] < 128).any(), "the Y labels are drawn left of the cells"

    two_z = make_grid([None, *cells[:3]], ["a", "b"], None, ["z one", "z two"])
    assert two_z.width > 2 * 2 * 64, "one grid per Z value, side by side"


def test_long_labels_wrap_inside_their_column():
    sheet = make_grid([Image.new("RGB", (64, 64))] * 2, ["a very long label that cannot fit", "b"])
    assert sheet.width == 128 and sheet.height > 64 + 40, "the label wraps onto more lines, not wider"


def test_a_2x3_grid_runs_every_cell_and_saves_a_grid_whose_plan_restores(engine, output_dir):
    plan = make_plan("t2i", "tiny-kd22", dict(SMALL), [("steps", "1,2"), ("seed", "1-3")])
    run = run_grid(engine, plan)

    cells = run.cell_paths()
    assert len(cells) == 6 and all(cells)
    assert [read_image_metadata(p)["seed"] for p in cells] == [1, 1, 2, 2, 3, 3]
    assert [read_image_metadata(p)["params"]["steps"] for p in cells] == [1, 2, 1, 2, 1, 2]
    assert run.path.parent.parent == output_dir / "grids"
    with Image.open(run.path) as sheet:
        assert sheet.width > 2 * 64 and sheet.height > 3 * 64
    grid = read_image_metadata(run.path)["grid"]
    assert grid["axes"] == [{"name": "steps", "values": "1,2"}, {"name": "seed", "values": "1-3"}]
    assert grid["cells"] == cells and grid["complete"] is True

    again = plan_from_grid(run.path)
    assert (again.task, again.model_id, again.shape) == ("t2i", "tiny-kd22", (2, 3, 1))
    assert [c.params for c in again.cells()] == [c.params for c in plan.cells()]
    with pytest.raises(InvalidParams, match="not a Kubin grid"):
        plan_from_grid(cells[0])


def test_a_cancelled_grid_saves_the_cells_made_and_leaves_the_rest_grey(engine):
    plan = make_plan("t2i", "tiny-kd22", dict(SMALL), [("seed", "1-3")])
    with StepGate() as gate:  # holds the second cell inside its first step
        run = start_grid(
            engine,
            plan,
            submit=lambda cell: engine.submit(
                Job("t2i", cell.model_id, cell.params), subscriber=gate if cell.x == 1 else None
            ),
        )
        assert len(run.handles) == 3
        gate.wait_reached()
        run.cancel(engine)
    path = save_grid(run, engine.output_dir)

    grid = read_image_metadata(path)["grid"]
    assert grid["cells"][0] and grid["cells"][1:] == [None, None] and grid["complete"] is False
    with Image.open(path) as sheet:
        assert (np.asarray(sheet) == (200, 200, 200)).all(axis=-1).sum() >= 2 * 64 * 64, "two grey cells"

    nothing = start_grid(engine, make_plan("t2i", "tiny-kd22", dict(SMALL), [("seed", "1-2")]))
    nothing.cancel(engine)
    assert save_grid(nothing, engine.output_dir) is None, "no grid when no cell was made"


def test_a_lora_weight_axis_takes_the_adapters_name_then_its_weights():
    axis = parse_axis("t2i", "lora", "styles/ink, 0-1 [3]")
    assert (axis.name, axis.steps, axis.labels) == (
        "LoRA weight", [0.0, 0.5, 1.0], ["styles/ink: 0", "styles/ink: 0.5", "styles/ink: 1"]
    )  # fmt: skip
    assert axis.apply({"loras": ["styles/ink:0.2", "glow"]}, 0.5)["loras"] == ["glow", "styles/ink:0.5"]
    with pytest.raises(InvalidParams, match=r"needs the adapter's name, then its weights"):
        parse_axis("t2i", "LoRA weight", "ink")
    with pytest.raises(InvalidParams, match=r"X axis \(LoRA weight\): 'strong' is not a weight"):
        parse_axis("t2i", "LoRA weight", "ink, strong")
    assert "LoRA weight" not in axis_choices("t2mesh")
