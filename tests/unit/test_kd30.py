"""Kandinsky 3.0 on tiny-kd30, through the engine and the command line, as a user runs it.

Text to image and image to image give the images asked for, saved with their parameters and none of the
prior's; a seed gives the same pixels again, in a batch, from a saved model folder and with the text encoder
freed; every offered scheduler paints; progress counts exactly the steps that run; cancel stops within a
step; in fp16 a hub repo loads its fp16 weight files.
"""

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import kubin_generate
from PIL import Image

from kubin.engine import DONE, Engine, Job
from kubin.errors import InvalidParams, UnknownModel, WeightsMissing
from kubin.models import kandinsky3 as kd30_diffusers
from kubin.models.manager import ModelManager
from kubin.models.registry import resolve_model
from kubin.outputs import read_image_metadata
from kubin.runtime.device import Placement
from kubin.runtime.memory import MemoryOptions

MODEL = "tiny-kd30"
SMALL = {"steps": 3, "seed": 1}
PRIOR_ONLY = {"negative_prior_prompt", "prior_steps", "prior_guidance_scale", "hint_image"}


@pytest.fixture(scope="module")
def manager(fresh_manager):
    """This module's model in a manager of its own, so the session's tiny-kd22 stays loaded."""
    return fresh_manager


@pytest.fixture(scope="module")
def saved_folder(manager, tmp_path_factory) -> Path:
    return manager.save(MODEL, tmp_path_factory.mktemp("saved") / MODEL)


def job(task: str, model: str = MODEL, **values) -> Job:
    return Job(task, model, {"prompt": "a red cat", **SMALL, **values})


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_the_registry_knows_kd30_its_repo_and_its_tiny_twin():
    real, tiny = resolve_model("kd30"), resolve_model(MODEL)

    assert (real.family, real.implementation, real.module) == (
        "kd30",
        "diffusers",
        "kubin.models.families.kd30.model",
    )
    assert real.sources == {"pipeline": "kandinsky-community/kandinsky-3"}
    assert real.tasks == tiny.tasks == ("t2i", "i2i")
    assert real.defaults == {
        "t2i": {"width": 1024, "height": 1024, "steps": 25, "guidance_scale": 3.0},
        "i2i": {"steps": 25, "guidance_scale": 3.0, "strength": 0.75},
    }
    assert tiny.defaults["t2i"]["width"] == tiny.defaults["t2i"]["height"] == 64
    assert set(real.unused_params) == set(tiny.unused_params) == PRIOR_ONLY
    assert real.features == () and tiny.tiny and not real.tiny


@pytest.mark.parametrize("task", ["t2i", "i2i"])
def test_a_batch_gives_pngs_of_the_asked_size_with_their_parameters_and_none_of_a_prior(engine, photo, task):
    values = {"init_image": photo} if task == "i2i" else {"width": 128, "height": 64}
    handle = engine.run(job(task, batch_size=2, negative_prompt="blurry", **values))

    assert handle.state == DONE and handle.error is None
    assert [r.seed for r in handle.results] == [1, 2]
    for result in handle.results:
        with Image.open(result.path) as image:
            assert image.size == (result.width, result.height) == (128, 64)  # 100x70 snaps to 128x64
            text = image.text["parameters"]
        saved = read_image_metadata(result.path)
        assert (saved["model"], saved["family"], saved["task"], saved["scheduler"]) == (
            MODEL,
            "kd30",
            task,
            "DDPM",
        )
        assert saved["params"]["negative_prompt"] == "blurry" and saved["params"]["steps"] == 3
        assert not PRIOR_ONLY & set(saved["params"])
        assert "Prior" not in text and "Steps: 3" in text
    assert not np.array_equal(pixels(handle.results[0].path), pixels(handle.results[1].path))


def test_image_to_image_runs_at_the_asked_size_and_follows_the_init_image(engine, photo):
    tall = engine.run(job("i2i", init_image=photo, width=64, height=128))
    other = Image.fromarray(np.full((70, 100, 3), 200, dtype=np.uint8))
    other_path = Path(photo).with_name("grey.png")
    other.save(other_path)
    from_other = engine.run(job("i2i", init_image=str(other_path), width=64, height=128))

    assert (tall.results[0].width, tall.results[0].height) == (64, 128)
    assert Image.open(tall.results[0].path).size == (64, 128)
    assert not np.array_equal(pixels(tall.results[0].path), pixels(from_other.results[0].path))


