"""The bundled Output browser extension (extensions/browser): the output folder by task and date, newest
first, and deleting an output with the files saved beside it, never anything outside the output folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from kubin.extensions.loader import discover, load_all
from kubin.outputs import save_image, save_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser():
    found = [e for e in discover(REPO / "extensions") if e.name == "browser"]
    (ext,) = load_all(found)
    assert ext.status == "ok", ext.status_line()
    assert [tab.title for tab in ext.api.tabs] == ["Outputs"]
    return sys.modules["kubin_extension_browser"]


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "output"


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def image(root: Path, task: str = "t2i", seed: int = 1) -> Path:
    return save_image(Image.new("RGB", (16, 16), (200, 30, 30)), root, task, {"seed": seed, "params": {}})


def video(root: Path, seed: int = 1) -> Path:
    frames = [Image.new("RGB", (16, 16), (i * 40, 0, 0)) for i in range(3)]
    path, preview = save_video(frames, 8, root, "t2v", {"seed": seed, "params": {}})
    assert preview is not None and path.with_suffix(".json").is_file()
    return path


# --- listing ------------------------------------------------------------------------------------------
def test_tasks_are_the_task_folders_without_inputs(browser, root):
    for folder in ("t2i", "i2i", "inputs", "t2v"):
        (root / folder).mkdir(parents=True)
    touch(root / "notes.txt")

    assert browser.tasks(root) == ["i2i", "t2i", "t2v"]


def test_nothing_is_listed_before_the_output_folder_exists(browser, root):
    assert browser.tasks(root) == []
    assert browser.dates(root, "t2i") == []
    assert browser.outputs(root, "t2i", "2026-11-25") == []


def test_dates_are_newest_first(browser, root):
    for day in ("2026-01-31", "2026-11-25", "2025-12-31"):
        (root / "t2i" / day).mkdir(parents=True)

    assert browser.dates(root, "t2i") == ["2026-11-25", "2026-01-31", "2025-12-31"]
    assert browser.dates(root, "") == []
    assert browser.dates(root, "i2i") == []


def test_folders_are_named_as_their_tabs_and_the_latest_outputs_task_comes_first(browser, root):
    assert browser.newest_task(root) is None and browser.dates(root, None) == []
    for folder in ("t2mesh", "i2i", "upscale", "my-tool"):
        (root / folder / "2026-11-25").mkdir(parents=True)
        os.utime(root / folder / "2026-11-25", (0, 0))  # long ago
    image(root, "t2i")  # the latest output

    assert browser.task_choices(root) == [
        ("Image to image", "i2i"), ("my-tool", "my-tool"), ("Text to image", "t2i"), ("Text to 3D", "t2mesh"),
        ("Upscale", "upscale"),
    ]  # fmt: skip
    assert browser.newest_task(root) == "t2i"


def test_outputs_are_newest_first_and_only_the_shown_kinds(browser, root):
    day = root / "t2i" / "2026-11-25"
    for name in ("00001-5.png", "00003-7.png", "00002-6.mp4", "00004-8.glb", "00002-6.json", "00002-6.webp",
                 "00004-8.ply", ".tmp-abc.png", "notes.txt"):  # fmt: skip
        touch(day / name)

    listed = browser.outputs(root, "t2i", "2026-11-25")

    assert [p.name for p in listed] == ["00004-8.glb", "00003-7.png", "00002-6.mp4", "00001-5.png"]
    assert browser.outputs(root, "t2i", "") == [] and browser.outputs(root, "", "2026-11-25") == []


def test_outputs_show_at_most_the_newest_limit(browser, root, monkeypatch):
    monkeypatch.setattr(browser, "LIMIT", 2)
    for n in range(1, 5):
        touch(root / "t2i" / "2026-11-25" / f"{n:05d}-{n}.png")

    assert [p.name for p in browser.outputs(root, "t2i", "2026-11-25")] == ["00004-4.png", "00003-3.png"]


def test_outputs_of_a_folder_outside_the_output_folder_are_refused(browser, tmp_path, root):
    touch(tmp_path / "elsewhere" / "secret.png")
    root.mkdir()

    with pytest.raises(ValueError, match="not in the output folder"):
        browser.outputs(root, "..", "elsewhere")


# --- inside -------------------------------------------------------------------------------------------
def test_inside_accepts_a_file_in_the_output_folder(browser, root):
    path = image(root)

    assert browser.inside(root, str(path)) == path.resolve()


@pytest.mark.parametrize("how", ["dotdot", "absolute", "sibling"])
def test_inside_refuses_paths_that_leave_the_output_folder(browser, tmp_path, root, how):
    secret = touch(tmp_path / "secret.txt")
    (root / "t2i").mkdir(parents=True)
    touch(tmp_path / "output-old" / "x.png")  # a name that starts like the output folder's
    path = {
        "dotdot": root / "t2i" / ".." / ".." / "secret.txt",
        "absolute": secret.resolve(),
        "sibling": tmp_path / "output-old" / "x.png",
    }[how]

    with pytest.raises(ValueError, match="not in the output folder"):
        browser.inside(root, str(path))


def test_inside_refuses_a_symlink_that_points_outside(browser, tmp_path, root):
    secret = touch(tmp_path / "secret.png")
    link = root / "t2i" / "2026-11-25" / "00001-1.png"
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)

    with pytest.raises(ValueError, match="not in the output folder"):
        browser.inside(root, str(link))


def test_inside_follows_a_symlinked_output_folder(browser, tmp_path):
    real = tmp_path / "disk" / "output"
    path = image(real)
    root = tmp_path / "output"
    root.symlink_to(real, target_is_directory=True)

    assert browser.inside(root, str(root / path.relative_to(real))) == path.resolve()


# --- delete -------------------------------------------------------------------------------------------
def test_deleting_an_image_removes_only_that_image(browser, root):
    first, second = image(root, seed=1), image(root, seed=2)

    removed = browser.delete_output(root, str(first))

    assert removed == [first.resolve()]
    assert not first.exists() and second.exists()


def test_deleting_a_video_removes_its_sidecar_and_preview_too(browser, root):
    clip, other = video(root, seed=1), video(root, seed=2)
    files = [clip, clip.with_suffix(".json"), clip.with_suffix(".webp")]

    removed = browser.delete_output(root, str(clip))

    assert sorted(removed) == sorted(p.resolve() for p in files)
    assert not any(p.exists() for p in files)
    assert other.exists() and other.with_suffix(".json").exists() and other.with_suffix(".webp").exists()
    assert browser.outputs(root, "t2v", clip.parent.name) == [other]


def test_deleting_a_3d_object_removes_its_other_formats_and_preview(browser, root):
    day = root / "t2m" / "2026-11-25"
    files = [touch(day / f"00001-3.{kind}") for kind in ("glb", "ply", "obj", "gif", "json")]
    kept = touch(day / "00002-4.glb")

    browser.delete_output(root, str(files[0]))

    assert not any(p.exists() for p in files)
    assert kept.exists()


def test_deleting_twice_says_it_is_gone(browser, root):
    path = image(root)
    browser.delete_output(root, str(path))

    with pytest.raises(ValueError, match="already gone"):
        browser.delete_output(root, str(path))


def test_delete_refuses_files_outside_and_leaves_them(browser, tmp_path, root):
    secret = touch(tmp_path / "secret.png")
    (root / "t2i").mkdir(parents=True)
    link = root / "t2i" / "00001-1.png"
    link.symlink_to(secret)

    for path in (secret, root / "t2i" / ".." / ".." / "secret.png", link):
        with pytest.raises(ValueError, match="not in the output folder"):
            browser.delete_output(root, str(path))

    assert secret.read_bytes() == b"x"
    assert os.path.islink(link)
