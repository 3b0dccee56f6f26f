"""Shap-E on tiny-shap-e, through the engine and the command line, as a user runs it.

Text to 3D and image to 3D each save a .glb (what 3D viewers open) with .ply and .obj copies, a turntable GIF
and a JSON sidecar that any of those files leads back to; a seed gives the same object again. Bad input fails
at submit with a message for the user. Tiny Shap-E renders slowly (seconds per object on one core), so the
objects are made once per module and every test reads them.
"""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh
from cli_helpers import kubin_generate
from PIL import Image

from kubin.engine import DONE, FAILED, Engine, Job
from kubin.errors import InvalidParams, UnsupportedTask, WeightsMissing
from kubin.models.families.shap_e.model import marching_cubes_tables
from kubin.models.manager import ModelManager
from kubin.models.registry import resolve_model
from kubin.outputs import Mesh, read_output_metadata, save_mesh

STEPS = 2
SEED = 7
CLI = ["--model", "tiny-shap-e", "--task", "t2mesh", "--prompt", "a chair", "--steps", "2"]


@pytest.fixture(scope="module")
def manager():
    """tiny-shap-e in a manager of its own, so the session's tiny-kd22 stays loaded."""
    manager = ModelManager(device="cpu", dtype="fp32")
    yield manager
    manager.unload()


@pytest.fixture(scope="module")
def output_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mesh-output")


@pytest.fixture(scope="module")
def engine(manager, output_root):
    engine = Engine(manager, output_root)
    yield engine
    engine.close(wait=True)


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("pictures") / "red-ball.png"
    image = Image.new("RGB", (96, 64), (255, 255, 255))
    image.paste((200, 30, 30), (24, 8, 72, 56))
    image.save(path)
    return str(path)


@pytest.fixture(scope="module")
def from_text(engine):
    return engine.run(
        Job("t2mesh", "tiny-shap-e", {"prompt": "a wooden chair", "steps": STEPS, "seed": SEED})
    )


@pytest.fixture(scope="module")
def from_image(engine, picture):
    return engine.run(Job("i2mesh", "tiny-shap-e", {"init_image": picture, "steps": STEPS, "seed": SEED}))


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> SimpleNamespace:
    """The command from the README, run once: `kubin generate --model tiny-shap-e --task t2mesh ...` (in this
    process, through the same entry point; test_cli.py starts real `python -m kubin` processes)."""
    workdir = tmp_path_factory.mktemp("cli")
    out = workdir / "out"
    done = kubin_generate(workdir, *CLI, "--output-dir", str(out), timeout=600)
    return SimpleNamespace(done=done, out=out)


def load_mesh(path) -> trimesh.Trimesh:
    return trimesh.load(str(path), force="mesh", process=False)


def gif_frames(path) -> list[np.ndarray]:
    frames = []
    with Image.open(path) as gif:
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")))
    return frames


# --- the command line ------------------------------------------------------------------------------
@pytest.mark.slow  # the tests that use `cli`, `from_text` or `from_image` wait for Shap-E: 20-40 s each
def test_the_command_line_writes_a_glb_with_its_preview_and_copies_and_prints_them_as_json(cli):
    assert cli.done.returncode == 0, cli.done.stderr
    [line] = [json.loads(text) for text in cli.done.stdout.splitlines() if text.strip()]
    assert (line["model"], line["task"]) == ("tiny-shap-e", "t2mesh")

    glb = Path(line["path"])
    assert glb.suffix == ".glb" and glb.is_file() and glb.stat().st_size > 0
    assert glb.is_relative_to(cli.out / "t2mesh")
    assert len(load_mesh(glb).vertices) > 0
    preview = Path(line["preview"])
    assert preview.suffix in (".gif", ".mp4") and preview.is_file() and preview.stat().st_size > 0
    for kind in ("ply", "obj"):  # the other formats beside it, also listed in the JSON
        copy = glb.with_suffix(f".{kind}")
        assert copy.is_file() and line["files"][kind] == str(copy)
        assert len(load_mesh(copy).vertices) == len(load_mesh(glb).vertices) == line["vertices"]