def test_the_same_seed_gives_the_same_pixels_alone_or_in_a_batch(engine):
    first = engine.run(job("t2i", seed=7))
    again = engine.run(job("t2i", seed=7))
    other = engine.run(job("t2i", seed=8))
    batch = engine.run(job("t2i", seed=6, batch_size=2))  # seeds 6 and 7

    assert np.array_equal(pixels(first.results[0].path), pixels(again.results[0].path))
    assert not np.array_equal(pixels(first.results[0].path), pixels(other.results[0].path))
    assert batch.results[1].seed == 7
    assert np.array_equal(pixels(batch.results[1].path), pixels(first.results[0].path))


@pytest.mark.parametrize("task", ["t2i", "i2i"])
def test_every_offered_scheduler_paints_and_reports_every_step(engine, manager, photo, task):
    offered = manager.get(MODEL).schedulers(task)
    assert offered == list(resolve_model(MODEL).schedulers) == list(resolve_model("kd30").schedulers)
    assert offered[0] == "DDPM"  # the model's own first
    assert not [name for name in offered if "Karras" in name]

    values = {"init_image": photo, "strength": 0.45} if task == "i2i" else {}
    for name in offered:
        handle = engine.run(job(task, scheduler=name, steps=7, **values))

        assert handle.state == DONE, name
        [result] = handle.results
        assert result.meta["scheduler"] == name
        assert handle.step == handle.total_steps == (3 if task == "i2i" else 7), name  # int(7 * 0.45) = 3
        assert pixels(result.path).std() > 1.0, f"{name} gave a flat image"  # NaN latents give one colour


@pytest.mark.parametrize(
    ("task", "values", "per_batch"),
    [
        ("t2i", {"steps": 5}, 5),
        ("i2i", {"steps": 10, "strength": 0.3}, 3),  # image to image runs int(steps * strength) steps
        ("i2i", {"steps": 4, "strength": 0.75}, 3),
        ("i2i", {"steps": 6, "strength": 1.0}, 6),
    ],
)
def test_progress_counts_exactly_the_steps_that_run(engine, photo, task, values, per_batch):
    if task == "i2i":
        values = {**values, "init_image": photo}
    handle = engine.run(job(task, batch_count=2, batch_size=2, prior_steps=9, **values))

    assert handle.total_steps == 2 * per_batch  # no prior steps, whatever prior_steps says
    assert handle.step == handle.total_steps
    assert handle.phase == "denoise"


def test_an_unknown_scheduler_is_a_clear_error(engine, manager):
    with pytest.raises(InvalidParams, match=r"^Scheduler 'Heun' is not available for Kandinsky 3\.0 \(tiny"):
        engine.submit(job("t2i", scheduler="Heun"))
    with pytest.raises(InvalidParams, match=r"^Scheduler 'DPM\+\+ 2M Karras' is not available"):
        engine.submit(job("t2i", scheduler="DPM++ 2M Karras"))

    # The model itself refuses too (a folder model or an API call that skips the engine's check).
    model = manager.get(MODEL)
    params = SimpleNamespace(scheduler="Euler", steps=2, guidance_scale=3.0, prompt="x", negative_prompt="")
    with pytest.raises(InvalidParams, match=r"choose one of DDPM, DDIM, DPM\+\+ 2M, DPM\+\+ SDE\.$"):
        model.generate("t2i", params, None, [1], lambda phase, step: None)


@pytest.fixture(scope="module")
def freeing_manager():
    """tiny-kd30 with free_text_encoder: the prompt is encoded first, then the encoder goes to the CPU."""
    manager = ModelManager(device="cpu", dtype="fp32", memory=MemoryOptions(free_text_encoder=True))
    yield manager
    manager.unload()


