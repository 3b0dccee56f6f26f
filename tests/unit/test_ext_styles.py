"""The bundled Prompt styles extension (extensions/styles): templates applied to the prompt, the shipped
list, the user's own styles saved in the user config, and a picked style reaching the saved image."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from kubin.config import load_config, save_user_settings
from kubin.engine import Job
from kubin.errors import KubinError
from kubin.extensions.api import ExtensionAPI
from kubin.extensions.loader import discover, load_all
from kubin.outputs import read_output_metadata

REPO = Path(__file__).resolve().parents[2]
SMALL = {"width": 64, "height": 64, "steps": 2, "prior_steps": 2}
OIL = "oil painting on canvas, visible brush strokes, rich colours, classical composition"
OIL_NEGATIVE = "photograph, 3d render, flat colours, low quality"


def load_styles(settings: dict | None = None, user_config: Path | None = None):
    """The styles extension loaded from the repository as Kubin loads it."""
    found = [e for e in discover(REPO / "extensions") if e.name == "styles"]
    (ext,) = load_all(found, {"styles": settings or {}}, user_config)
    assert ext.status == "ok", ext.status_line()
    return ext


@pytest.fixture(scope="module")
def styles():
    load_styles()
    return sys.modules["kubin_extension_styles"]


@pytest.fixture
def user_config(tmp_path) -> Path:
    path = tmp_path / "kubin.user.yaml"
    path.write_text("# by hand\nserver:\n  host: 127.0.0.1\n", encoding="utf-8")
    return path


def api_saving_to(user_config: Path) -> ExtensionAPI:
    """The styles extension's API as the loader makes it: settings from the user file, saved back to it."""
    settings = load_config(user_config).get("extensions.settings.styles") or {}
    api = ExtensionAPI("styles", dict(settings))
    api.saver = lambda values: save_user_settings(
        user_config, {f"extensions.settings.styles.{k}": v for k, v in values.items()}
    )
    return api


def saved_user_styles(user_config: Path) -> list[dict]:
    return yaml.safe_load(user_config.read_text(encoding="utf-8"))["extensions"]["settings"]["styles"][
        "user_styles"
    ]


# --- apply_style --------------------------------------------------------------------------------------
def test_apply_style_puts_the_prompt_into_the_template_and_adds_the_negative(styles):
    style = {"name": "Oil", "prompt": "{prompt}, oil painting", "negative_prompt": "photograph"}
    params = {"prompt": "a red cat", "negative_prompt": "blurry", "seed": 7}

    changed = styles.apply_style(style, params)

    assert changed == {
        "prompt": "a red cat, oil painting",
        "negative_prompt": "blurry, photograph",
        "seed": 7,
    }
    assert params["prompt"] == "a red cat", "the caller's dict is left alone"


def test_apply_style_with_empty_parts_leaves_no_stray_commas(styles):
    style = {"name": "Poster", "prompt": "poster of {prompt}", "negative_prompt": ""}

    assert styles.apply_style(style, {"prompt": "a fox"}) == {
        "prompt": "poster of a fox",
        "negative_prompt": "",
    }
    assert styles.apply_style({"prompt": "{prompt}, neon"}, {"prompt": "", "negative_prompt": "dark"}) == {
        "prompt": "neon",
        "negative_prompt": "dark",
    }


# --- the shipped list ---------------------------------------------------------------------------------
def test_the_shipped_styles_load_and_each_has_a_place_for_the_prompt(styles):
    shipped = styles.shipped_styles()

    assert len(shipped) >= 10
    names = [s["name"] for s in shipped]
    assert len(set(names)) == len(names), "style names are unique"
    for style in shipped:
        assert "{prompt}" in style["prompt"], style["name"]
        assert isinstance(style.get("negative_prompt", ""), str)
    assert {"Photograph", "Oil painting", "Kandinsky abstraction"} <= set(names)


def test_the_picker_lists_every_style_sorted_without_case(styles):
    names = styles.Styles(
        ExtensionAPI("styles", {"user_styles": [{"name": "aaa", "prompt": "{prompt}"}]})
    ).names()

    assert names == sorted(names, key=str.lower)
    assert names[0] == "3D render" and "aaa" in names and "Oil painting" in names


# --- the user's styles --------------------------------------------------------------------------------
def test_saving_a_style_writes_the_user_config_and_the_next_start_has_it(styles, user_config):
    store = styles.Styles(api_saving_to(user_config))

    message = store.save(" Moody ", "{prompt}, moody, fog", "sunny")

    assert message == "Saved the style 'Moody'."
    assert saved_user_styles(user_config) == [
        {"name": "Moody", "prompt": "{prompt}, moody, fog", "negative_prompt": "sunny"}
    ]
    assert yaml.safe_load(user_config.read_text(encoding="utf-8"))["server"] == {"host": "127.0.0.1"}
    again = styles.Styles(api_saving_to(user_config)).all()
    assert again["Moody"] == {
        "name": "Moody",
        "prompt": "{prompt}, moody, fog",
        "negative_prompt": "sunny",
        "source": "yours",
    }
    assert again["Oil painting"]["source"] == "shipped"


