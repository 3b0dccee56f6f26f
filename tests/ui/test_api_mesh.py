"""The 3D tab through its Gradio API (/t2mesh, /i2mesh) on tiny-shap-e: the server saves a .glb with its
copies, preview and sidecar, and returns the mesh for the viewer, the turntable and the three downloads;
user mistakes come back as clear errors. Each call renders an object (seconds here), so there are few."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trimesh
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

T2MESH = {
    "model_id": "tiny-shap-e", "prompt": "a red chair", "guidance_scale": 15.0, "steps": 2, "frame_size": 32,
    "mesh_resolution": 32, "seed": 11, "batch_count": 1,
}  # fmt: skip


def saved_meshes(server, task: str) -> set[Path]:
    return {p for p in (server.output_dir / task).glob("*/*.glb") if not p.name.startswith(".")}


@pytest.mark.slow  # Shap-E renders an object: 20-30 s on a 2-core CPU
def test_text_to_3d_returns_the_mesh_its_turntable_and_three_downloads(api_client, kubin_server):
    before = saved_meshes(kubin_server, "t2mesh")

    model, preview, downloads, info, details = api_client.predict(**T2MESH, api_name="/t2mesh")

    (glb,) = saved_meshes(kubin_server, "t2mesh") - before
    assert glb.name.endswith("-11.glb")  # <counter>-<seed>.glb
    meta = json.loads(glb.with_suffix(".json").read_text())
    assert (meta["params"]["prompt"], meta["seed"], meta["model"], meta["task"]) == (
        "a red chair", 11, "tiny-shap-e", "t2mesh",
    )  # fmt: skip
    # What the client got is what the server saved: the viewer's .glb, the GIF, and the three files.
    assert Path(model).suffix == ".glb" and Path(model).read_bytes() == glb.read_bytes()
    assert len(trimesh.load(model, force="mesh").vertices) == meta["vertices"] > 0
    with Image.open(preview) as gif:
        assert gif.is_animated and gif.size == (32, 32)
    assert sorted(Path(p).suffix for p in downloads) == [".glb", ".obj", ".ply"]
    assert "1 of 1 3D object(s)" in info and f"{meta['vertices']} vertices" in info
    assert details["outputs"][0]["file"] == str(glb) and details["outputs"][0]["ply"] == str(
        glb.with_suffix(".ply")
    )


@pytest.mark.slow
def test_image_to_3d_takes_an_uploaded_picture(api_client, kubin_server, tmp_path):
    picture = tmp_path / "object.png"
    Image.new("RGB", (64, 48), (30, 120, 200)).save(picture)
    before = saved_meshes(kubin_server, "i2mesh")

    model, preview, downloads, info, details = api_client.predict(
        model_id="tiny-shap-e", init_image=handle_file(str(picture)), guidance_scale=3.0, steps=2,
        frame_size=32, mesh_resolution=32, seed=4, batch_count=1, api_name="/i2mesh",
    )  # fmt: skip

    (glb,) = saved_meshes(kubin_server, "i2mesh") - before
    meta = json.loads(glb.with_suffix(".json").read_text())
    assert (meta["task"], meta["seed"], meta["params"]["guidance_scale"]) == ("i2mesh", 4, 3.0)
    assert (kubin_server.output_dir / meta["inputs"]["init_image"]).is_file()  # the picture is kept
    assert Path(model).read_bytes() == glb.read_bytes() and Path(preview).suffix == ".gif"
    assert len(downloads) == 3


@pytest.mark.parametrize(
    ("api_name", "change", "message"),
    [
        ("/t2mesh", {"frame_size": 48}, "Preview size must be a multiple of 32"),
        ("/t2mesh", {"prompt": ""}, "Text to 3D needs a prompt"),
        ("/t2mesh", {"model_id": "tiny-kd22"}, "cannot do t2mesh"),
    ],
)
def test_mistakes_come_back_as_one_clear_sentence(api_client, kubin_server, api_name, change, message):
    before = saved_meshes(kubin_server, "t2mesh")

    with pytest.raises(AppError, match=message):
        api_client.predict(**(T2MESH | change), api_name=api_name)

    assert saved_meshes(kubin_server, "t2mesh") == before


def test_image_to_3d_without_a_picture_is_refused(api_client):
    with pytest.raises(AppError, match="Image to 3D needs an init image"):
        api_client.predict(
            model_id="tiny-shap-e", init_image=None, guidance_scale=3.0, steps=2, frame_size=32,
            mesh_resolution=32, seed=4, batch_count=1, api_name="/i2mesh",
        )  # fmt: skip
