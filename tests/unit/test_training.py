"""Training a LoRA on tiny-kd22 from a folder of 8 generated pictures, on the CPU: the loss falls, the adapter
is what the LoRA loader loads (and it changes the pixels), a run broken after a checkpoint resumes to the
very weights of an unbroken one, bad files are skipped and reported, a user's mistakes get clear errors,
and a run is a job of the engine's queue (a generation submitted meanwhile waits for it)."""

import json
import re

import numpy as np
import pytest
from PIL import Image
from training_helpers import FAST, make_pictures

from kubin.engine import Engine, Job
from kubin.errors import InvalidParams, UnknownModel
from kubin.models.lora import LoraLibrary
from kubin.training.dataset import scan_dataset
from kubin.training.loop import Trainer
from kubin.training.options import TrainingOptions
from kubin.training.runs import Trainings

KD22 = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2, "seed": 7}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    return make_pictures(tmp_path_factory.mktemp("pictures"))


@pytest.fixture(scope="module")
def studio(fresh_manager, tmp_path_factory):
    """An engine with a LoRA folder and training runs of its own."""
    root = tmp_path_factory.mktemp("studio")
    engine = Engine(fresh_manager, root / "output", loras=LoraLibrary(root / "lora"))
    engine.trainings = Trainings(engine, root / "training")
    yield engine
    engine.close(wait=True)


@pytest.fixture(scope="module")
def trained(studio, pictures):
    """A 40-step decoder adapter trained through the engine's queue, with a trigger word."""
    run = studio.trainings.start({**FAST, "data": str(pictures), "output": "squares", "steps": 40,
                                  "trigger": "sqzstyle", "checkpoint_every": 20})  # fmt: skip
    assert run.wait(300) and run.state == "done", run.error
    return run


def tiny_kd22(manager):
    from kubin.models.tiny import tiny_model_folder

    spec = manager.spec("tiny-kd22")
    return spec, {sub.name: str(sub) for sub in tiny_model_folder(spec.id).iterdir() if sub.is_dir()}