@pytest.mark.parametrize(
    ("task", "values"),
    [
        ("t2i", {"batch_size": 2, "negative_prompt": "blurry", "width": 128}),
        ("t2i", {"guidance_scale": 1.0}),  # no classifier-free guidance: no negative embeddings
        ("i2i", {"batch_size": 2, "strength": 0.75}),
    ],
)
def test_freeing_the_text_encoder_gives_the_same_pixels(
    engine, freeing_manager, output_dir, photo, monkeypatch, task, values
):
    if task == "i2i":
        values = {**values, "init_image": photo}
    events = []
    release = kd30_diffusers.release_text_encoders

    def recording_release(pipe, *args):
        events.append("encoder released")
        release(pipe, *args)

    monkeypatch.setattr(kd30_diffusers, "release_text_encoders", recording_release)
    normal = engine.run(job(task, seed=5, **values))
    assert events == []  # the normal path never frees the encoder

    freeing = Engine(freeing_manager, output_dir / "freeing")
    try:
        handle = freeing.run(job(task, seed=5, **values))
    finally:
        freeing.close(wait=True)

    assert handle.state == DONE
    assert events == ["encoder released"]
    model = freeing_manager.get(MODEL)
    assert model.pipe.text_encoder.device.type == "cpu"
    for a, b in zip(normal.results, handle.results, strict=True):
        assert np.array_equal(pixels(a.path), pixels(b.path))


def test_freeing_the_text_encoder_releases_it_before_the_unet_runs(freeing_manager, monkeypatch):
    from kubin.params import Text2ImageParams
    from kubin.tasks import prepare

    events = []
    release = kd30_diffusers.release_text_encoders
    monkeypatch.setattr(
        kd30_diffusers,
        "release_text_encoders",
        lambda pipe, *a: (events.append("released"), release(pipe, *a)),
    )
    model = freeing_manager.get(MODEL)
    params = Text2ImageParams(prompt="a red cat", width=64, height=64, steps=2)

    model.generate("t2i", params, prepare(params), [1], lambda phase, step: events.append(f"step {step}"))

    assert events == ["released", "step 0", "step 1"]


def test_a_saved_model_folder_loads_back_offline_and_gives_the_same_pixels(engine, saved_folder, photo):
    assert sorted(p.name for p in saved_folder.iterdir()) == ["kubin.json", "pipeline"]
    info = json.loads((saved_folder / "kubin.json").read_text())
    assert info["saved_from"] == MODEL and info["defaults"] == json.loads(
        json.dumps(resolve_model(MODEL).defaults)
    )
    spec = resolve_model(str(saved_folder))
    assert (spec.family, spec.module, spec.tasks) == (
        "kd30",
        "kubin.models.families.kd30.model",
        ("t2i", "i2i"),
    )
    assert spec.sources == {"pipeline": str(saved_folder / "pipeline")}
    assert spec.defaults["t2i"]["width"] == 64  # the tiny model's defaults came along

    for task, values in (("t2i", {}), ("i2i", {"init_image": photo})):
        from_registry = engine.run(job(task, seed=11, **values))
        from_folder = engine.run(job(task, str(saved_folder), seed=11, **values))

        assert from_folder.results[0].meta["model"] == str(saved_folder.resolve())
        assert not PRIOR_ONLY & set(from_folder.results[0].meta["params"])
        assert np.array_equal(pixels(from_registry.results[0].path), pixels(from_folder.results[0].path))


def test_a_folder_with_a_pipeline_kubin_cannot_load_is_a_clear_error(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "model_index.json").write_text(json.dumps({"_class_name": "FancyPipeline"}))

    with pytest.raises(UnknownModel, match=r"holds a FancyPipeline, which Kubin cannot load yet\.$"):
        resolve_model(str(tmp_path))
    with pytest.raises(UnknownModel, match=r"or a pipeline/ subfolder, in diffusers layout"):
        resolve_model(str(tmp_path / "pipeline"))


# --- fp16 weights of a hub repo ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def variant_folder(manager, tmp_path_factory) -> Path:
    """A pipeline folder like a hub snapshot: full-precision files, and fp16 files whose UNet differs."""
    import torch

    folder = tmp_path_factory.mktemp("snapshot") / "kandinsky-3"
    pipe = manager.get(MODEL).pipe
    pipe.save_pretrained(folder)
    with torch.no_grad():
        original = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
        for value in pipe.unet.parameters():
            value.fill_(0.5)
        pipe.save_pretrained(folder, variant="fp16")
        pipe.unet.load_state_dict(original)
    return folder


