"""Kandinsky 3.1 from the authors' checkpoints, proven against their layout and arithmetic.

Every tensor of the official UNet, inpainting UNet, text projection and MoVQ (the manifests) lands, by our
key mapping, on a tensor of the same shape in the diffusers modules we run, with none missing and none left
over; at the test vectors' tiny size the authors' weights load strictly and our modules reproduce their
outputs. The unconditional context is the authors' null embedding. A folder laid out like the official repo
loads offline, by path or through the config, and a missing file is named. tiny-kd31 paints text to image,
image to image, inpaints and outpaints through the engine and the command line; Flash samples as the
authors do (4 steps, no guidance).
"""

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import reference_data
import torch
from cli_helpers import kubin_generate, kubin_server
from PIL import Image

from kubin.engine import DONE, Engine, Job
from kubin.errors import InvalidParams, WeightsMissing
from kubin.models.families.kd31 import convert
from kubin.models.families.kd31 import model as kd31_native
from kubin.models.families.kd31.inpaint import Kandinsky3InpaintUNet
from kubin.models.manager import ModelManager
from kubin.models.registry import list_models, resolve_model
from kubin.models.tiny import tiny_model_folder
from kubin.models.tiny_parts import tiny_t5_tokenizer
from kubin.outputs import read_image_metadata

MODEL = "tiny-kd31"
SMALL = {"prompt": "a red cat", "steps": 3, "seed": 1}
PRIOR_ONLY = {"negative_prior_prompt", "prior_steps", "prior_guidance_scale", "hint_image"}
TOLERANCE = 1e-4


def on_meta(keys: dict) -> dict[str, torch.Tensor]:
    """A state dict of the manifest's shapes that takes no memory."""
    return {key: torch.empty(shape, device="meta") for key, (shape, _dtype) in keys.items()}


def shapes(state: dict) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


def authors_unet_config(config: dict, t5_width: int) -> dict:
    """diffusers' constructor values for the authors' UNet config (their names, the manifest's)."""
    assert config["init_channels"] * 2 == config["model_channels"]  # what Kandinsky3UNet assumes
    assert len(set(config["num_blocks"])) == 1 and config["expansion_ratio"] == 4
    assert config["add_cross_attention"] == config["add_self_attention"] == [False, True, True, True]
    return {
        "in_channels": config["num_channels"],
        "time_embedding_dim": config["time_embed_dim"],
        "groups": config["groups"],
        "attention_head_dim": config["head_dim"],
        "layers_per_block": config["num_blocks"][0],
        "block_out_channels": [config["model_channels"] * m for m in config["dim_mult"]],
        "cross_attention_dim": config["context_dim"],
        "encoder_hid_dim": t5_width,
    }


# --- manifests: the full-size modules hold exactly the official tensors ------------------------------
@pytest.mark.parametrize(
    ("unet_manifest", "cls", "extra"),
    [
        ("kd31-unet", "Kandinsky3UNet", {}),
        ("kd31-inpaint-unet", "Kandinsky3InpaintUNet", {"out_channels": 4}),
    ],
)
def test_the_full_size_unet_and_projection_map_key_for_key_onto_our_module(unet_manifest, cls, extra):
    unet, projection = reference_data.manifest(unet_manifest), reference_data.manifest("kd31-text-projection")
    config = {**authors_unet_config(unet["config"], projection["config"]["d_model"]), **extra}
    module_class = Kandinsky3InpaintUNet if cls == "Kandinsky3InpaintUNet" else convert.unet_class({})
    with torch.device("meta"):
        ours = shapes(module_class(**config).state_dict())

    mapped = shapes(convert.unet_state_to_diffusers(on_meta(unet["keys"]), on_meta(projection["keys"])))

    assert set(mapped) == set(ours)  # nothing missing, nothing extra
    assert mapped == ours  # and every shape the same
    assert len(ours) == len(unet["keys"]) + len(projection["keys"]) == 1071
    # The constructor values we read from the checkpoint's shapes are the authors' config.
    read = convert.unet_config(on_meta(unet["keys"]), on_meta(projection["keys"]), convert.UNetArch())
    assert read == config
    assert convert.unet_class(read) is module_class


def test_the_text_projection_is_the_three_tensors_diffusers_keeps_inside_the_unet():
    projection = reference_data.manifest("kd31-text-projection")
    mapped = shapes(convert.unet_state_to_diffusers({}, on_meta(projection["keys"])))

    assert mapped == {
        "encoder_hid_proj.projection_linear.weight": (4096, 4096),
        "encoder_hid_proj.projection_norm.weight": (4096,),
        "encoder_hid_proj.projection_norm.bias": (4096,),
    }


