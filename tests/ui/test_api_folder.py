"""A folder batch over the REST API: POST /kubin/api/v1/tasks/i2i/folder runs every image of a server
folder, answers each job with the image it came from, the files it skipped and where the outputs went."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

API = "/kubin/api/v1"
SMALL = {"prompt": "a red cat", "steps": 2, "prior_steps": 2, "strength": 0.5}


def test_a_folder_runs_each_image_and_answers_the_outputs_named_as_them(http, tmp_path):
    pictures = tmp_path / "shoot"
    pictures.mkdir()
    for i, name in enumerate(["two.png", "one.png"]):
        Image.new("RGB", (64, 64), (60 * i, 120, 30)).save(pictures / name)
    (pictures / "list.csv").write_text("a,b\n")

    reply = http.post(f"{API}/tasks/i2i/folder", json={"input_dir": str(pictures), "params": SMALL})
    assert reply.status_code == 200, reply.text
    answer = reply.json()

    assert [Path(s).name for s in answer["sources"]] == ["one.png", "two.png"]
    assert answer["skipped"] == [{"file": "list.csv", "why": "not an image Pillow can read"}]
    assert Path(answer["output_dir"]).name == "shoot"
    assert [j["state"] for j in answer["jobs"]] == ["done", "done"]
    for source, job in zip(answer["sources"], answer["jobs"], strict=True):
        (result,) = job["results"]
        assert Path(result["path"]).name == Path(source).name
        image = Image.open(io.BytesIO(http.get(result["url"]).content))
        assert json.loads(image.text["kubin"])["params"]["init_image"] == source


def test_a_folder_that_cannot_run_is_refused_with_why(http, tmp_path, kubin_server):
    before = kubin_server.saved_images()
    missing = http.post(
        f"{API}/tasks/i2i/folder", json={"input_dir": str(tmp_path / "nope"), "params": SMALL}
    )
    assert missing.status_code == 422
    assert "does not exist" in missing.text
    no_masks = http.post(
        f"{API}/tasks/inpaint/folder", json={"input_dir": str(tmp_path), "params": {"prompt": "x"}}
    )
    assert no_masks.status_code == 422
    assert "Inpainting a folder needs a masks folder" in no_masks.text
    assert http.post(f"{API}/tasks/t2i/folder", json={"input_dir": str(tmp_path)}).status_code in (404, 405)
    assert kubin_server.saved_images() == before
