"""Batch over a folder (kubin/batch.py): every readable image of a folder runs through the task on
tiny-kd22, each output keeping its image's name in a new folder and recording the image it came from;
what cannot run is skipped and reported; inpainting takes each image's mask by name."""

import threading

import numpy as np
import pytest
from PIL import Image

from kubin.batch import queue_folder, scan_folder
from kubin.engine import CANCELLED, DONE, ToolJob
from kubin.errors import InvalidParams
from kubin.outputs import read_image_metadata

SMALL = {"prompt": "a red cat", "steps": 2, "prior_steps": 2, "strength": 0.5}


def _picture(path, size=(64, 64), value=0):
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    """img10.png, img2.png, a.jpg (64x64), a text file, a damaged PNG and a hidden file."""
    pictures = tmp_path / "holiday pictures"
    pictures.mkdir()
    _picture(pictures / "img10.png", value=1)
    _picture(pictures / "img2.png", value=2)
    _picture(pictures / "a.jpg", value=3)
    (pictures / "notes.txt").write_text("not a picture")
    (pictures / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (pictures / ".DS_Store").write_bytes(b"\0\0")
    return pictures


def _run(engine, *args, **kwargs):
    plan, queued = queue_folder(engine, *args, **kwargs)
    for _, handle in queued:
        handle.wait(120)
    return plan, queued


def test_each_image_of_a_folder_makes_an_output_named_as_it_with_the_file_it_came_from(engine, folder):
    plan, queued = _run(engine, "i2i", "tiny-kd22", dict(SMALL, seed=5), folder)

    assert [item.source.name for item, _ in queued] == ["a.jpg", "img2.png", "img10.png"]  # name order
    assert sorted(plan.skipped) == [("broken.png", plan.skipped[0][1]), ("notes.txt", plan.skipped[1][1])]
    assert all("not an image" in why or "damaged" in why for _, why in plan.skipped)
    assert plan.output.name == "holiday pictures" and plan.output.parent.parent.name == "i2i"
    for item, handle in queued:
        assert handle.state == DONE
        (result,) = handle.results
        assert result.path == plan.output / f"{item.source.stem}.png"
        meta = read_image_metadata(result.path)
        assert meta["params"]["init_image"] == str(item.source)
        assert meta["params"]["prompt"] == "a red cat" and meta["seed"] == 5
    assert sorted(p.name for p in plan.output.iterdir()) == ["a.png", "img10.png", "img2.png"]


def test_a_folder_run_twice_goes_to_a_new_folder_and_batches_number_their_images(engine, folder, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    _picture(one / "cat.png")
    first, _ = _run(engine, "i2i", "tiny-kd22", dict(SMALL), one)
    second, queued = _run(engine, "i2i", "tiny-kd22", dict(SMALL, batch_count=2), one)

    assert second.output == first.output.with_name("one-2")
    assert [r.path.name for r in queued[0][1].results] == ["cat-1.png", "cat-2.png"]
    assert (first.output / "cat.png").is_file()  # the first run's file is kept


def test_inpainting_a_folder_takes_each_images_mask_by_name_and_skips_an_image_without_one(
    engine, folder, tmp_path
):
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.new("L", (64, 64), 0).save(masks / "img2.png")  # nothing to repaint: the task refuses it
    half = Image.new("L", (64, 64), 0)
    half.paste(255, (0, 0, 32, 64))
    half.save(masks / "a.png")

    inpaint = {k: v for k, v in SMALL.items() if k != "strength"}
    plan, queued = _run(engine, "inpaint", "tiny-kd22", inpaint, folder, masks)

    assert [item.source.name for item, _ in queued] == ["a.jpg"]
    assert ("img10.png", f"no mask named img10.* in {masks}") in plan.skipped
    skipped = dict(plan.skipped)
    assert skipped["img2.png"].startswith("Mask is empty, so there is nothing to repaint")
    by_name = {item.source.name: handle for item, handle in queued}
    painted = np.asarray(Image.open(by_name["a.jpg"].results[0].path).convert("RGB"), dtype=int)
    original = np.asarray(Image.open(folder / "a.jpg").convert("RGB"), dtype=int)
    assert np.abs(painted[:, :32] - original[:, :32]).mean() > 10  # the white half was repainted
    assert np.abs(painted[:, 40:] - original[:, 40:]).mean() < 6  # the black half kept (jpeg noise)
    meta = read_image_metadata(by_name["a.jpg"].results[0].path)
    assert meta["params"]["mask"] == str(masks / "a.png")


@pytest.mark.parametrize(
    ("task", "kwargs", "said"),
    [
        ("t2i", {}, "t2i does not start from an image, so it cannot run over a folder"),
        ("inpaint", {}, "Inpainting a folder needs a masks folder"),
        ("i2i", {"folder": "missing"}, "does not exist"),
        ("i2i", {"folder": "notes"}, "holds no image to run (Skipped notes.txt: not an image"),
    ],
)
def test_a_folder_batch_that_cannot_run_says_why_and_queues_nothing(
    engine, folder, tmp_path, task, kwargs, said
):
    where = folder
    if kwargs.get("folder") == "missing":
        where = tmp_path / "nowhere"
    elif kwargs.get("folder") == "notes":
        where = tmp_path / "notes"
        where.mkdir()
        (where / "notes.txt").write_text("no pictures here")
    with pytest.raises(InvalidParams) as err:
        queue_folder(engine, task, "tiny-kd22", dict(SMALL), where)
    assert said in str(err.value)
    assert engine.pending() == []
    assert not (engine.output_dir / task).exists()  # no empty output folder left behind


def test_when_the_task_refuses_every_image_nothing_runs_and_the_error_says_why(engine, folder):
    with pytest.raises(InvalidParams) as err:  # strength 0 leaves no step: each job is refused at submit
        queue_folder(engine, "i2i", "tiny-kd22", dict(SMALL, strength=0.0), folder)
    assert f"No image of {folder} can run" in str(err.value)
    assert "Skipped a.jpg: Strength 0.0 with 2 steps leaves no step to run" in str(err.value)
    assert engine.pending() == []
    assert not (engine.output_dir / "i2i").exists() or not any((engine.output_dir / "i2i").rglob("*.png"))


def test_cancel_stops_the_folders_jobs_left_and_keeps_the_images_finished(engine, folder):
    release = threading.Event()
    engine.submit_tool(ToolJob("hold the queue", lambda tool: release.wait(60)))
    plan, queued = queue_folder(engine, "i2i", "tiny-kd22", dict(SMALL), folder)
    for _, handle in queued[1:]:
        engine.cancel(handle)
    release.set()
    for _, handle in queued:
        handle.wait(120)
    assert [h.state for _, h in queued] == [DONE, CANCELLED, CANCELLED]
    assert sorted(p.name for p in plan.output.iterdir()) == ["a.png"]


def test_scan_reads_names_in_natural_order_and_skips_masks_that_are_not_images(folder, tmp_path):
    masks = tmp_path / "m"
    masks.mkdir()
    for name in ("a", "img2", "img10"):
        _picture(masks / f"{name}.png")
    (masks / "img2.png").write_bytes(b"junk")
    plan = scan_folder(folder, masks)
    assert [i.source.name for i in plan.items] == ["a.jpg", "img10.png"]
    assert ("img2.png", "its mask img2.png is not an image Pillow can read") in plan.skipped


def test_a_video_keeps_its_name_with_its_sidecar_and_a_second_one_never_overwrites_it(tmp_path):
    from kubin.outputs import OutputName, read_video_metadata, save_video

    frames = [Image.new("RGB", (32, 32), (i * 60, 0, 0)) for i in range(3)]
    name = OutputName(tmp_path / "clips", "beach")
    first, preview = save_video(frames, 8, tmp_path, "i2v", {"seed": 1, "task": "i2v"}, name=name)
    second, _ = save_video(frames, 8, tmp_path, "i2v", {"seed": 2, "task": "i2v"}, name=name)
    assert (first.name, preview.name, second.name) == ("beach.mp4", "beach.webp", "beach (2).mp4")
    assert read_video_metadata(first)["seed"] == 1 and read_video_metadata(second)["seed"] == 2


def test_a_tool_over_a_folder_saves_each_result_named_as_its_image_and_reports_the_refused(engine, folder):
    from kubin.batch import tool_over_folder
    from kubin.outputs import save_tool_output

    def work(tool, image):
        if image.getpixel((0, 0)) == Image.open(folder / "img2.png").convert("RGB").getpixel((0, 0)):
            raise InvalidParams("too dull to mirror")
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    def save(image, item, name):
        return save_tool_output(
            image, engine.output_dir, "mirror", "flip", {}, {"image": str(item.source)}, name
        )

    handle, run = tool_over_folder(engine, "Mirror", "mirror", folder, work, save)
    handle.wait(60)

    assert handle.state == DONE
    assert [(item.source.name, path.name) for item, path in run.saved] == [
        ("a.jpg", "a.png"),
        ("img10.png", "img10.png"),
    ]
    assert run.failed == [("img2.png", "too dull to mirror")]
    assert {name for name, _ in run.plan.skipped} == {"notes.txt", "broken.png"}
    mirrored = Image.open(run.plan.output / "img10.png")
    assert mirrored.getpixel((0, 0)) == Image.open(folder / "img10.png").getpixel((63, 0))
    assert read_image_metadata(mirrored)["inputs"] == {"image": str(folder / "img10.png")}


def test_cancel_stops_a_tool_between_images_and_keeps_those_done(engine, folder):
    from kubin.batch import tool_over_folder

    first_done, release = threading.Event(), threading.Event()

    def work(tool, image):
        first_done.set()
        release.wait(30)
        return image

    handle, run = tool_over_folder(
        engine, "Hold", "hold", folder, work, lambda image, item, name: name.folder / name.stem
    )
    assert first_done.wait(30)
    engine.cancel(handle)
    release.set()
    handle.wait(60)
    assert handle.state == CANCELLED
    assert [item.source.name for item, _ in run.saved] == ["a.jpg"]