def test_the_full_size_movq_maps_key_for_key_onto_diffusers_vqmodel():
    from diffusers import VQModel

    movq = reference_data.manifest("kd31-movq")
    native = on_meta(movq["keys"])
    with torch.device("meta"):
        ours = shapes(VQModel(**convert.movq_config(native)).state_dict())

    mapped = shapes(convert.movq_state_to_diffusers(native))

    assert set(mapped) == set(ours) and mapped == ours
    # The one tensor the authors' MoVQ lacks: the codebook, which Kandinsky 3 never reads.
    assert set(ours) - {convert.movq_key_to_diffusers(k, 4) for k in movq["keys"]} == {convert.MOVQ_CODEBOOK}
    config = convert.movq_config(native)
    assert config["block_out_channels"] == [movq["config"]["ch"] * m for m in movq["config"]["ch_mult"]]
    assert config["layers_per_block"] == movq["config"]["num_res_blocks"]
    assert config["down_block_types"][-1] == "AttnDownEncoderBlock2D"  # attention at 32x32 of 256


@pytest.mark.parametrize("name", ["kd31-unet", "kd31-inpaint-unet", "kd31-movq"])
def test_the_mapping_goes_back_to_the_official_names(name):
    keys = reference_data.manifest(name)["keys"]
    if name == "kd31-movq":
        back = {convert.movq_key_to_native(convert.movq_key_to_diffusers(k, 4), 4) for k in keys}
    else:
        back = {convert.unet_key_to_native(convert.unet_key_to_diffusers(k)) for k in keys}

    assert back == set(keys)


def test_a_key_the_mapping_does_not_know_is_an_error_not_a_silent_drop():
    with pytest.raises(KeyError, match="control_net"):
        convert.unet_key_to_diffusers("control_net.in_layer.weight")
    with pytest.raises(KeyError, match="2.bias"):
        convert.unet_state_to_diffusers({}, {"2.bias": torch.zeros(1)})
    with pytest.raises(KeyError):
        convert.movq_key_to_diffusers("quantize.embedding.weight", 4)


# --- test vectors: the authors' arithmetic ---------------------------------------------------------
@pytest.fixture(scope="module")
def vectors() -> tuple[dict, dict[str, torch.Tensor]]:
    return reference_data.vectors("kd31-tiny")