def test_a_user_style_replaces_a_shipped_one_of_the_same_name(styles, user_config):
    store = styles.Styles(api_saving_to(user_config))

    store.save("Oil painting", "{prompt}, thick impasto", "")

    again = styles.Styles(api_saving_to(user_config))
    assert again.all()["Oil painting"]["prompt"] == "{prompt}, thick impasto"
    assert again.all()["Oil painting"]["source"] == "yours"
    assert again.names().count("Oil painting") == 1


def test_saving_again_under_a_name_changes_that_style(styles, user_config):
    store = styles.Styles(api_saving_to(user_config))
    store.save("Moody", "{prompt}, moody", "")
    store.save("Calm", "{prompt}, calm", "")

    store.save("Moody", "{prompt}, very moody", "sunny")

    assert saved_user_styles(user_config) == [
        {"name": "Calm", "prompt": "{prompt}, calm", "negative_prompt": ""},
        {"name": "Moody", "prompt": "{prompt}, very moody", "negative_prompt": "sunny"},
    ]


@pytest.mark.parametrize(
    ("name", "template", "message"),
    [
        ("  ", "{prompt}, x", "Give the style a name."),
        ("No place", "oil painting", "must contain {prompt}"),
        ("Empty", "", "must contain {prompt}"),
    ],
)
def test_a_style_without_a_name_or_a_place_for_the_prompt_is_refused(
    styles, user_config, name, template, message
):
    before = user_config.read_text(encoding="utf-8")

    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        styles.Styles(api_saving_to(user_config)).save(name, template, "")

    assert user_config.read_text(encoding="utf-8") == before


def test_deleting_a_user_style_removes_it_from_the_user_config(styles, user_config):
    store = styles.Styles(api_saving_to(user_config))
    store.save("Moody", "{prompt}, moody", "")
    store.save("Calm", "{prompt}, calm", "")

    message = styles.Styles(api_saving_to(user_config)).delete("Moody")

    assert message == "Deleted the style 'Moody'."
    assert [s["name"] for s in saved_user_styles(user_config)] == ["Calm"]
    assert "Moody" not in styles.Styles(api_saving_to(user_config)).names()


def test_deleting_the_last_user_style_leaves_an_empty_list(styles, user_config):
    store = styles.Styles(api_saving_to(user_config))
    store.save("Moody", "{prompt}, moody", "")

    store.delete("Moody")

    assert saved_user_styles(user_config) == []


def test_a_shipped_or_unknown_style_cannot_be_deleted(styles, user_config):
    store = styles.Styles(api_saving_to(user_config))
    before = user_config.read_text(encoding="utf-8")

    with pytest.raises(ValueError, match="'Oil painting' is a shipped style"):
        store.delete("Oil painting")
    with pytest.raises(ValueError, match="There is no style named 'Nope'"):
        store.delete("Nope")

    assert user_config.read_text(encoding="utf-8") == before
    assert "Oil painting" in store.names()


# --- in a job -----------------------------------------------------------------------------------------
def run(engine, style: str | None, negative: str = "blurry"):
    values = {"styles": {"style": style}} if style is not None else {}
    params = {"prompt": "a red cat", "negative_prompt": negative, **SMALL}
    return engine.run(Job("t2i", "tiny-kd22", params, extension_values=values))


def test_a_chosen_style_is_applied_and_the_saved_image_says_so(engine):
    engine.extensions = [load_styles()]

    handle = run(engine, "Oil painting")

    meta = read_output_metadata(handle.results[0].path)
    assert meta["params"]["prompt"] == f"a red cat, {OIL}"
    assert meta["params"]["negative_prompt"] == f"blurry, {OIL_NEGATIVE}"
    assert meta["extensions"] == {"styles": {"style": "Oil painting"}}


def test_no_style_leaves_the_prompt_alone(engine):
    engine.extensions = [load_styles()]

    for style in ("(no style)", "", None):
        meta = run(engine, style).results[0].meta
        assert meta["params"]["prompt"] == "a red cat"
        assert meta["params"]["negative_prompt"] == "blurry"


def test_a_user_style_from_the_config_is_applied(engine, user_config):
    styles_ext = load_styles({"user_styles": [{"name": "Moody", "prompt": "moody {prompt} in fog"}]})
    engine.extensions = [styles_ext]

    meta = run(engine, "Moody", negative="").results[0].meta

    assert meta["params"]["prompt"] == "moody a red cat in fog"
    assert meta["params"]["negative_prompt"] == ""


def test_an_unknown_style_is_refused_and_styles_keep_working(engine):
    styles_ext = load_styles()
    engine.extensions = [styles_ext]

    with pytest.raises(KubinError, match="no style named 'Gone'"):
        run(engine, "Gone")

    assert styles_ext.status == "ok"
    assert run(engine, "Oil painting").results[0].meta["params"]["prompt"] == f"a red cat, {OIL}"
