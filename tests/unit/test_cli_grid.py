"""`kubin generate --xyz`: an X/Y/Z grid from the command line prints each cell's output with its place,
then the grid, whose PNG holds the plan; a bad axis is refused in one sentence before any job runs."""

import json
from pathlib import Path

from cli_helpers import run_in_process

from kubin.grid import plan_from_grid

GENERATE = ["--task", "t2i", "--prompt", "a red cat", "--width", "64", "--height", "64", "--steps", "2"]


def generate(tmp_path: Path, *args: str):
    (tmp_path / "user.yaml").write_text("")
    argv = ["generate", "--config", str(tmp_path / "user.yaml"), "--model", "tiny-kd22", *GENERATE]
    return run_in_process(
        tmp_path, [*argv, "--prior-steps", "2", "--output-dir", str(tmp_path / "out"), *args]
    )


def test_xyz_flags_make_every_cell_and_a_grid_that_restores_the_plan(tmp_path):
    done = generate(tmp_path, "--xyz", "steps=1,2", "--xyz", "seed=1-3")
    assert done.returncode == 0, done.stderr

    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    cells, last = lines[:-1], lines[-1]
    assert [(c["cell"], c["seed"]) for c in cells] == [([x, y, 0], y + 1) for y in range(3) for x in range(2)]
    assert (last["cells"], last["of"]) == (6, 6)
    plan = plan_from_grid(last["grid"])
    assert [(a.name, a.text) for a in plan.axes] == [("steps", "1,2"), ("seed", "1-3")]


def test_a_bad_xyz_value_is_one_sentence_and_nothing_is_made(tmp_path):
    done = generate(tmp_path, "--xyz", "steps=1,0")
    assert done.returncode == 2
    assert "X axis (steps): value 0 is not allowed" in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))