def authors(tensors, component: str) -> dict[str, torch.Tensor]:
    prefix = f"{component}.weights."
    return {k.removeprefix(prefix): v.float() for k, v in tensors.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def tiny_unet(vectors):
    metadata, tensors = vectors
    config = json.loads(metadata["unet_config"])
    arch = convert.UNetArch(groups=config["groups"], head_dim=config["head_dim"])
    return convert.build_unet(authors(tensors, "unet"), authors(tensors, "projection"), arch)


def test_the_tiny_unet_loads_strictly_at_the_authors_config(vectors, tiny_unet):
    metadata, tensors = vectors
    config = json.loads(metadata["unet_config"])

    assert dict(tiny_unet.config) | authors_unet_config(config, 16) == dict(tiny_unet.config)
    mapped = convert.unet_state_to_diffusers(authors(tensors, "unet"), authors(tensors, "projection"))
    result = type(tiny_unet)(**authors_unet_config(config, 16)).load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_the_unet_reproduces_the_authors_output_on_a_projected_context(vectors, tiny_unet):
    _, t = vectors
    projection, tiny_unet.encoder_hid_proj = tiny_unet.encoder_hid_proj, torch.nn.Identity()
    try:  # the authors' UNet takes the context after the projection
        with torch.no_grad():
            out = tiny_unet(
                t["unet.x"], t["unet.time"], t["unet.context"], t["unet.context_mask"].bool()
            ).sample
    finally:
        tiny_unet.encoder_hid_proj = projection

    assert (out - t["unet.out"]).abs().max() < TOLERANCE
    assert t["unet.out"].abs().max() > 0.1  # not a trivially small output


def test_the_unet_from_t5_hidden_states_applies_the_projection_itself(vectors, tiny_unet):
    _, t = vectors
    with torch.no_grad():
        case = "unet_from_t5."
        out = tiny_unet(
            t[case + "x"], t[case + "time"], t[case + "t5_hidden"], t[case + "context_mask"].bool()
        )

    assert (out.sample - t[case + "out"]).abs().max() < TOLERANCE


def test_the_projection_reproduces_the_authors_output(vectors, tiny_unet):
    _, t = vectors
    with torch.no_grad():
        out = tiny_unet.encoder_hid_proj(t["projection.t5_hidden"])

    assert (out - t["projection.out"]).abs().max() < TOLERANCE


def test_the_movq_encodes_and_decodes_as_the_authors(vectors):
    _, t = vectors
    movq = convert.build_movq(authors(t, "movq"))
    with torch.no_grad():
        latent = movq.encode(t["movq.image"]).latents
        decoded = movq.decode(t["movq.latent"], force_not_quantize=True).sample

    assert (latent - t["movq.latent"]).abs().max() < TOLERANCE
    assert (decoded - t["movq.decoded"]).abs().max() < TOLERANCE


def test_an_empty_context_is_the_authors_null_context_and_padding_projects_to_zero(vectors, tiny_unet):
    """Their unconditional context: the null embedding as its one visible token, zeros after it; their
    encoder zeroes the projected context at padding tokens. Our pipelines pass an all-zero T5 context."""
    _, t = vectors
    x, time = t["unet.x"], t["unet.time"]
    null = torch.randn(16, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, 0] = True
    t5 = torch.cat([t["unet_from_t5.t5_hidden"][:1], torch.zeros(1, 6, 16)])  # a prompt, and no prompt
    t5[0, 3:] = 0  # three padding tokens
    prompt_mask = torch.tensor([[True] * 3 + [False] * 3, [True] + [False] * 5])
    with torch.no_grad():
        authors_context = tiny_unet.encoder_hid_proj(t5)
        authors_context[0, 3:] = 0
        authors_context[1] = 0
        authors_context[1, 0] = null
        projection, tiny_unet.encoder_hid_proj = tiny_unet.encoder_hid_proj, torch.nn.Identity()
        expected = tiny_unet(x, time, authors_context, prompt_mask).sample
        tiny_unet.encoder_hid_proj = projection
        plain = tiny_unet(x, time, t5, prompt_mask).sample
        hook = kd31_native.attach_null_embedding(tiny_unet, null)
        try:
            ours = tiny_unet(x, time, t5, prompt_mask).sample
        finally:
            hook.remove()

    assert (ours - expected).abs().max() < TOLERANCE
    assert (plain - expected).abs().max() > 1e-3  # diffusers alone would differ from the authors


# --- a folder laid out like the official repo ------------------------------------------------------
@pytest.fixture(scope="module")
def official_folder(tmp_path_factory, vectors) -> Path:
    """The vectors' tiny weights written in the authors' file names and formats (torch.save), with a tiny
    T5 encoder as weights/flan_ul2_encoder and the two values no shape tells in weights/kubin_arch.json."""
    from transformers import T5Config, T5EncoderModel

    metadata, t = vectors
    config = json.loads(metadata["unet_config"])
    folder = tmp_path_factory.mktemp("official") / "Kandinsky3.1"
    encoder = folder / "weights" / "flan_ul2_encoder"
    encoder.mkdir(parents=True)
    unet = {k: v.half() for k, v in authors(t, "unet").items()}
    projection = {k: v.half() for k, v in authors(t, "projection").items()}
    null = torch.randn(16, generator=torch.Generator().manual_seed(1)).half()
    for unet_name, projection_name in convert.UNET_FILES.values():  # the same tiny UNet for each variant
        torch.save({"unet": unet, "null_embedding": null}, folder / unet_name)
        torch.save(projection, folder / projection_name)
    torch.save({k: v.half() for k, v in authors(t, "movq").items()}, folder / "weights" / "movq.pt")
    tokenizer = tiny_t5_tokenizer()
    torch.manual_seed(0)
    T5EncoderModel(
        T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=24, num_layers=1, num_heads=4)
    ).save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    arch = {"groups": config["groups"], "head_dim": config["head_dim"]}
    (folder / "weights" / "kubin_arch.json").write_text(json.dumps(arch))
    return folder


def test_an_official_layout_folder_is_a_model_id_and_loads_offline(official_folder, tmp_path):
    spec = resolve_model(str(official_folder))
    manager = ModelManager(device="cpu", dtype="fp32")
    engine = Engine(manager, tmp_path / "out")
    try:
        handle = engine.run(Job("t2i", str(official_folder), {**SMALL, "width": 64, "height": 64}))
    finally:
        engine.close(wait=True)
        manager.unload()

    assert (spec.module, spec.sources) == (
        "kubin.models.families.kd31.model",
        {"repo": str(official_folder.resolve())},
    )
    assert handle.state == DONE, handle.error
    assert Path(handle.results[0].path).is_file()
    assert read_image_metadata(handle.results[0].path)["family"] == "kd31"