# --- text to 3D ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_text_to_3d_saves_a_mesh_in_three_formats_with_a_turntable_and_a_sidecar(from_text):
    assert from_text.state == DONE and from_text.error is None
    [result] = from_text.results
    folder = result.path.parent
    assert result.path.name == f"00001-{SEED}.glb"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"00001-{SEED}.{ext}" for ext in ("gif", "glb", "json", "obj", "ply")
    ]  # and no temporary files left behind
    assert result.files == {kind: result.path.with_suffix(f".{kind}") for kind in ("glb", "ply", "obj")}
    mesh = load_mesh(result.path)
    assert len(mesh.vertices) == result.meta["vertices"] > 0 and len(mesh.faces) == result.meta["faces"] > 0
    assert mesh.visual.kind == "vertex"  # Shap-E's colours travel with the vertices

    with Image.open(result.preview) as gif:  # 20 views around the object at the tiny default size
        assert gif.is_animated and (gif.n_frames, gif.size) == (20, (32, 32))
    frames = gif_frames(result.preview)
    assert not np.array_equal(frames[0], frames[5])  # it turns

    as_json = result.as_json()
    assert (as_json["path"], as_json["preview"]) == (str(result.path), str(result.preview))


@pytest.mark.slow
def test_every_file_of_an_object_leads_back_to_its_parameters(from_text):
    [result] = from_text.results
    for path in (result.path, result.files["ply"], result.files["obj"], result.preview):
        meta = read_output_metadata(path)
        assert (meta["task"], meta["model"], meta["seed"]) == ("t2mesh", "tiny-shap-e", SEED)
        assert meta["params"]["prompt"] == "a wooden chair"
        assert (meta["params"]["steps"], meta["params"]["guidance_scale"]) == (STEPS, 15.0)
        assert (meta["params"]["frame_size"], meta["params"]["mesh_resolution"]) == (32, 32)  # tiny defaults
        assert (meta["vertices"], meta["frames"]) == (result.meta["vertices"], 20)
    json_file = result.path.with_suffix(".json")
    assert read_output_metadata(json_file) == read_output_metadata(result.path)

    json_file.rename(json_file.with_suffix(".moved"))
    try:
        with pytest.raises(InvalidParams, match="carries no generation parameters"):
            read_output_metadata(result.path)
    finally:
        json_file.with_suffix(".moved").rename(json_file)


@pytest.mark.slow
def test_progress_counts_the_denoising_steps_then_the_render_and_the_mesh(from_text):
    assert from_text.total_steps == STEPS + 2
    assert from_text.step == from_text.total_steps
    # While the turntable renders and the mesh is built (most of the time at full size), the stage says so.
    stages = [str(event.stage) for event in from_text.events(timeout=1) if event.kind == "progress"]
    assert stages == [*(f"Step {n}/{STEPS}" for n in range(1, STEPS)), "Rendering the turntable…",
                      "Building the mesh…", "Building the mesh…"]  # fmt: skip


# --- image to 3D -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_image_to_3d_makes_an_object_from_a_picture_and_keeps_the_picture(from_image, output_root, picture):
    assert from_image.state == DONE and from_image.error is None
    [result] = from_image.results
    assert result.path.suffix == ".glb" and result.path.is_relative_to(output_root / "i2mesh")
    assert len(load_mesh(result.path).vertices) > 0 and result.preview.is_file()
    meta = read_output_metadata(result.path)
    assert (meta["task"], meta["params"]["guidance_scale"]) == ("i2mesh", 3.0)  # Shap-E's image guidance
    stored = output_root / meta["inputs"]["init_image"]
    with Image.open(stored) as kept, Image.open(picture) as given:
        assert np.array_equal(np.asarray(kept.convert("RGB")), np.asarray(given.convert("RGB")))


