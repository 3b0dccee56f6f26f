"""Dynamic prompts and prompts files (kubin/prompts.py): templates expand as the README shows, the same
seed picks the same prompt, a missing wildcard file is named, and a prompts file becomes checked jobs."""

from pathlib import Path

import pytest

from kubin.errors import InvalidParams
from kubin.params import Text2ImageParams
from kubin.prompts import Wildcards, parse_prompts, plan_prompts, read_prompts_file


@pytest.fixture
def wildcards(tmp_path) -> Wildcards:
    folder = tmp_path / "wildcards"
    (folder / "people").mkdir(parents=True)
    (folder / "colors.txt").write_text("# a comment\nred\ngreen\n\nblue\n", encoding="utf-8")
    (folder / "people" / "names.txt").write_text("Ann\nBob\n", encoding="utf-8")
    return Wildcards(folder)


def test_random_mode_picks_from_variants_and_wildcard_files_the_same_way_for_the_same_seed(wildcards):
    template = "a __colors__ {cat|dog} by __people/names__"
    made = {seed: wildcards.random(template, seed) for seed in range(40)}

    allowed = {
        f"a {c} {a} by {n}" for c in ("red", "green", "blue") for a in ("cat", "dog") for n in ("Ann", "Bob")
    }
    assert set(made.values()) <= allowed
    assert len(set(made.values())) > 4, "different seeds pick different prompts"
    assert {seed: wildcards.random(template, seed) for seed in range(40)} == made, (
        "a seed picks the same again"
    )


def test_combinatorial_mode_makes_every_combination_up_to_the_limit(wildcards):
    assert wildcards.combinations("{small|big} __colors__ ball") == (
        ["small blue ball", "small green ball", "small red ball",
         "big blue ball", "big green ball", "big red ball"],
        False,
    )  # fmt: skip
    capped = Wildcards(wildcards.folder, max_combinations=4)
    assert capped.combinations("{small|big} __colors__ ball") == (
        ["small blue ball", "small green ball", "small red ball", "big blue ball"],
        True,
    )


def test_a_missing_wildcard_file_is_an_error_naming_the_file_and_the_folder(wildcards, tmp_path):
    with pytest.raises(InvalidParams) as missing:
        wildcards.random("a __animals__ in the snow", 1)
    assert str(missing.value) == (
        f"Wildcard __animals__ has no file: put animals.txt (one value per line) in the wildcards folder "
        f"{wildcards.folder} (wildcards.path in the config)."
    )
    with pytest.raises(InvalidParams, match="__animals__ has no file"):
        wildcards.combinations("{a|b} __animals__")
    with pytest.raises(InvalidParams, match=f"the wildcards folder {tmp_path / 'nowhere'} does not exist"):
        Wildcards(tmp_path / "nowhere").random("__colors__", 1)


def test_a_broken_template_is_an_error_and_ordinary_prompts_are_left_alone(wildcards):
    with pytest.raises(InvalidParams, match=r"The prompt template 'a \{red\|green cat' could not be read"):
        wildcards.random("a {red|green cat", 1)
    # "$5" and a lone "__" would trip the template parser: prompts without {} or __name__ are not templates.
    params = Text2ImageParams(prompt="a $5 toy, snake_case __ sign", negative_prompt="blur", batch_size=3)
    plan = plan_prompts(params, lambda i: i, wildcards)
    assert plan.expanded == [{}, {}, {}] and plan.templates == {}
    assert plan.calls(3) == [[0, 1, 2]], "one pipeline call for the batch, as without templates"


def test_a_job_plan_gives_each_output_its_own_prompt_and_splits_batches_where_prompts_differ(wildcards):
    params = Text2ImageParams(
        prompt="a {cat|dog}", negative_prompt="{blur|noise}", batch_count=2, batch_size=2
    )
    seeds = [100, 101, 102, 103]
    plan = plan_prompts(params, seeds.__getitem__, wildcards)

    assert plan.templates == {"prompt": "a {cat|dog}", "negative_prompt": "{blur|noise}"}
    assert [e["prompt"] for e in plan.expanded] == [wildcards.random("a {cat|dog}", s) for s in seeds]
    assert all(e["negative_prompt"] in ("blur", "noise") for e in plan.expanded)
    calls = plan.calls(2)
    assert [i for call in calls for i in call] == [0, 1, 2, 3] and all(len(c) <= 2 for c in calls)
    assert all(len({str(plan.expanded[i]) for i in call}) == 1 for call in calls), "one prompt per call"

    combos = plan_prompts(
        Text2ImageParams(prompt="a {cat|dog}", prompt_mode="combinatorial", batch_size=2),
        lambda i: i,
        wildcards,
    )
    assert [e["prompt"] for e in combos.expanded] == ["a cat", "a cat", "a dog", "a dog"]
    assert combos.calls(2) == [[0, 1], [2, 3]]


def test_a_text_prompts_file_is_one_job_per_prompt_line(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# my list\na red cat\n\n  a {green|blue} dog  \na bird\n", encoding="utf-8")

    lines = read_prompts_file(path, "t2i")

    assert [(p.line, p.params) for p in lines] == [
        (2, {"prompt": "a red cat"}),
        (4, {"prompt": "a {green|blue} dog"}),
        (5, {"prompt": "a bird"}),
    ]
    with pytest.raises(InvalidParams, match="has no prompts"):
        parse_prompts("\n# only a comment\n", "t2i")


def test_a_csv_prompts_file_sets_parameters_per_line_and_names_a_bad_column_or_value(tmp_path):
    text = 'prompt,seed,steps,negative_prompt\na red cat,5,,\n"a dog, running",6,3,blurry\n'
    lines = parse_prompts(text, "t2i", as_csv=True, name="jobs.csv", base={"steps": 2})

    assert [(p.line, p.params) for p in lines] == [
        (2, {"prompt": "a red cat", "seed": "5"}),
        (3, {"prompt": "a dog, running", "seed": "6", "steps": "3", "negative_prompt": "blurry"}),
    ]
    with pytest.raises(InvalidParams) as unknown:
        parse_prompts("prompt,stepz\na cat,3\n", "t2i", as_csv=True, name="jobs.csv")
    assert str(unknown.value).startswith(
        "jobs.csv, column 2 ('stepz') is not a parameter of Text to image; the first row names parameters: prompt,"
    )
    with pytest.raises(
        InvalidParams, match=r"jobs.csv, line 3, column 'steps': Steps must be a whole number"
    ):
        parse_prompts("prompt,steps\na cat,3\na dog,many\n", "t2i", as_csv=True, name="jobs.csv")
    with pytest.raises(InvalidParams, match=r"jobs.csv, line 2: Steps must be between 1 and 500 \(got 900\)"):
        parse_prompts("prompt,steps\na cat,900\n", "t2i", as_csv=True, name="jobs.csv")
    (tmp_path / "jobs.csv").write_text("\ufeffprompt,seed\na cat,1\n", encoding="utf-8")  # Excel's BOM
    assert read_prompts_file(tmp_path / "jobs.csv", "t2i")[0].params == {"prompt": "a cat", "seed": "1"}
    with pytest.raises(InvalidParams, match="Prompts file .*missing.txt not found"):
        read_prompts_file(Path(tmp_path / "missing.txt"), "t2i")