def test_the_config_points_kd31_at_a_local_folder_and_the_conversion_is_cached(
    official_folder, tmp_path, monkeypatch
):
    monkeypatch.setenv(
        "KUBIN_CACHE_DIR", str(tmp_path / "cache")
    )  # its own: other test processes convert too
    manager = ModelManager(device="cpu", dtype="fp32", sources={"kd31": {"repo": str(official_folder)}})
    first = manager.get("kd31")
    weights = first.pipe.unet.conv_in.weight.clone()
    manager.unload()
    converted = sorted((Path(os.environ["KUBIN_CACHE_DIR"]) / "converted").iterdir())

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(convert, "build_unet", no_second_conversion)
    monkeypatch.setattr(convert, "build_movq", no_second_conversion)
    again = manager.get("kd31")

    assert sorted((Path(os.environ["KUBIN_CACHE_DIR"]) / "converted").iterdir()) == converted
    assert any((folder / convert.NULL_EMBEDDING_FILE).is_file() for folder in converted)
    assert torch.equal(again.pipe.unet.conv_in.weight, weights)
    assert torch.equal(weights.half().float(), weights)  # the checkpoint's fp16 values, unchanged
    manager.unload()


@pytest.mark.parametrize(
    "missing", ["weights/movq.pt", "weights/kandinsky3.pt", "weights/flan_ul2_encoder/projection.pt"]
)
def test_a_missing_file_is_a_clear_error_naming_it(official_folder, tmp_path, missing):
    broken = tmp_path / "Kandinsky3.1"
    shutil.copytree(official_folder, broken)
    (broken / missing).unlink()
    manager = ModelManager(device="cpu", dtype="fp32", sources={"kd31": {"repo": str(broken)}})

    with pytest.raises(WeightsMissing, match=missing.replace(".", r"\.")):
        manager.get("kd31")


def test_a_tokenizer_given_only_as_spiece_model_names_what_reads_it(official_folder, tmp_path):
    """The official encoder folder may hold its T5 tokenizer as spiece.model only, which transformers reads
    with the sentencepiece package (not installed here)."""
    broken = tmp_path / "Kandinsky3.1"
    shutil.copytree(official_folder, broken)
    encoder = broken / "weights" / "flan_ul2_encoder"
    (encoder / "tokenizer.json").unlink()
    (encoder / "spiece.model").write_bytes(b"not read here")
    manager = ModelManager(device="cpu", dtype="fp32", sources={"kd31": {"repo": str(broken)}})

    with pytest.raises(WeightsMissing, match="T5 tokenizer .* could not be read .*sentencepiece"):
        manager.get("kd31")


def test_the_inpainting_unet_is_looked_for_only_when_inpainting(official_folder, tmp_path, photo, mask):
    broken = tmp_path / "Kandinsky3.1"
    shutil.copytree(official_folder, broken)
    (broken / "weights" / "kandinsky3_inpainting.pt").unlink()
    manager = ModelManager(device="cpu", dtype="fp32", sources={"kd31": {"repo": str(broken)}})
    engine = Engine(manager, tmp_path / "out")
    try:
        painted = engine.run(Job("t2i", "kd31", {**SMALL, "width": 64, "height": 64}))
        with pytest.raises(WeightsMissing, match=r"weights/kandinsky3_inpainting\.pt"):
            engine.run(Job("inpaint", "kd31", {**SMALL, "init_image": photo, "mask": mask}))
    finally:
        engine.close(wait=True)
        manager.unload()

    assert painted.state == DONE, painted.error


def test_the_official_repo_is_found_in_the_hugging_face_cache_offline(official_folder, tmp_path, monkeypatch):
    """A snapshot of ai-forever/Kandinsky3.1 in the hub cache (as `hf download` leaves it) loads offline."""
    from huggingface_hub import constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--ai-forever--Kandinsky3.1"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(official_folder / "weights", repo / "snapshots" / commit / "weights")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    manager = ModelManager(device="cpu", dtype="fp32")
    try:
        model = manager.get("kd31")
        files = kd31_native.download(resolve_model("kd31"))
    finally:
        manager.unload()

    assert model.repo == "ai-forever/Kandinsky3.1"
    assert files["weights/flan_ul2_encoder/"] == repo / "snapshots" / commit / "weights" / "flan_ul2_encoder"
    assert files["weights/movq.pt"] == repo / "snapshots" / commit / "weights" / "movq.pt"


def test_offline_without_the_weights_names_the_repo_file_and_the_download_command():
    manager = ModelManager(device="cpu", dtype="fp32")

    with pytest.raises(WeightsMissing) as error:
        manager.get("kd31-flash")

    message = str(error.value)
    assert "weights/kandinsky3_flash.pt" in message and "ai-forever/Kandinsky3.1" in message
    assert "kubin download kd31-flash" in message and "HF_HUB_OFFLINE" in message