# --- what the user gets wrong ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "values", "message"),
    [
        ("t2mesh", {"prompt": "a chair", "frame_size": 48}, r"Preview size must be a multiple of 32 .*got 48.*32 and 64"),
        ("t2mesh", {"prompt": "a chair", "frame_size": 16}, r"Preview size must be between 32 and 512 \(got 16\)"),
        ("t2mesh", {"prompt": "  "}, r"Text to 3D needs a prompt"),
        ("i2mesh", {}, r"Image to 3D needs an init image"),
        ("i2mesh", {"init_image": "/no/such/picture.png"}, r"Init image 'picture.png' does not exist"),
        ("t2mesh", {"prompt": "a chair", "mesh_resolution": 1024}, r"Mesh resolution must be between 16 and 256"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_at_submit_with_a_clear_message(engine, output_root, task, values, message):
    before = sorted(output_root.rglob("*"))
    with pytest.raises(InvalidParams, match=message):
        engine.submit(Job(task, "tiny-shap-e", values))
    assert sorted(output_root.rglob("*")) == before


def test_a_kandinsky_model_cannot_make_3d_and_shap_e_cannot_make_images(engine):
    with pytest.raises(UnsupportedTask, match="cannot do t2mesh"):
        engine.submit(Job("t2mesh", "tiny-kd22", {"prompt": "a chair"}))
    with pytest.raises(UnsupportedTask, match="cannot do t2i"):
        engine.submit(Job("t2i", "tiny-shap-e", {"prompt": "a chair"}))


def test_real_shap_e_offline_without_weights_names_the_repo_to_download(engine):
    spec = resolve_model("shap-e")
    assert spec.sources == {"t2mesh": "openai/shap-e", "i2mesh": "openai/shap-e-img2img"}
    assert (spec.defaults["t2mesh"]["guidance_scale"], spec.defaults["i2mesh"]["guidance_scale"]) == (
        15.0,
        3.0,
    )

    handle = engine.submit(Job("t2mesh", "shap-e", {"prompt": "a chair", "steps": 1}))
    handle.wait(120)

    assert handle.state == FAILED and isinstance(handle.error, WeightsMissing)
    assert "openai/shap-e" in str(handle.error) and "kubin download shap-e" in str(handle.error)


def test_a_saved_shap_e_folder_is_a_model_with_the_tasks_whose_pipelines_it_holds(manager, tmp_path):
    folder = manager.save("tiny-shap-e", tmp_path / "my-shap-e")

    assert {p.name for p in folder.iterdir()} == {"t2mesh", "i2mesh", "kubin.json"}
    spec = resolve_model(str(folder))
    assert (spec.module, spec.tasks, spec.tiny) == (
        "kubin.models.families.shap_e.model",
        ("t2mesh", "i2mesh"),
        False,
    )
    assert spec.sources == {"t2mesh": str(folder / "t2mesh"), "i2mesh": str(folder / "i2mesh")}
    assert spec.defaults["t2mesh"]["frame_size"] == 32  # the tiny model's own settings came along

    shutil.rmtree(folder / "i2mesh")
    assert resolve_model(str(folder)).tasks == ("t2mesh",)


# --- saving ----------------------------------------------------------------------------------------
def tetrahedron(**extra) -> Mesh:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float32)
    return Mesh(vertices, faces, colors, **extra)


def test_save_mesh_writes_glb_ply_obj_gif_and_json_under_one_name_with_z_up_turned_to_y_up(tmp_path):
    frames = [Image.new("RGB", (32, 32), (i * 10, 0, 0)) for i in range(20)]
    meta = {"seed": 3, "task": "t2mesh", "params": {"prompt": "a pyramid"}}

    first = save_mesh(tetrahedron(turntable=frames), tmp_path, "t2mesh", meta)
    second = save_mesh(tetrahedron(), tmp_path, "t2mesh", meta)

    assert first["glb"].name == "00001-3.glb" and second["glb"].name == "00002-3.glb"
    assert {p.suffix for p in first.values()} == {".glb", ".ply", ".obj", ".gif", ".json"}
    assert "preview" not in second  # no frames, no preview
    assert not [p for p in first["glb"].parent.iterdir() if p.name.startswith(".tmp-")]
    for kind in ("glb", "ply", "obj"):
        mesh = load_mesh(first[kind])
        assert len(mesh.vertices) == 4 and len(mesh.faces) == 4
        assert [0, 1, 0] in mesh.vertices.round(6).tolist()  # Shap-E's +Z up became +Y up
        assert [0, 0, -1] in mesh.vertices.round(6).tolist()
    assert read_output_metadata(first["obj"])["vertices"] == 4


def test_an_empty_mesh_is_refused_and_leaves_nothing_behind(tmp_path):
    empty = Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    with pytest.raises(InvalidParams, match="empty 3D object"):
        save_mesh(empty, tmp_path, "t2mesh", {"seed": 1})
    assert not list(tmp_path.rglob("*.*"))


# --- the marching-cubes tables the tiny renderer is built with ---------------------------------------
def test_the_marching_cubes_tables_close_a_sphere_with_outward_faces():
    from diffusers.pipelines.shap_e.renderer import MeshDecoder

    cases, masks = marching_cubes_tables()
    assert cases.shape == (256, 5, 3) and masks.shape == (256, 5)
    assert not masks[0].any() and not masks[255].any()  # all outside, all inside: no surface
    assert masks[1].sum() == 1 and masks[0b11].sum() == 2  # one corner: a triangle; an edge: a quad
    decoder = MeshDecoder()
    decoder.cases.copy_(torch.from_numpy(cases))
    decoder.masks.copy_(torch.from_numpy(masks))
    axis = torch.linspace(-1, 1, 33)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    field = 0.6 - (x**2 + y**2 + z**2).sqrt()  # inside (> 0) within radius 0.6

    out = decoder(field, torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([2.0, 2.0, 2.0]))

    sphere = trimesh.Trimesh(out.verts.numpy(), out.faces.numpy())
    assert sphere.is_watertight and sphere.is_winding_consistent
    assert sphere.volume == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=0.05)  # > 0: faces point outward
