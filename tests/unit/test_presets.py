"""--medvram and --lowvram: per family the options they switch on, how they merge with the user's own,
where they come from (CLI, config), and that a model loaded with them still makes its image."""

from __future__ import annotations

from dataclasses import fields

import pytest

from kubin.cli import build_parser, load_settings
from kubin.engine import DONE, Engine, Job
from kubin.errors import InvalidParams
from kubin.models.manager import ModelManager
from kubin.models.registry import FAMILIES, family_of, list_models
from kubin.models.spec import Family
from kubin.runtime.memory import OFFLOAD_MODES, MemoryOptions
from kubin.runtime.presets import apply_preset, describe_presets, out_of_memory_advice, preset_for


def test_both_presets_are_made_of_real_options_for_every_family_kubin_knows():
    names = {f.name for f in fields(MemoryOptions)}

    for preset_name in ("medvram", "lowvram"):
        assert {"kd21", "kd22", "kd30", "kd31", "kd50"} <= {
            f.id for f in FAMILIES.values() if preset_name in f.presets
        }
        for spec in list_models():  # a family without its own entry gets the generic one
            assert preset_for(preset_name, family_of(spec)) is not None
        for family in FAMILIES.values():
            preset = family.presets.get(preset_name)
            if preset is None:
                continue
            assert set(preset.options) <= names - {"preset"}, (preset_name, family.id)
            assert preset.aims_at
            MemoryOptions(**preset.options)  # valid values


def test_medvram_offloads_whole_parts_and_lowvram_goes_layer_by_layer():
    for family in ("kd21", "kd22", "kd30", "kd50"):
        medium = apply_preset(MemoryOptions(preset="medvram"), FAMILIES[family])
        low = apply_preset(MemoryOptions(preset="lowvram"), FAMILIES[family])
        assert (medium.offload, low.offload) == ("model", "sequential")
    assert apply_preset(MemoryOptions(preset="lowvram"), FAMILIES["kd50"]).vae_tiling
    assert apply_preset(MemoryOptions(preset="lowvram"), FAMILIES["kd22"]).attention_slicing


def test_no_preset_changes_nothing():
    options = MemoryOptions(vae_slicing=True)

    assert apply_preset(options, FAMILIES["kd22"]) is options
    assert preset_for("none", FAMILIES["kd22"]) is None


def test_a_preset_keeps_what_the_user_switched_on_and_the_stronger_offload_wins():
    mine = MemoryOptions(offload="sequential", free_text_encoder=True, preset="medvram")

    merged = apply_preset(mine, FAMILIES["kd50"])

    assert merged.offload == "sequential"  # the user's, stronger than medvram's model offload
    assert merged.free_text_encoder and merged.vae_tiling
    assert (
        apply_preset(MemoryOptions(offload="model", preset="lowvram"), FAMILIES["kd22"]).offload
        == "sequential"
    )


def test_a_family_added_later_gets_the_options_every_pipeline_has():
    merged = apply_preset(MemoryOptions(preset="lowvram"), Family(id="kd99", models=()))

    assert (merged.offload, merged.vae_tiling) == ("sequential", True)


def test_an_unknown_preset_is_refused_with_the_names_to_use():
    with pytest.raises(InvalidParams, match="none, medvram, lowvram"):
        MemoryOptions.from_dict({"preset": "ultravram"})
    assert MemoryOptions.from_dict({"preset": "LowVRAM"}).preset == "lowvram"
    assert MemoryOptions.from_dict({"preset": None}).preset == "none"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "none"),
        (["--medvram"], "medvram"),
        (["--lowvram"], "lowvram"),
        (["--memory-preset", "none"], "none"),
    ],
)
def test_the_preset_flags_set_memory_preset(argv, expected, tmp_path):
    args = build_parser().parse_args(["--config", str(tmp_path / "user.yaml"), *argv])

    settings = load_settings(args)

    assert MemoryOptions.from_dict(settings.get("memory")).preset == expected


def test_the_preset_flags_work_on_generate_too(tmp_path):
    args = build_parser().parse_args(["generate", "--config", str(tmp_path / "u.yaml"), "--lowvram"])

    assert load_settings(args).get("memory.preset") == "lowvram"


def test_medvram_and_lowvram_together_are_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--medvram", "--lowvram"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_preset_in_the_user_config_applies_and_the_cli_can_turn_it_off(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("memory:\n  preset: lowvram\n", encoding="utf-8")

    from_file = load_settings(build_parser().parse_args(["--config", str(user)]))
    turned_off = load_settings(build_parser().parse_args(["--config", str(user), "--memory-preset", "none"]))

    assert from_file.get("memory.preset") == "lowvram"
    assert turned_off.get("memory.preset") == "none"


def test_the_manager_applies_the_preset_of_each_models_family():
    manager = ModelManager(device="cpu", dtype="fp32", memory=MemoryOptions(preset="lowvram"))

    kd22 = manager.placement_for(manager.spec("kd22")).memory
    kd50 = manager.placement_for(manager.spec("kd50-t2v-lite-sft-5s")).memory

    assert kd22.attention_slicing and kd50.vae_tiling and not kd50.attention_slicing
    assert kd22.offload == kd50.offload == "sequential"


@pytest.mark.parametrize("preset", ["medvram", "lowvram"])
@pytest.mark.parametrize("model_id", ["tiny-kd22", "tiny-kd50-t2i"])
def test_a_model_loaded_with_a_preset_on_the_cpu_still_makes_its_image(model_id, preset, tmp_path):
    # On the CPU offload is skipped with a notice; slicing and tiling still apply.
    manager = ModelManager(device="cpu", dtype="fp32", memory=MemoryOptions(preset=preset))
    engine = Engine(manager, tmp_path)

    handle = engine.run(Job("t2i", model_id, {"prompt": "a red cat", "steps": 2, "seed": 3}))

    assert handle.state == DONE
    [result] = handle.results
    assert result.path.is_file() and result.width > 0
    engine.close(wait=True)
    manager.unload()


def test_out_of_memory_advice_steps_up_from_what_is_on():
    none = out_of_memory_advice(FAMILIES["kd22"], MemoryOptions())
    model = out_of_memory_advice(FAMILIES["kd30"], MemoryOptions(offload="model", preset="medvram"))
    video = out_of_memory_advice(
        FAMILIES["kd50"], apply_preset(MemoryOptions(preset="lowvram"), FAMILIES["kd50"]), video=True
    )

    assert (
        none
        == "--offload model, --attention-slicing, --medvram or --lowvram, or a smaller size or batch size"
    )
    assert model == (
        "--offload sequential, --attention-slicing, --quantize torchao-int8, --lowvram, "
        "or a smaller size or batch size"
    )
    assert video == "--quantize torchao-int8, or fewer frames or a smaller size"
    quantised = apply_preset(MemoryOptions(preset="lowvram", quantize="torchao-int8"), FAMILIES["kd50"])
    assert out_of_memory_advice(FAMILIES["kd50"], quantised, video=True) == "fewer frames or a smaller size"


def test_the_presets_table_lists_flags_a_user_can_type():
    parser = build_parser()
    for row in describe_presets(FAMILIES):
        args = parser.parse_args(row["flags"].split())
        assert args.offload in OFFLOAD_MODES