def test_download_lists_every_file_a_variant_needs(official_folder):
    base = kd31_native.download(replace(resolve_model("kd31"), sources={"repo": str(official_folder)}))
    flash = kd31_native.download(replace(resolve_model("kd31-flash"), sources={"repo": str(official_folder)}))

    assert set(base) == {
        "weights/kandinsky3.pt", "weights/flan_ul2_encoder/projection.pt", "weights/kandinsky3_inpainting.pt",
        "weights/flan_ul2_encoder/projection_inpainting.pt", "weights/movq.pt", "weights/flan_ul2_encoder/",
    }  # fmt: skip
    assert {"weights/kandinsky3_flash.pt", "weights/flan_ul2_encoder/projection_flash.pt"} <= set(flash)
    assert "weights/kandinsky3.pt" not in flash
    assert all(path.exists() for path in [*base.values(), *flash.values()])


# --- tiny-kd31 through the engine and the command line ---------------------------------------------
@pytest.fixture(scope="module")
def manager(fresh_manager):
    """This module's model in a manager of its own, so the session's tiny-kd22 stays loaded."""
    return fresh_manager


@pytest.fixture(scope="module")
def mask(tmp_path_factory) -> str:
    """White (repaint) in a 40x40 square of the 100x70 photo, black elsewhere."""
    path = tmp_path_factory.mktemp("masks") / "mask.png"
    image = Image.new("L", (100, 70), 0)
    image.paste(255, (20, 10, 60, 50))
    image.save(path)
    return str(path)


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_the_registry_knows_kd31_flash_and_the_tiny_twin_with_the_authors_defaults():
    base, flash, tiny = resolve_model("kd31"), resolve_model("kd31-flash"), resolve_model(MODEL)

    assert {s.family for s in (base, flash, tiny)} == {"kd31"}
    assert {s.implementation for s in (base, flash, tiny)} == {"native"}
    assert base.sources == flash.sources == {"repo": "ai-forever/Kandinsky3.1"}
    assert base.tasks == tiny.tasks == ("t2i", "i2i", "inpaint", "outpaint") and flash.tasks == ("t2i", "i2i")
    assert base.defaults["t2i"] == {"width": 1024, "height": 1024, "steps": 50, "guidance_scale": 3.0}
    assert base.defaults["inpaint"]["guidance_scale"] == 4.0  # the authors' inpainting guidance
    # Flash: the authors' 4 steps without guidance (guidance_scale 1 switches it off), its own sampler.
    assert flash.defaults["t2i"] == {"width": 1024, "height": 1024, "steps": 4, "guidance_scale": 1.0}
    assert (
        flash.defaults["i2i"]["steps"] == 4 and flash.schedulers == ("Flash",) and "flash" in flash.features
    )
    assert set(base.unused_params) == set(flash.unused_params) == set(tiny.unused_params) == PRIOR_ONLY
    assert tiny.tiny and tiny.defaults["t2i"]["width"] == 64


def test_the_inpaint_tab_lists_kd31_but_not_flash():
    inpainters = [spec.id for spec in list_models() if spec.supports("inpaint")]

    assert "kd31" in inpainters and MODEL in inpainters and "kd31-flash" not in inpainters


def test_a_saved_model_is_an_official_layout_folder_that_loads_back_with_the_same_pixels(
    manager, engine, tmp_path, photo, mask
):
    values = {**SMALL, "seed": 5}
    before = engine.run(Job("t2i", MODEL, values))
    inpainted = engine.run(Job("inpaint", MODEL, {**values, "init_image": photo, "mask": mask}))
    folder = manager.save(MODEL, tmp_path / "saved")
    spec = resolve_model(str(folder))
    other = ModelManager(device="cpu", dtype="fp32")
    again = Engine(other, tmp_path / "again")
    try:
        after = again.run(Job("t2i", str(folder), values))
        inpainted_after = again.run(
            Job("inpaint", str(folder), {**values, "init_image": photo, "mask": mask})
        )
    finally:
        again.close(wait=True)
        other.unload()

    saved = [name for variant in ("base", "inpainting") for name in convert.UNET_FILES[variant]]
    assert all((folder / name).is_file() for name in saved)
    assert not (folder / convert.UNET_FILES["flash"][0]).exists()  # the base model, not Flash
    assert (folder / "weights" / "movq.pt").is_file() and (folder / "kubin.json").is_file()
    assert (spec.module, spec.tasks, spec.defaults) == (
        "kubin.models.families.kd31.model",
        resolve_model(MODEL).tasks,
        resolve_model(MODEL).defaults,
    )
    assert np.array_equal(pixels(before.results[0].path), pixels(after.results[0].path))
    assert np.array_equal(pixels(inpainted.results[0].path), pixels(inpainted_after.results[0].path))


def authors_cosine_alphas_cumprod() -> torch.Tensor:
    """The authors' get_named_beta_schedule("cosine", 1000), written out."""
    import math

    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / 1000) / alpha_bar(i / 1000), 0.999) for i in range(1000)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), dim=0)