def pixels(result) -> np.ndarray:
    with Image.open(result.path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def test_forty_steps_lower_the_loss_and_the_adapter_records_what_it_was_trained_on(trained, studio):
    losses = [loss for _, loss in trained.losses]
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    found = {f.name: f for f in studio.loras.list()}["squares"]  # in the picker at once
    assert (found.family, found.part, found.rank, found.triggers) == ("kd22", "decoder", 4, ("sqzstyle",))
    meta = found.metadata
    assert meta["kubin.base_model"] == "tiny-kd22" and meta["kubin.steps"] == "40"
    assert meta["kubin.dataset_hash"] == trained.dataset.digest and len(meta["kubin.dataset_hash"]) == 16
    assert json.loads(meta["lora_adapter_metadata"])["r"] == 4


def test_the_trained_adapter_loads_through_the_lora_loader_and_changes_the_pixels(trained, studio):
    base = studio.run(Job("t2i", "tiny-kd22", KD22)).results[0]
    with_lora = studio.run(Job("t2i", "tiny-kd22", {**KD22, "loras": ["squares"]})).results[0]
    off_again = studio.run(Job("t2i", "tiny-kd22", KD22)).results[0]
    assert np.abs(pixels(base) - pixels(with_lora)).mean() > 1
    assert np.array_equal(pixels(base), pixels(off_again))
    assert with_lora.meta["loras"][0]["name"] == "squares"


def test_a_run_broken_after_a_checkpoint_resumes_to_the_weights_of_an_unbroken_run(
    fresh_manager, pictures, tmp_path
):
    from safetensors.torch import load_file

    spec, sources = tiny_kd22(fresh_manager)
    options = {**FAST, "data": str(pictures), "steps": 6, "checkpoint_every": 3, "batch_size": 1,
               "gradient_accumulation": 2, "lr_scheduler": "cosine", "warmup_steps": 2}  # fmt: skip

    def trainer(name):
        opts = TrainingOptions.from_dict({**options, "output": name})
        return Trainer(opts, spec, sources, tmp_path / "runs" / name, tmp_path / "lora")

    whole = trainer("whole").run()

    def crash(event):
        if event.kind == "step" and event.step == 5:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        trainer("broken").run(crash)
    assert [p.name for p in sorted((tmp_path / "runs" / "broken" / "checkpoints").iterdir())] == [
        "step-000003"
    ]
    resumed = trainer("broken").run(resume=True)
    a, b = load_file(str(whole.path)), load_file(str(resumed.path))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert resumed.losses == whole.losses


def test_a_broken_and_a_tiny_picture_are_skipped_and_reported_and_the_run_goes_on(studio, pictures, tmp_path):
    import shutil

    folder = shutil.copytree(pictures, tmp_path / "mixed")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.new("RGB", (16, 16)).save(folder / "tiny.png")
    (folder / "notes.md").write_text("not a picture")
    report = scan_dataset(folder, 64, trigger="sqz")
    assert len(report.items) == 8 and report.items[0].caption == "sqz, a square on ground 0"
    assert dict(report.skipped) == {"broken.png": "cannot be read: damaged or not an image (OSError)",
                                    "tiny.png": "too small: 16x16, at least 64 px a side"}  # fmt: skip
    run = studio.trainings.start({**FAST, "data": str(folder), "output": "mixed", "steps": 2})
    assert run.wait(120) and run.state == "done", run.error
    assert "skipped 2: broken.png (cannot be read" in run.notices[0]
    assert [s["file"] for s in run.as_json()["dataset"]["skipped"]] == ["broken.png", "tiny.png"]


def test_a_users_mistakes_get_clear_errors_before_the_run_is_queued(studio, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("a caption without its picture")
    start = lambda **values: studio.trainings.start({**FAST, "output": "x", "steps": 2, **values})  # noqa: E731
    with pytest.raises(InvalidParams, match="empty; put pictures"):
        start(data=str(empty))
    with pytest.raises(InvalidParams, match=r"holds no pictures \(1 other file"):
        start(data=str(texts))
    with pytest.raises(InvalidParams, match="does not exist"):
        start(data=str(tmp_path / "nowhere"))
    with pytest.raises(InvalidParams, match="has no part 'transformer' to train; it has: decoder, prior"):
        start(data=str(texts), target="transformer")
    with pytest.raises(InvalidParams, match="cannot be trained in Kubin yet"):
        start(data=str(texts), model="tiny-kd30")
    with pytest.raises(InvalidParams, match="must stay inside the LoRA folder"):
        start(data=str(texts), output="../outside")
    with pytest.raises(UnknownModel):
        start(data=str(texts), model="no-such-model")
    with pytest.raises(InvalidParams, match="no checkpoint of 'never' to resume"):
        studio.trainings.start({**FAST, "output": "never", "data": str(texts)}, resume=True)


def test_modules_the_part_lacks_fail_the_run_with_a_clear_error(studio, pictures):
    run = studio.trainings.start({**FAST, "data": str(pictures), "output": "nomods", "steps": 2,
                                  "target_modules": ["to_nothing"]})  # fmt: skip
    assert run.wait(120) and run.state == "failed"
    said = str(run.error)
    assert said.startswith("The decoder of Kandinsky 2.2 (tiny")
    assert "cannot take an adapter on to_nothing (Target modules {'to_nothing'} not found" in said


def test_a_generation_submitted_during_training_runs_after_it_and_cancel_then_resume_finishes(
    studio, pictures
):
    run = studio.trainings.start({**FAST, "data": str(pictures), "output": "queued", "steps": 30,
                                  "checkpoint_every": 100})  # fmt: skip
    generation = studio.submit(Job("t2i", "tiny-kd22", KD22))
    for event in run.follow(timeout=120):
        if event.kind == "step" and event.step == 3:
            assert studio.position(generation) == 1  # waiting behind the run, which a queued job names
            assert re.fullmatch(r"Training queued, step \d+/30", studio.busy_with())
            run.cancel()
    stopped = run.step  # the step under way when Cancel came (it checkpoints there)
    assert run.state == "cancelled" and f"stopped at step {stopped} of 30" in str(run.error) and stopped < 30
    assert generation.wait(120) and generation.state == "done"
    assert generation.started_at > run.ended_at
    resumed = studio.trainings.start({"output": "queued"}, resume=True)
    assert resumed.wait(300) and resumed.state == "done", resumed.error
    assert resumed.notices[1].startswith(f"Resumed from step {stopped}") and resumed.step == 30
    assert resumed.losses[0][0] == stopped + 1 and resumed.result.steps == 30
    assert studio.busy_with() == ""


def test_kubin_train_prints_progress_and_a_json_line_whose_path_generate_loads(pictures, tmp_path):
    from cli_helpers import kubin_generate, run_in_process

    (tmp_path / "user.yaml").write_text("")
    folders = ["--config", str(tmp_path / "user.yaml"), "--lora-dir", str(tmp_path / "lora"),
               "--training-dir", str(tmp_path / "training")]  # fmt: skip
    flags = ["--model", "tiny-kd22", "--data", str(pictures), "--output", "cli/first", "--resolution", "64",
             "--steps", "3", "--rank", "2", "--target-modules", "to_q", "--target-modules", "to_v"]  # fmt: skip
    checked = run_in_process(tmp_path, ["train", *folders, *flags, "--check"])
    assert checked.returncode == 0 and json.loads(checked.stdout)["images"] == 8
    done = run_in_process(tmp_path, ["train", *folders, *flags])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("step 1/3 loss ") and lines[2].startswith("step 3/3 loss ")
    path = json.loads(lines[-1])["path"]
    assert path == str(tmp_path / "lora" / "cli" / "first.safetensors")
    assert "notice: Dataset: 8 image(s) in buckets 64x64: 8" in done.stderr
    made = kubin_generate(tmp_path, "--model", "tiny-kd22", "--prompt", "a cat", "--width", "64", "--height",
                          "64", "--steps", "2", "--prior-steps", "2", "--lora", path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout.splitlines()[-1])["path"]
    longer = run_in_process(
        tmp_path, ["train", *folders, "--output", "cli/first", "--resume", "--steps", "5"]
    )
    assert longer.returncode == 0, longer.stderr
    assert (
        longer.stdout.splitlines()[0].startswith("step 4/5 loss ")
        and json.loads(longer.stdout.splitlines()[-1])["steps"] == 5
    )
    wrong = run_in_process(tmp_path, ["train", *folders, *flags, "--target", "transformer"])
    assert wrong.returncode == 2 and "has no part 'transformer' to train" in wrong.stderr


def test_a_memory_preset_fills_the_options_not_given_epochs_set_the_steps_and_memory_savers_run(
    studio, pictures
):
    options = TrainingOptions.from_dict(
        {"preset": "16gb", "rank": 4, "model": "m", "data": "d", "output": "o"}
    )
    assert (options.rank, options.mixed_precision, options.gradient_checkpointing) == (4, "bf16", True)
    run = studio.trainings.start({**FAST, "data": str(pictures), "output": "saver", "steps": 3,
                                  "mixed_precision": "bf16", "gradient_checkpointing": True,
                                  "cache_latents": False})  # fmt: skip
    assert run.wait(120) and run.state == "done", run.error
    assert all(np.isfinite(loss) for _, loss in run.losses)
    passes = studio.trainings.start({**FAST, "data": str(pictures), "output": "passes", "epochs": 2,
                                     "gradient_accumulation": 2})  # fmt: skip
    assert passes.options.steps == 4  # 8 pictures in batches of 2, twice, 2 batches a step
    assert passes.wait(120) and passes.state == "done" and passes.step == 4, passes.error
    with pytest.raises(InvalidParams, match="8-bit Adam needs the bitsandbytes package and a CUDA GPU"):
        studio.trainings.start({**FAST, "data": str(pictures), "output": "x", "preset": "8gb"})


def test_the_prior_learns_from_the_captions_and_its_adapter_changes_the_pixels(studio, pictures):
    run = studio.trainings.start({**FAST, "target": "prior", "target_modules": [], "learning_rate": 1e-2,
                                  "data": str(pictures), "output": "prior-squares", "steps": 40,
                                  "checkpoint_every": 40})  # fmt: skip
    assert run.wait(300) and run.state == "done", run.error
    losses = [loss for _, loss in run.losses]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    found = {f.name: f for f in studio.loras.list()}["prior-squares"]
    assert (found.family, found.part) == ("kd22", "prior")
    base = studio.run(Job("t2i", "tiny-kd22", KD22)).results[0]
    tuned = studio.run(Job("t2i", "tiny-kd22", {**KD22, "loras": ["prior-squares"]})).results[0]
    assert np.abs(pixels(base) - pixels(tuned)).mean() > 1


def test_caption_missing_writes_a_txt_for_each_picture_without_one_and_trains_with_it(
    studio, pictures, tmp_path
):
    import shutil

    from kubin.tools.models import ToolModels

    folder = shutil.copytree(pictures, tmp_path / "uncaptioned")
    kept = sorted(folder.glob("*.txt"))[0]
    for txt in sorted(folder.glob("*.txt"))[1:]:
        txt.unlink()  # 7 pictures lose their caption, one keeps its own
    own = kept.read_text()
    studio.tool_models = ToolModels(caption="tiny-caption")
    run = studio.trainings.start({**FAST, "data": str(folder), "output": "captioned", "steps": 2,
                                  "caption_missing": True})  # fmt: skip
    assert run.wait(300) and run.state == "done", run.error
    assert len(list(folder.glob("*.txt"))) == 8 and kept.read_text() == own
    assert any("Captioned 7 picture(s) without a .txt with tiny-caption" in n for n in run.notices)
    report = scan_dataset(folder, 64)
    assert all(item.caption for item in report.items)


def test_cuda_only_options_get_a_clear_message_where_there_is_no_cuda_gpu(studio, pictures):
    from kubin.training.loop import check_device_options

    start = lambda **values: studio.trainings.start(  # noqa: E731
        {**FAST, "data": str(pictures), "output": "cuda-only", "steps": 1, **values}
    )
    with pytest.raises(InvalidParams, match=r"fp16 mixed precision needs a CUDA GPU \(this Kubin trains on "
                       r"cpu\); choose bf16 or no here"):  # fmt: skip
        start(mixed_precision="fp16")
    with pytest.raises(InvalidParams, match=r"8-bit Adam needs the bitsandbytes package and a CUDA GPU \(this "
                       r"Kubin trains on cpu\); choose the optimizer adamw here"):  # fmt: skip
        start(optimizer="adamw8bit")
    options = TrainingOptions.from_dict({**FAST, "data": "d", "output": "o", "mixed_precision": "bf16"})
    with pytest.raises(InvalidParams, match=r"bf16 mixed precision runs on a CUDA GPU or the CPU \(this Kubin "
                       r"trains on mps\); choose no here"):  # fmt: skip
        check_device_options(options, "mps")
    check_device_options(options, "cpu")  # bf16 autocast runs on the CPU
    check_device_options(TrainingOptions.from_dict({**FAST, "mixed_precision": "fp16"}), "cuda:0")
