"""Training a LoRA for Kandinsky 5's text-to-video transformer on short clips, on the CPU (tiny-kd50-t2v):
clips made here by imageio-ffmpeg (and a GIF) are sampled to the run's frames at its frame rate, a clip that
cannot be read or is too short is reported and skipped, the loss stays finite, the samples are short mp4
videos, the adapter loads through the LoRA loader and changes a generated video's pixels, a broken run
resumes to the very weights of an unbroken one, and `kubin train` trains one from the command line."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from training_helpers import make_clips, make_pictures, write_clip

from kubin.engine import Engine, Job
from kubin.errors import InvalidParams
from kubin.models.lora import LoraLibrary
from kubin.outputs import read_video, video_info
from kubin.training.dataset import ClipShape, scan_dataset
from kubin.training.loop import Trainer
from kubin.training.options import TrainingOptions
from kubin.training.runs import Trainings

VIDEO = {"prompt": "a box sliding", "width": 64, "height": 64, "frames": 17, "steps": 2, "seed": 7}
FAST = {"model": "tiny-kd50-t2v", "frames": 5, "fps": 8, "rank": 4, "learning_rate": 3e-2, "seed": 1,
        "target_modules": ["to_query", "to_key", "to_value", "attention.out_layer", "feed_forward.in_layer",
                           "feed_forward.out_layer"]}  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return make_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def studio(fresh_manager, tmp_path_factory):
    root = tmp_path_factory.mktemp("studio-video")
    engine = Engine(fresh_manager, root / "output", loras=LoraLibrary(root / "lora"))
    engine.trainings = Trainings(engine, root / "training")
    yield engine
    engine.close(wait=True)


def frames_of_file(path) -> list[np.ndarray]:
    frames, _fps, _sound = read_video(path)
    return [np.asarray(frame.convert("RGB")) for frame in frames]


def frames_of(result) -> np.ndarray:
    return np.stack(frames_of_file(result.path)).astype(np.int16)


def test_clips_train_the_transformer_whose_adapter_changes_a_generated_video(studio, clips, tmp_path):
    folder = shutil.copytree(clips, tmp_path / "clips")
    gif = [Image.fromarray(frame) for frame in np.asarray(frames_of_file(folder / "clip1.mp4"), np.uint8)]
    gif[0].save(folder / "loop.gif", save_all=True, append_images=gif[1:], duration=125, loop=0)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    write_clip(folder / "short.webm", [np.zeros((64, 64, 3), np.uint8)] * 3, fps=8)
    run = studio.trainings.start({**FAST, "data": str(folder), "output": "k5boxes", "steps": 8,
                                  "sample_every": 8, "trigger": "k5box"})  # fmt: skip
    assert run.wait(600) and run.state == "done", run.error
    said = run.notices[0]
    assert said.startswith("Dataset: 4 clip(s) (5 frames at 8 fps) in buckets 64x64: 4; skipped 2: ")
    assert "broken.mp4 (cannot be read: damaged or not a video" in said
    assert (
        "short.webm (too short: 3 frames at 8 fps (0.38 s); training takes at least 5 frames at 8 fps (0.62 s))"
        in said
    )
    assert all(np.isfinite(loss) for _, loss in run.losses) and len(run.losses) == 8
    assert [(step, path.rsplit("/", 1)[-1]) for step, path in run.samples] == [(8, "step-000008-0.mp4")]
    assert video_info(run.samples[-1][1])["frames"] == 5
    found = {f.name: f for f in studio.loras.list()}["k5boxes"]
    assert (found.family, found.part, found.rank, found.triggers) == ("kd50", "transformer", 4, ("k5box",))
    base = studio.run(Job("t2v", "tiny-kd50-t2v", VIDEO)).results[0]
    tuned = studio.run(Job("t2v", "tiny-kd50-t2v", {**VIDEO, "loras": ["k5boxes"]})).results[0]
    assert np.abs(frames_of(base) - frames_of(tuned)).mean() > 1


def test_a_broken_video_run_resumes_to_the_weights_of_an_unbroken_one(fresh_manager, clips, tmp_path):
    from safetensors.torch import load_file

    from kubin.models.tiny import tiny_model_folder

    spec = fresh_manager.spec("tiny-kd50-t2v")
    sources = {sub.name: str(sub) for sub in tiny_model_folder(spec.id).iterdir() if sub.is_dir()}
    folder = shutil.copytree(clips, tmp_path / "clips")
    write_clip(
        folder / "long.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 12, fps=8
    )  # 9 frames, the others 5
    options = {**FAST, "data": str(folder), "frames": 9, "steps": 4, "checkpoint_every": 2,
               "lr_scheduler": "cosine"}  # fmt: skip

    def trainer(name):
        opts = TrainingOptions.from_dict({**options, "output": name})
        return Trainer(opts, spec, sources, tmp_path / "runs" / name, tmp_path / "lora")

    whole = trainer("whole").run()

    def crash(event):
        if event.kind == "step" and event.step == 3:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        trainer("broken").run(crash)
    resumed = trainer("broken").run(resume=True)
    a, b = load_file(str(whole.path)), load_file(str(resumed.path))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert resumed.losses == whole.losses and resumed.metadata["kubin.frames"] == "9"
    assert whole.dataset.groups == {((64, 64), 5): 3, ((64, 64), 9): 1}


def test_a_video_models_mistakes_get_clear_errors(studio, clips, tmp_path):
    start = lambda **values: studio.trainings.start({**FAST, "output": "x", "steps": 2, **values})  # noqa: E731
    pictures = make_pictures(tmp_path / "pictures", count=1)
    with pytest.raises(InvalidParams, match=r"holds no short video clips \(2 other file\(s\)\); training a "
                       r"video model reads \.mp4, \.webm, \.gif, \.mov files"):  # fmt: skip
        start(data=str(pictures))
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        InvalidParams, match=r"is empty; put short video clips \(\.mp4, \.webm, \.gif\) in it"
    ):
        start(data=str(tmp_path / "empty"))
    (tmp_path / "short").mkdir()
    write_clip(tmp_path / "short" / "s.mp4", [np.zeros((64, 64, 3), np.uint8)] * 3, fps=8)
    with pytest.raises(InvalidParams, match=r"No usable clip in short: s.mp4 \(too short: 3 frames at 8 fps "
                       r"\(0.38 s\); training takes at least 5 frames at 8 fps \(0.62 s\)\)"):  # fmt: skip
        start(data=str(tmp_path / "short"), frames=17)
    with pytest.raises(InvalidParams, match=r"frames must be 1 more than a multiple of 4 .*got 6"):
        start(data=str(clips), frames=6)
    with pytest.raises(InvalidParams, match="training is for the text-to-image and text-to-video models"):
        start(data=str(clips), model="tiny-kd50-i2v")
    # Frame-count buckets: a clip shorter than the run's frames trains with the most it holds.
    longer = shutil.copytree(clips, tmp_path / "longer")
    write_clip(longer / "long.mp4", [np.zeros((64, 64, 3), np.uint8)] * 20, fps=8)
    report = scan_dataset(longer, 64, 16, clip=ClipShape(17, 8))
    assert report.summary() == "4 clip(s) (17 frames (1), 5 frames (3) at 8 fps) in buckets 64x64: 4"
    assert report.as_json()["frame_buckets"] == [{"frames": 17, "clips": 1}, {"frames": 5, "clips": 3}]
    assert ClipShape(5, 4).indices(8.0) == [0, 2, 4, 6, 8]  # 4 fps from 8: every other frame


def test_kubin_train_trains_a_video_adapter_from_the_command_line(clips, tmp_path):
    from cli_helpers import run_in_process

    (tmp_path / "user.yaml").write_text("")
    folders = ["--config", str(tmp_path / "user.yaml"), "--lora-dir", str(tmp_path / "lora"),
               "--training-dir", str(tmp_path / "training")]  # fmt: skip
    flags = ["--model", "tiny-kd50-t2v", "--data", str(clips), "--output", "cli-boxes", "--frames", "5",
             "--fps", "8", "--steps", "2", "--rank", "2"]  # fmt: skip
    checked = run_in_process(tmp_path, ["train", *folders, *flags, "--check"])
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) | {"folder": "", "dataset_hash": ""} == {
        "folder": "", "clips": 3, "skipped": [], "buckets": [{"width": 64, "height": 64, "clips": 3}],
        "dataset_hash": "", "frames": 5, "fps": 8.0, "frame_buckets": [{"frames": 5, "clips": 3}]}  # fmt: skip
    done = run_in_process(tmp_path, ["train", *folders, *flags])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("step 1/2 loss ")
    assert json.loads(done.stdout.splitlines()[-1])["path"] == str(
        tmp_path / "lora" / "cli-boxes.safetensors"
    )