def test_the_default_sampler_steps_as_the_authors_ddim_with_eta_1_and_percentile_clipping():
    """The authors' p_sample_loop (timesteps 999, 899, ..., 99; x0 clipped to its 99th percentile of |x0|,
    at least 1; eta 1) and DDPM as kd31 configures it, on the same noise predictor and the same noise: every
    step lands on the same latents, except that the authors' last step ends at the first noise level
    (alphas_cumprod[0]) where diffusers ends at 1, a difference of about 1e-3."""
    from diffusers import DDPMScheduler

    steps, shape = 10, (1, 4, 8, 8)
    alphas = authors_cosine_alphas_cumprod()

    def predictor(x, t):
        return torch.tanh(1.5 * x + t / 1000.0)  # a stand-in for the UNet, with x0 that needs clipping

    seed = torch.Generator().manual_seed(0)
    start = torch.randn(shape, generator=seed, dtype=torch.float64)
    noises = [torch.randn(shape, generator=seed, dtype=torch.float64) for _ in range(steps)]
    times = list(range(999, 0, -1000 // steps)) + [0]
    authors_path, x = [], start
    for i, (t, prev) in enumerate(zip(times[:-1], times[1:], strict=True)):
        eps, a, a_prev = predictor(x, t), alphas[t], alphas[prev]
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        q = torch.quantile(x0.abs().flatten(1), 0.99, dim=-1).clamp(min=1).reshape(-1, 1, 1, 1)
        x0 = x0.clamp(-q, q) / q
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        sigma = ((1 - a / a_prev) * (1 - a_prev) / (1 - a)).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * eps + (prev != 0) * sigma * noises[i]
        authors_path.append(x)

    scheduler = DDPMScheduler(**kd31_native.SCHEDULER_CONFIG)
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    our_path = []
    for t in scheduler.timesteps:
        x = scheduler.step(predictor(x, int(t)), t, x, generator=generator).prev_sample
        our_path.append(x)

    assert scheduler.timesteps.tolist() == times[:-1]
    assert torch.allclose(scheduler.alphas_cumprod, alphas, atol=1e-6)  # the same cosine schedule
    for ours, theirs in zip(our_path[:-1], authors_path[:-1], strict=True):
        assert (ours - theirs).abs().max() < 1e-6
    assert 1e-5 < (our_path[-1] - authors_path[-1]).abs().max() < 5e-3


def test_the_flash_sampler_steps_as_the_authors_gan_loop():
    """The authors' Flash loop (times 979, 729, 479, 229; at each, noise the current clean estimate to that
    time, predict, take the clean estimate) on the same predictor and noise. Their first noising of pure
    noise is itself pure noise, so both start from the same sample at 979."""
    shape = (1, 4, 8, 8)
    alphas = authors_cosine_alphas_cumprod()

    def predictor(x, t):
        return torch.tanh(1.5 * x + t / 1000.0)

    seed = torch.Generator().manual_seed(0)
    start = torch.randn(shape, generator=seed, dtype=torch.float64)
    noises = [torch.randn(shape, generator=seed, dtype=torch.float64) for _ in range(3)]
    image = None
    for i, t in enumerate(range(979, 0, -250)):
        x_t = start if i == 0 else alphas[t].sqrt() * image + (1 - alphas[t]).sqrt() * noises[i - 1]
        image = (x_t - (1 - alphas[t]).sqrt() * predictor(x_t, t)) / alphas[t].sqrt()

    scheduler = kd31_native.flash_scheduler_class()(**kd31_native.SCHEDULER_CONFIG)
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
    scheduler.set_timesteps(4)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    for t in scheduler.timesteps:
        x = scheduler.step(predictor(x, int(t)), t, x, generator=generator).prev_sample

    assert torch.allclose(x, image, rtol=1e-5, atol=1e-6)  # float32 noise table vs their float64


def test_the_flash_sampler_runs_the_authors_timesteps_and_predicts_the_clean_latents():
    scheduler = kd31_native.flash_scheduler_class()(**kd31_native.SCHEDULER_CONFIG)
    scheduler.set_timesteps(4)
    sample, noise = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    alpha = scheduler.alphas_cumprod[229]
    clean = (sample - (1 - alpha).sqrt() * noise) / alpha.sqrt()

    assert scheduler.timesteps.tolist() == [979, 729, 479, 229]
    assert torch.allclose(scheduler.step(noise, 229, sample).prev_sample, clean)  # the last step: x0
    renoised = scheduler.step(noise, 979, sample, generator=torch.Generator().manual_seed(0)).prev_sample
    assert not torch.allclose(renoised, sample)


@pytest.mark.parametrize("task", ["t2i", "i2i"])
def test_a_batch_gives_pngs_of_the_asked_size_with_their_parameters(engine, photo, task):
    values = {"init_image": photo} if task == "i2i" else {"width": 128, "height": 64}
    handle = engine.run(Job(task, MODEL, {**SMALL, "batch_size": 2, "negative_prompt": "blurry", **values}))

    assert handle.state == DONE, handle.error
    assert [r.seed for r in handle.results] == [1, 2]
    for result in handle.results:
        with Image.open(result.path) as image:
            assert image.size == (result.width, result.height) == (128, 64)  # 100x70 snaps to 128x64
        saved = read_image_metadata(result.path)
        assert (saved["model"], saved["family"], saved["task"], saved["scheduler"]) == (
            MODEL,
            "kd31",
            task,
            "DDPM",
        )
        assert saved["params"]["negative_prompt"] == "blurry" and not PRIOR_ONLY & set(saved["params"])
    assert not np.array_equal(pixels(handle.results[0].path), pixels(handle.results[1].path))


@pytest.mark.parametrize("scheduler", resolve_model(MODEL).schedulers)
def test_every_offered_scheduler_paints(engine, manager, scheduler):
    handle = engine.run(Job("t2i", MODEL, {**SMALL, "scheduler": scheduler}))

    assert handle.state == DONE, handle.error
    assert read_image_metadata(handle.results[0].path)["scheduler"] == scheduler
    assert manager.get(MODEL).schedulers() == list(resolve_model(MODEL).schedulers)


def test_a_negative_prompt_is_cut_to_the_prompts_token_count_as_the_authors_do(engine):
    values = {**SMALL, "prompt": "a cat", "seed": 3}  # 5 tokens: a, c, a, t and end-of-text
    blurry = engine.run(Job("t2i", MODEL, {**values, "negative_prompt": "blurry photo"}))
    blurry_too = engine.run(Job("t2i", MODEL, {**values, "negative_prompt": "blurry dogs, dark"}))  # same 4
    sharp = engine.run(Job("t2i", MODEL, {**values, "negative_prompt": "sharp photo"}))

    assert np.array_equal(pixels(blurry.results[0].path), pixels(blurry_too.results[0].path))
    assert not np.array_equal(pixels(blurry.results[0].path), pixels(sharp.results[0].path))


def test_without_a_negative_prompt_the_unconditional_pass_sees_the_null_embedding(manager, engine):
    model = manager.get(MODEL)
    seen = []
    hook = model.pipe.unet.encoder_hid_proj.register_forward_hook(lambda m, a, out: seen.append(out.clone()))
    try:
        engine.run(Job("t2i", MODEL, {**SMALL, "steps": 1}))
    finally:
        hook.remove()

    [context] = seen  # one call: the unconditional half first, as the pipelines concatenate
    checkpoint = tiny_model_folder(MODEL) / "repo" / "weights" / "kandinsky3.pt"
    null = torch.load(checkpoint, weights_only=True)["null_embedding"]
    assert torch.allclose(context[0, 0], null.float()) and not context[0, 1:].any()
    assert context[1].any()  # the prompt's half is the projected prompt


def test_inpainting_repaints_the_mask_and_keeps_every_other_pixel(engine, photo, mask):
    handle = engine.run(Job("inpaint", MODEL, {**SMALL, "init_image": photo, "mask": mask, "mask_blur": 0}))

    assert handle.state == DONE, handle.error
    result = pixels(handle.results[0].path)
    original = pixels(photo)
    assert result.shape == original.shape  # the photo's own 100x70
    keep = np.asarray(Image.open(mask)) == 0
    assert np.array_equal(result[keep], original[keep])
    assert not np.array_equal(result[~keep], original[~keep])
    saved = read_image_metadata(handle.results[0].path)
    assert (saved["task"], saved["family"]) == ("inpaint", "kd31")


def test_the_inpainting_unet_sees_the_latents_the_mask_and_the_masked_image(manager, engine, photo, mask):
    model = manager.get(MODEL)
    engine.run(Job("inpaint", MODEL, {**SMALL, "init_image": photo, "mask": mask, "steps": 1}))  # loaded
    unet = model._inpainting().unet
    inputs = []
    hook = unet.register_forward_pre_hook(lambda m, args: inputs.append(args[0].clone()))
    try:
        engine.run(
            Job("inpaint", MODEL, {**SMALL, "init_image": photo, "mask": mask, "steps": 1, "mask_blur": 0})
        )
    finally:
        hook.remove()

    [sample] = inputs
    assert sample.shape == (2, 9, 8, 16)  # guidance pair; 4 + 1 + 4 channels; 128x64 at 8x
    keep = sample[0, 4]
    assert keep.min() == 0 and keep.max() == 1 and keep.mean() > 0.5  # 1 = keep: most of the picture
    assert unet.config.out_channels == 4 and unet.conv_out.out_channels == 4


def test_outpainting_grows_the_canvas(engine, photo):
    handle = engine.run(Job("outpaint", MODEL, {**SMALL, "init_image": photo, "expand": [0, 0, 28, 0]}))

    assert handle.state == DONE, handle.error
    assert Image.open(handle.results[0].path).size == (128, 70)


def test_flash_paints_with_its_sampler_without_guidance(tmp_path):
    """tiny-kd31 as Flash: the same tiny repo holds a kandinsky3_flash.pt (tiny's spec, the flash feature)."""
    flash = replace(resolve_model(MODEL), features=("flash",), schedulers=("Flash",))
    manager = ModelManager(device="cpu", dtype="fp32")
    manager.spec = lambda model_id: flash
    engine = Engine(manager, tmp_path / "out")
    calls = []
    try:
        model = manager.get(MODEL)
        hook = model.pipe.unet.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
        handle = engine.run(Job("t2i", MODEL, {"prompt": "a red cat", "steps": 4, "guidance_scale": 1.0}))
        hook.remove()
        with pytest.raises(InvalidParams, match="Flash"):
            engine.run(Job("t2i", MODEL, {"prompt": "a red cat", "steps": 4, "scheduler": "DDPM"}))
    finally:
        engine.close(wait=True)
        manager.unload()

    assert handle.state == DONE, handle.error
    assert read_image_metadata(handle.results[0].path)["scheduler"] == "Flash"
    assert calls == [1, 1, 1, 1]  # four steps, one pass each: no unconditional pass
    assert model.flash and model.schedulers() == ["Flash"]


def generate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return kubin_generate(
        tmp_path, "--model", MODEL, "--prompt", "a red cat", "--steps", "3", "--seed", "42", *args
    )


def test_the_command_line_paints_inpaints_and_repaints(tmp_path, photo, mask):
    out = tmp_path / "out"
    runs = {
        "t2i": generate(tmp_path, "--task", "t2i", "--width", "128", "--height", "64", "--output-dir", str(out)),
        "i2i": generate(tmp_path, "--task", "i2i", "--init-image", photo, "--output-dir", str(out)),
        "inpaint": generate(tmp_path, "--task", "inpaint", "--init-image", photo, "--mask", mask,
                                  "--output-dir", str(out)),
    }  # fmt: skip

    for task, done in runs.items():
        assert done.returncode == 0, done.stderr
        [line] = [json.loads(text) for text in done.stdout.splitlines() if text.strip()]
        assert (line["seed"], line["model"], line["task"]) == (42, MODEL, task)
        with Image.open(line["path"]) as image:
            assert image.size == ((100, 70) if task == "inpaint" else (128, 64))
        saved = read_image_metadata(Path(line["path"]))
        assert saved["family"] == "kd31" and saved["params"]["steps"] == 3


# --- the web UI's server ---------------------------------------------------------------------------------
@pytest.mark.server
def test_the_web_ui_server_offers_tiny_kd31_and_paints_and_inpaints_through_its_apis(tmp_path, photo, mask):
    """`python -m kubin --model tiny-kd31` as a user starts it: the page comes up, the model is listed with
    its tasks and schedulers, and the REST routes that share the UI's queue paint and inpaint."""
    import base64

    import httpx

    def encoded(path) -> str:
        return base64.b64encode(Path(path).read_bytes()).decode()

    with kubin_server(
        tmp_path, "--model", MODEL, "--output-dir", str(tmp_path / "out"), timeout=180
    ) as server:
        url = server.url
        assert httpx.get(url, timeout=10).status_code == 200

        models = httpx.get(f"{url}/kubin/api/v1/models", timeout=10).json()
        [listed] = [m for m in models if m["id"] == MODEL]
        assert listed["tasks"] == ["t2i", "i2i", "inpaint", "outpaint"] and listed["current"]
        assert listed["implementation"] == "native" and listed["schedulers"][0] == "DDPM"
        [flash] = [m for m in models if m["id"] == "kd31-flash"]
        assert flash["tasks"] == ["t2i", "i2i"] and flash["schedulers"] == ["Flash"]

        t2i = httpx.post(f"{url}/kubin/api/v1/tasks/t2i", json={"prompt": "a red cat", "steps": 2, "seed": 5,
                         "width": 128, "height": 64}, timeout=300).json()  # fmt: skip
        assert t2i["state"] == "done", t2i
        assert (t2i["results"][0]["width"], t2i["results"][0]["height"]) == (128, 64)
        inpaint = httpx.post(f"{url}/kubin/api/v1/tasks/inpaint", json={"prompt": "a red cat", "steps": 2,
                             "init_image": encoded(photo), "mask": encoded(mask)}, timeout=300).json()  # fmt: skip
        assert inpaint["state"] == "done", inpaint
        assert (inpaint["results"][0]["width"], inpaint["results"][0]["height"]) == (100, 70)
