"""LoRA adapters on the tiny models: files made here with peft on tiny-kd22's decoder UNet and prior and on
tiny-kd50-t2i's transformer, found in a folder by their keys, applied per job from the `loras` parameter or
the prompt's <lora:name:weight> tag, switched off for a job without them, and recorded in the outputs."""

import pytest
from lora_helpers import ATTENTION, KD50_ATTENTION, diff, kd22_decoder_lora, pixels, save_lora
from PIL import Image

from kubin.engine import Engine, Job
from kubin.errors import InvalidParams
from kubin.models.lora import LoraLibrary, take_prompt_tags
from kubin.outputs import read_image_metadata

KD22 = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2, "seed": 7}
KD50 = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "seed": 7}


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    """models/lora with two decoder adapters (one in a subfolder), a prior one, a Kandinsky 5 one, a file
    of another kind and a damaged one."""
    from diffusers import Kandinsky5Transformer3DModel, PriorTransformer, UNet2DConditionModel

    from kubin.models.tiny import tiny_model_folder

    folder = tmp_path_factory.mktemp("lora")
    kd22 = tiny_model_folder("tiny-kd22")
    unet = UNet2DConditionModel.from_pretrained(kd22 / "decoder" / "unet")
    kd22_decoder_lora(folder / "ink.safetensors", seed=1)
    save_lora(unet, folder / "styles" / "glow.safetensors", ATTENTION, 2, prefix="unet.")
    prior = PriorTransformer.from_pretrained(kd22 / "prior" / "prior")
    save_lora(prior, folder / "prior_mood.safetensors", ATTENTION, 3)
    transformer = Kandinsky5Transformer3DModel.from_pretrained(
        tiny_model_folder("tiny-kd50-t2i") / "pipeline" / "transformer"
    )
    save_lora(transformer, folder / "k5style.safetensors", KD50_ATTENTION, 4)
    import torch
    from safetensors.torch import save_file

    save_file(
        {"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 8)}, str(folder / "sdxl.safetensors")
    )
    (folder / "broken.safetensors").write_bytes(b"\x00\x01not a safetensors file")
    return folder


@pytest.fixture(scope="module")
def lora_engine(fresh_manager, lora_folder, tmp_path_factory):
    """An engine whose model gets adapters (its own manager: the session's tiny-kd22 stays untouched)."""
    engine = Engine(fresh_manager, tmp_path_factory.mktemp("out"), loras=LoraLibrary(lora_folder))
    yield engine
    engine.close(wait=True)


@pytest.fixture(scope="module")
def kd50_engine(lora_folder, tmp_path_factory):
    from kubin.models.manager import ModelManager

    manager = ModelManager(device="cpu", dtype="fp32")
    engine = Engine(manager, tmp_path_factory.mktemp("out50"), loras=LoraLibrary(lora_folder))
    yield engine
    engine.close(wait=True)
    manager.unload()


def run(engine, task="t2i", model="tiny-kd22", **values):
    base = KD22 if model == "tiny-kd22" else KD50
    return engine.run(Job(task, model, {**base, **values})).results[0]


def test_the_folder_lists_each_file_with_what_it_fits_and_why_others_fit_nothing(lora_folder):
    found = {f.name: f for f in LoraLibrary(lora_folder).list()}
    assert set(found) == {"ink", "styles/glow", "prior_mood", "k5style", "sdxl", "broken"}
    assert (found["ink"].family, found["ink"].part, found["ink"].rank) == ("kd22", "decoder", 4)
    assert (found["styles/glow"].family, found["styles/glow"].part) == ("kd22", "decoder")  # unet.-prefixed
    assert (found["prior_mood"].family, found["prior_mood"].part) == ("kd22", "prior")
    assert (found["k5style"].family, found["k5style"].part) == ("kd50", "transformer")
    assert found["ink"].triggers == ("inkstyle",)
    assert not found["sdxl"].fits and "kohya" in found["sdxl"].reason
    assert not found["broken"].fits and "broken.safetensors cannot be read" in found["broken"].reason


def test_a_lora_changes_the_pixels_weight_zero_does_not_and_a_job_without_one_is_the_base_model(
    lora_engine, engine
):
    base = run(lora_engine)
    with_lora = run(lora_engine, loras=["ink:1"])
    zero = run(lora_engine, loras=["ink:0"])
    after = run(lora_engine)
    fresh = run(engine)  # the session's model, which never had an adapter
    assert diff(base, with_lora) > 1
    assert diff(base, zero) == 0
    assert diff(base, after) == 0 and diff(fresh, after) == 0


def test_the_pixel_change_grows_with_the_weight_and_two_adapters_combine(lora_engine):
    base = run(lora_engine)
    changes = [diff(base, run(lora_engine, loras=[f"ink:{w}"])) for w in (0.25, 0.5, 1.0)]
    assert changes[0] < changes[1] < changes[2]
    ink, glow = run(lora_engine, loras=["ink"]), run(lora_engine, loras=["styles/glow"])
    both = run(lora_engine, loras=["ink", "glow"])  # a unique file name needs no subfolder
    assert diff(both, ink) > 1 and diff(both, glow) > 1
    prior = run(lora_engine, loras=["prior_mood:1"])
    assert diff(base, prior) > 1


def test_the_prompt_tag_gives_the_pixels_of_the_loras_parameter_and_leaves_the_prompt(lora_engine):
    assert take_prompt_tags("a cat, <lora:ink:0.7>, oil") == ("a cat, oil", ["ink:0.7"])
    tagged = run(lora_engine, prompt="a red cat <lora:ink:0.7>")
    param = run(lora_engine, loras=["ink:0.7"])
    assert diff(tagged, param) == 0
    assert tagged.meta["params"]["prompt"] == "a red cat"
    assert tagged.meta["params"]["loras"] == ["ink:0.7"]


def test_outputs_record_each_adapter_and_restoring_reselects_it(lora_engine, lora_folder):
    from kubin.models.lora import file_hash
    from kubin.params import Text2ImageParams

    result = run(lora_engine, loras=["ink:0.5", "prior_mood"])
    short = file_hash(lora_folder / "ink.safetensors")
    saved = read_image_metadata(result.path)
    assert saved["loras"][0] == {"name": "ink", "weight": 0.5, "hash": short}
    assert f'Lora hashes: "ink: {short}, prior_mood: ' in Image.open(result.path).text["parameters"]
    restored = Text2ImageParams.from_dict(saved["params"])
    assert restored.loras == ["ink:0.5", "prior_mood:1"]
    again = lora_engine.run(Job("t2i", "tiny-kd22", restored)).results[0]
    assert diff(result, again) == 0


def test_kandinsky_5_takes_its_transformer_lora_and_refuses_a_kd22_one(kd50_engine):
    base = run(kd50_engine, model="tiny-kd50-t2i")
    styled = run(kd50_engine, model="tiny-kd50-t2i", loras=["k5style"])
    after = run(kd50_engine, model="tiny-kd50-t2i")
    assert diff(base, styled) > 1 and diff(base, after) == 0
    with pytest.raises(InvalidParams) as refused:
        run(kd50_engine, model="tiny-kd50-t2i", loras=["ink"])
    assert str(refused.value) == (
        "The LoRA ink.safetensors fits the decoder UNet of family kd22 (or kd21: its layers are alike there), "
        "rank 4; Kandinsky 5.0 T2I (tiny, random weights, for tests and demos) (family kd50) needs a LoRA for its "
        "transformer."
    )


def test_a_lora_for_another_family_a_damaged_file_and_an_unknown_name_fail_at_submit(lora_engine):
    for loras, said in (
        (["k5style"], "The LoRA k5style.safetensors fits the transformer of family kd50"),
        (["broken"], "The LoRA file broken.safetensors cannot be read"),
        (["sdxl"], "The LoRA sdxl.safetensors fits no model family (kohya-style keys"),
        (
            ["sdxl"],
            "Expected: diffusers/peft keys (down_blocks.1.attentions.0.to_q.lora_A.weight, optionally",
        ),
        (["nothere"], "No LoRA named 'nothere'"),
    ):
        with pytest.raises(InvalidParams, match=said.replace("(", r"\(")):
            lora_engine.submit(Job("t2i", "tiny-kd22", {**KD22, "loras": loras}))
    assert run(lora_engine).path.is_file()  # the engine goes on


def test_mix_prompts_take_tags_too_and_inpainting_and_controlnet_take_the_decoder_lora(lora_engine, photo):
    mix = {k: v for k, v in KD22.items() if k != "prompt"}
    mixed = lora_engine.run(Job("mix", "tiny-kd22", {**mix, "prompts": ["a cat <lora:ink:0.5>", "a dog"],
                                                     "weights": [0.5, 0.5]})).results[0]  # fmt: skip
    assert mixed.meta["params"]["prompts"] == ["a cat", "a dog"] and mixed.meta["params"]["loras"] == [
        "ink:0.5"
    ]
    inpaint = {k: v for k, v in KD22.items() if k not in ("width", "height")} | {
        "init_image": photo,
        "mask": photo,
    }
    prior_only = lora_engine.run(Job("inpaint", "tiny-kd22", {**inpaint, "loras": ["prior_mood"]}))
    assert prior_only.results[0].meta["loras"][0]["name"] == "prior_mood"
    # The inpainting and ControlNet decoders have UNets of their own, with the text-to-image decoder's
    # attention layers: a decoder adapter applies there too, and a job without it gets their own pixels.
    hinted = {**KD22, "hint_image": photo, "estimate_depth": "never"}
    for task, values in (("inpaint", inpaint), ("t2i", hinted)):
        plain = lora_engine.run(Job(task, "tiny-kd22", values)).results[0]
        inked = lora_engine.run(Job(task, "tiny-kd22", {**values, "loras": ["ink"]})).results[0]
        plain_again = lora_engine.run(Job(task, "tiny-kd22", values)).results[0]
        assert diff(inked, plain) > 1, task
        assert (pixels(plain_again) == pixels(plain)).all(), task
        assert inked.meta["loras"][0]["name"] == "ink"


def test_an_extension_adds_an_adapter_from_its_before_job_hook(lora_engine, tmp_path):
    import yaml

    from kubin.extensions.loader import discover, load_all

    folder = tmp_path / "extensions" / "inker"
    folder.mkdir(parents=True)
    manifest = {"name": "inker", "version": "0.1.0", "kubin": ">=0.1", "requirements": []}
    (folder / "extension.yaml").write_text(yaml.safe_dump(manifest))
    (folder / "main.py").write_text(
        "def setup(api):\n"
        "    api.on('before_job', lambda task, params: {**params, 'loras': [*params.get('loras', []), 'ink:0.7']})\n"
    )
    lora_engine.extensions = load_all(discover(tmp_path / "extensions"))
    try:
        added = run(lora_engine)
    finally:
        lora_engine.extensions = []
    assert added.meta["params"]["loras"] == ["ink:0.7"]
    assert diff(added, run(lora_engine, loras=["ink:0.7"])) == 0


def test_a_lora_weight_grid_axis_makes_one_cell_per_weight_from_the_base_model_up(lora_engine):
    from kubin.grid import make_plan, run_grid

    plan = make_plan(
        "t2i", "tiny-kd22", dict(KD22, loras=["prior_mood:1"]), [("LoRA weight", "ink, 0, 0.5, 1")]
    )
    assert [c.params["loras"] for c in plan.cells()] == [
        ["prior_mood:1"], ["prior_mood:1", "ink:0.5"], ["prior_mood:1", "ink:1"],
    ]  # fmt: skip
    assert plan.labels()[0] == ["ink: 0", "ink: 0.5", "ink: 1"]
    grid = run_grid(lora_engine, plan)
    cells = [h.results[0] for h in grid.handles]
    base = run(lora_engine, loras=["prior_mood:1"])
    assert diff(cells[0], base) == 0
    assert 1 < diff(cells[1], base) < diff(cells[2], base)
    assert read_image_metadata(cells[2].path)["loras"][-1]["weight"] == 1
