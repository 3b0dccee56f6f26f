"""Prompt expansion: a small instruct model (tiny Qwen2) rewrites a short prompt, as a tool job in the engine's
queue; what a job was made with is recorded in its outputs' metadata."""

import shutil

import pytest
from cli_helpers import run_in_process

from kubin.engine import Job
from kubin.errors import InvalidParams, WeightsMissing
from kubin.models.registry import resolve_model
from kubin.outputs import read_output_metadata
from kubin.tools.enhance import enhance, load_enhancer
from kubin.tools.jobs import enhance_prompt, enhancement_meta
from kubin.tools.models import ToolModels
from kubin.tools.weights import tool_folder


@pytest.fixture
def enhance_engine(engine):
    engine.tool_models = ToolModels(enhance="tiny-enhance")
    return engine


def test_a_prompt_is_expanded_the_same_way_each_time(enhance_engine):
    first = enhance_prompt(enhance_engine, "a red cat", "Kandinsky 2.2")

    assert first and first != "a red cat"
    assert first == enhance_prompt(enhance_engine, "a red cat", "Kandinsky 2.2")  # greedy decoding
    with pytest.raises(InvalidParams, match="Write a short prompt first"):
        enhance_prompt(enhance_engine, "  ")


def test_an_expanded_prompt_reaches_the_pipeline_and_the_metadata(enhance_engine):
    enhanced = enhance_prompt(enhance_engine, "a red cat")
    params = {
        "prompt": enhanced + " at dusk",
        "steps": 2,
        "prior_steps": 2,
        "width": 64,
        "height": 64,
        "seed": 3,
    }
    meta = enhancement_meta("a red cat", enhanced, "tiny-enhance", params["prompt"])

    done = enhance_engine.run(Job("t2i", "tiny-kd22", params, meta=meta))

    saved = read_output_metadata(done.results[0].path)
    assert saved["params"]["prompt"] == enhanced + " at dusk"
    assert saved["prompt_enhancement"] == {
        "model": "tiny-enhance", "original": "a red cat", "enhanced": enhanced, "edited": True,
    }  # fmt: skip


def test_a_saved_enhance_model_loads_back_offline_through_the_same_loader(tmp_path):
    saved = tmp_path / "qwen"
    shutil.copytree(tool_folder("tiny-enhance", "prompt expansion model", ""), saved)

    assert enhance(load_enhancer(str(saved)), "a cat") == enhance(load_enhancer("tiny-enhance"), "a cat")


def test_a_missing_enhance_model_offline_names_it_and_kubin_download():
    with pytest.raises(WeightsMissing, match="kubin download Qwen/Qwen2.5-0.5B-Instruct"):
        load_enhancer("Qwen/Qwen2.5-0.5B-Instruct")


def test_kubin_enhance_prints_the_expanded_prompt(tmp_path, enhance_engine):
    (tmp_path / "user.yaml").write_text("")
    expected = enhance_prompt(enhance_engine, "a red cat", resolve_model("tiny-kd22").title)

    done = run_in_process(tmp_path, ["enhance", "--config", str(tmp_path / "user.yaml"), "--model", "tiny-kd22",
                                     "--enhance-model", "tiny-enhance", "a red cat"])  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_generate_enhance_prompt_expands_the_prompt_and_records_it(tmp_path, enhance_engine):
    from cli_helpers import printed

    (tmp_path / "user.yaml").write_text("")
    expected = enhance_prompt(enhance_engine, "a red cat", resolve_model("tiny-kd22").title)

    done = run_in_process(tmp_path, [
        "generate", "--config", str(tmp_path / "user.yaml"), "--model", "tiny-kd22", "--prompt", "a red cat",
        "--width", "64", "--height", "64", "--steps", "2", "--prior-steps", "2", "--enhance-prompt",
        "--enhance-model", "tiny-enhance", "--output-dir", str(tmp_path / "out"),
    ])  # fmt: skip

    assert done.returncode == 0, done.stderr
    saved = read_output_metadata(printed(done.stdout)[0]["path"])
    assert saved["params"]["prompt"] == expected
    assert (
        saved["prompt_enhancement"]["original"] == "a red cat" and not saved["prompt_enhancement"]["edited"]
    )
    assert f"notice: prompt expanded by tiny-enhance: {expected}" in done.stderr
