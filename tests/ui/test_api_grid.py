"""The X/Y/Z grid over the REST API: POST /kubin/api/v1/tasks/t2i/grid runs a cell per combination and
answers the cells and the grid, whose PNG holds the plan; a bad axis value is refused before any job."""

from __future__ import annotations

import io
import json

from PIL import Image

API = "/kubin/api/v1"
SMALL = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2}


def test_a_2x3_grid_answers_6_cells_and_a_grid_that_holds_the_plan(http):
    reply = http.post(
        f"{API}/tasks/t2i/grid",
        json={
            "params": SMALL,
            "axes": [{"name": "steps", "values": "1,2"}, {"name": "seed", "values": "1-3"}],
        },
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()

    assert len(answer["jobs"]) == 6 and {j["state"] for j in answer["jobs"]} == {"done"}
    assert [j["seed"] for j in answer["jobs"]] == [1, 1, 2, 2, 3, 3]
    assert len(answer["cells"]) == 6 and all(answer["cells"])
    grid = http.get(answer["grid"])
    assert grid.status_code == 200
    image = Image.open(io.BytesIO(grid.content))
    assert image.width > 2 * 64 and image.height > 3 * 64
    plan = json.loads(image.text["kubin"])["grid"]
    assert plan["axes"] == [{"name": "steps", "values": "1,2"}, {"name": "seed", "values": "1-3"}]
    assert plan["base"]["prompt"] == "a red cat" and len(plan["cells"]) == 6
    assert answer["plan"]["axes"] == plan["axes"]


def test_a_bad_axis_value_is_refused_naming_it_and_nothing_is_queued(http, kubin_server):
    before = kubin_server.saved_images()
    reply = http.post(
        f"{API}/tasks/t2i/grid",
        json={"params": SMALL, "axes": [{"name": "steps", "values": "2,0"}]},
    )
    assert reply.status_code in (400, 422)
    assert "X axis (steps): value 0 is not allowed" in reply.text
    too_many = http.post(
        f"{API}/tasks/t2i/grid",
        json={
            "params": SMALL,
            "axes": [{"name": "steps", "values": "1-11"}, {"name": "seed", "values": "1-10"}],
        },
    )
    assert "would have 110 cells" in too_many.text
    assert kubin_server.saved_images() == before
