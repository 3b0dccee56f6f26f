"""Captions: the caption model (tiny Florence-2) describes an image as a tool job in the engine's queue, and
captions a folder into .txt files beside the images (LoRA training data), from Python and `kubin caption`."""

import json
import shutil

import numpy as np
import pytest
from cli_helpers import run_in_process
from PIL import Image

from kubin.engine import CANCELLED, DONE, Job
from kubin.errors import InvalidParams, WeightsMissing
from kubin.tools.caption import caption, florence_tags, load_captioner
from kubin.tools.jobs import caption_image, submit_captions
from kubin.tools.models import ToolModels
from kubin.tools.weights import tool_folder


def picture(seed: int) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((40, 60, 3)) * 255).astype(np.uint8))


@pytest.fixture
def caption_engine(engine):
    engine.tool_models = ToolModels(caption="tiny-caption")
    return engine


@pytest.fixture
def folder(tmp_path):
    """Two pictures, one with a caption already, and a .png that is not an image."""
    folder = tmp_path / "training"
    folder.mkdir()
    picture(1).save(folder / "a.png")
    picture(2).save(folder / "b.jpg")
    (folder / "b.txt").write_text("my own caption\n")
    (folder / "c.png").write_bytes(b"a shopping list, not a PNG")
    (folder / "notes.md").write_text("not an image file: left alone")
    return folder


def test_a_caption_is_text_from_the_model_and_the_same_for_the_same_image(caption_engine):
    first = caption_image(caption_engine, picture(1))
    again = caption_image(caption_engine, picture(1))

    assert first and first == again  # greedy decoding
    assert set(first) <= set("abcdefghijklmnopqrstuvwxyz ")  # what the tiny model may write


def test_florence_tags_name_each_thing_it_detected_once_in_order():
    answer = "</s><s>car<loc_1><loc_2><loc_3><loc_4>old man<loc_5><loc_6><loc_7><loc_8>car<loc_9><loc_1><loc_2><loc_3></s>"

    assert florence_tags(answer) == "car, old man"


def test_the_tags_mode_asks_florence_for_the_things_it_detects(caption_engine):
    captioner = load_captioner("tiny-caption")
    detected = captioner(images=picture(1), text="<OD>", return_full_text=False, skip_special_tokens=False)

    tags = caption_image(caption_engine, picture(1), mode="tags")

    assert tags == florence_tags(detected[0]["generated_text"]) and tags != caption_image(
        caption_engine, picture(1)
    )
    with pytest.raises(
        InvalidParams, match="Unknown caption mode 'poem'; choose short, detailed, more detailed, tags"
    ):
        caption_image(caption_engine, picture(1), mode="poem")


def test_a_folder_gets_a_txt_per_readable_image_skips_existing_and_reports_unreadable(caption_engine, folder):
    seen = []
    handle = submit_captions(caption_engine, sorted(folder.iterdir())[:3] + [folder / "c.png"], True,
                             on_entry=lambda e, done, total: seen.append((e.path.name, done, total)))  # fmt: skip
    handle.wait()

    assert handle.state == DONE
    entries = {e.path.name: e for e in handle.value}
    assert (folder / "a.txt").read_text().strip() == entries["a.png"].caption
    assert entries["b.jpg"].skipped and (folder / "b.txt").read_text() == "my own caption\n"
    assert "could not be read" in entries["c.png"].error and not (folder / "c.txt").exists()
    assert [done for _, done, _ in seen] == list(range(1, len(seen) + 1))

    again = submit_captions(caption_engine, [folder / "b.jpg"], True, overwrite=True)
    again.wait()
    assert (folder / "b.txt").read_text().strip() == again.value[0].caption != "my own caption"


def test_cancel_stops_a_folder_after_the_image_under_way(caption_engine, folder):
    files = [folder / "a.png"] * 50
    started = []
    # What the Captions tab's Cancel does: cancel the jobs of its owner.
    cancel_after_first = lambda e, done, total: started.append(done) or caption_engine.cancel_owner("me")  # noqa: E731
    handle = submit_captions(caption_engine, files, False, on_entry=cancel_after_first, owner="me")
    handle.wait()

    assert handle.state == CANCELLED and started == [1]


def test_a_caption_waits_for_the_running_generation(caption_engine):
    generation = caption_engine.submit(
        Job("t2i", "tiny-kd22", {"prompt": "a cat", "steps": 12, "prior_steps": 2, "width": 64, "height": 64})
    )
    caption_image(caption_engine, picture(3))

    assert generation.finished and generation.state == DONE


def test_a_saved_caption_model_loads_back_offline_through_the_same_loader(tmp_path):
    saved = tmp_path / "florence"
    shutil.copytree(tool_folder("tiny-caption", "caption model", ""), saved)

    assert caption(load_captioner(str(saved)), picture(1)) == caption(
        load_captioner("tiny-caption"), picture(1)
    )


def test_a_missing_caption_model_offline_names_it_and_kubin_download():
    with pytest.raises(WeightsMissing, match="kubin download florence-community/Florence-2-base"):
        load_captioner("florence-community/Florence-2-base")


def test_kubin_caption_prints_a_json_line_per_image_and_writes_txt_for_a_folder(
    tmp_path, folder, caption_engine
):
    (tmp_path / "user.yaml").write_text("")
    args = ["caption", "--config", str(tmp_path / "user.yaml"), "--caption-model", "tiny-caption"]

    done = run_in_process(tmp_path, [*args, str(folder)])

    lines = {
        json.loads(line)["file"].rsplit("/", 1)[1]: json.loads(line) for line in done.stdout.splitlines()
    }
    assert set(lines) == {"a.png", "b.jpg", "c.png"}
    assert lines["a.png"]["caption"] == (folder / "a.txt").read_text().strip()
    assert (lines["a.png"]["mode"], lines["a.png"]["caption_model"]) == ("short", "tiny-caption")
    assert "skipped" in lines["b.jpg"] and "error" in lines["c.png"]
    assert done.returncode == 2 and "error: Image 'c.png' could not be read" in done.stderr  # and it went on

    single = run_in_process(tmp_path, [*args, str(folder / "a.png")])
    assert single.returncode == 0 and json.loads(single.stdout)["caption"] == lines["a.png"]["caption"]
    tags = json.loads(run_in_process(tmp_path, [*args, "--mode", "tags", str(folder / "a.png")]).stdout)
    assert tags["mode"] == "tags" and tags["caption"] == caption_image(
        caption_engine, picture(1), mode="tags"
    )