def _fake_hub(monkeypatch, folder: Path) -> list[dict]:
    """diffusers' hub download answering with `folder`, recording how it was asked."""
    from diffusers import DiffusionPipeline

    calls = []

    def download(source, **kwargs):
        calls.append({"source": source, **kwargs})
        return str(folder)

    monkeypatch.setattr(DiffusionPipeline, "download", staticmethod(download))
    return calls


def _unet_values(model) -> set[float]:
    return {float(v) for p in model.pipe.unet.parameters() for v in p.detach().flatten()[:3]}


def test_in_fp16_a_hub_repo_loads_its_fp16_files(monkeypatch, variant_folder):
    calls = _fake_hub(monkeypatch, variant_folder)
    spec = resolve_model("kd30")

    model = kd30_diffusers.load(spec, spec.sources, Placement("cpu", "fp16"))

    assert calls[0] == {
        "source": "kandinsky-community/kandinsky-3",
        "variant": "fp16",
        "local_files_only": True,
    }
    assert str(model.pipe.unet.dtype) == "torch.float16"
    assert _unet_values(model) == {0.5}  # the fp16 files, not the full-precision ones


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_offline_without_the_weights_is_one_clear_sentence_naming_the_repo(dtype):
    spec = resolve_model("kd30")

    with pytest.raises(
        WeightsMissing, match=r"^Model kd30 needs kandinsky-community/kandinsky-3, which is not in"
    ):
        kd30_diffusers.load(spec, spec.sources, Placement("cpu", dtype))


def test_in_fp32_a_hub_repo_loads_its_full_precision_files(monkeypatch, variant_folder):
    calls = _fake_hub(monkeypatch, variant_folder)
    spec = resolve_model("kd30")

    model = kd30_diffusers.load(spec, spec.sources, Placement("cpu", "fp32"))

    assert all("variant" not in call for call in calls)
    assert str(model.pipe.unet.dtype) == "torch.float32"
    assert _unet_values(model) != {0.5}


def test_in_fp16_a_local_folder_without_fp16_files_loads_normally(manager, saved_folder):
    spec = resolve_model(str(saved_folder))

    model = kd30_diffusers.load(spec, spec.sources, Placement("cpu", "fp16"))

    assert str(model.pipe.unet.dtype) == "torch.float16"
    loaded = manager.get(MODEL).pipe.unet.state_dict()
    for name, value in model.pipe.unet.state_dict().items():
        assert np.allclose(value.float().numpy(), loaded[name].numpy(), atol=1e-2), name


# --- the command line ----------------------------------------------------------------------------------
def generate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return kubin_generate(
        tmp_path, "--model", MODEL, "--prompt", "a red cat", "--steps", "4", *args, timeout=180
    )


@pytest.mark.slow  # a fresh `kubin generate` process loads tiny-kd30: 30-50 s on a 2-core CPU
def test_the_command_line_paints_text_to_image_and_image_to_image(tmp_path, photo):
    out = tmp_path / "out"
    t2i = generate(tmp_path, "--task", "t2i", "--width", "128", "--height", "64", "--seed", "42",
                         "--output-dir", str(out))  # fmt: skip
    i2i = generate(tmp_path, "--task", "i2i", "--init-image", photo, "--strength", "0.5", "--seed", "42",
                         "--output-dir", str(out))  # fmt: skip

    for done, task, size in ((t2i, "t2i", (128, 64)), (i2i, "i2i", (128, 64))):
        assert done.returncode == 0, done.stderr
        [line] = [json.loads(text) for text in done.stdout.splitlines() if text.strip()]
        assert (line["seed"], line["model"], line["task"]) == (42, MODEL, task)
        path = Path(line["path"])
        assert path.is_file() and path.is_relative_to(out / task)
        with Image.open(path) as image:
            assert image.size == size
        saved = read_image_metadata(path)
        assert saved["family"] == "kd30" and saved["params"]["steps"] == 4
        assert not PRIOR_ONLY & set(saved["params"])
    assert read_image_metadata(Path(json.loads(i2i.stdout)["path"]))["params"]["strength"] == 0.5
