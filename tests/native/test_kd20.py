"""Kandinsky 2.0, our own implementation, checked against the authors' work and run as a user runs it.

Checkpoint compatibility: at full size (on the meta device) our UNets hold exactly the tensors of the
manifests' state dicts, and the autoencoder's latent-diffusion names map onto diffusers' AutoencoderKL and
back. Arithmetic: the tiny test vectors' weights load strictly and give the authors' outputs. Weights: a
folder in the official layout loads offline and a missing file is named. Sampling: diffusers' DDIM and
DDPM (learned range) take the authors' steps, and where they differ (DDIM step counts that do not divide
1000) it is shown. Then tiny-kd20 through the engine and the command line: text to image, image to image,
inpainting and outpainting, seeds, progress, cancel, and a saved model folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference_data
import torch
from cli_helpers import kubin_generate, kubin_server
from PIL import Image

from kubin.engine import DONE, Engine, Job
from kubin.errors import WeightsMissing
from kubin.models.families.kd20 import model as kd20_native
from kubin.models.families.kd20.model import (
    INPAINT_UNET_FILE,
    UNET_FILE,
    VAE_DDCONFIG,
    VAE_FILE,
    latent_keep_mask,
    scheduler_for,
    vae_config,
    vae_to_ldm,
)
from kubin.models.families.kd20.unet import Kandinsky20UNet, MultilingualCLIPText, UNetConfig
from kubin.models.manager import ModelManager
from kubin.models.registry import resolve_model
from kubin.models.tiny_parts import tiny_t5_tokenizer, tiny_xlm_roberta_tokenizer
from kubin.outputs import read_image_metadata
from kubin.runtime.device import Placement

MODEL = "tiny-kd20"
PRIOR_ONLY = {"negative_prior_prompt", "prior_steps", "prior_guidance_scale", "hint_image"}


def shapes(state: dict) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state.items()}


# --- checkpoint layout: the manifests --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["kd20-unet", "kd20-inpaint-unet"])
def test_our_full_size_unets_hold_exactly_the_official_tensors(name):
    wanted = reference_data.manifest(name)
    with torch.device("meta"):
        unet = Kandinsky20UNet(UNetConfig.from_dict(wanted["config"]))

    ours = shapes(unet.state_dict())
    theirs = {key: shape for key, (shape, _dtype) in wanted["keys"].items()}
    assert sorted(set(theirs) - set(ours)) == []  # nothing missing
    assert sorted(set(ours) - set(theirs)) == []  # nothing extra
    assert ours == theirs  # the same shapes
    assert sum(p.numel() for p in unet.parameters()) == wanted["params"]


def test_the_published_configs_are_our_defaults():
    unet = reference_data.manifest("kd20-unet")["config"]
    assert UNetConfig.from_dict(unet) == UNetConfig()
    assert UNetConfig.from_dict(reference_data.manifest("kd20-inpaint-unet")["config"]) == UNetConfig(
        inpainting=True
    )
    ddconfig = reference_data.manifest("kd20-vae")["config"]["ddconfig"]
    assert {k: ddconfig[k] for k in VAE_DDCONFIG} == VAE_DDCONFIG


def test_the_official_autoencoder_maps_onto_diffusers_and_back_with_nothing_missing_or_extra():
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    wanted = reference_data.manifest("kd20-vae")
    theirs = {key: shape for key, (shape, _dtype) in wanted["keys"].items()}
    with torch.device("meta"):
        vae = AutoencoderKL(**vae_config(wanted["config"]["ddconfig"]))
        official = {key: torch.empty(shape) for key, shape in theirs.items()}
    ours = shapes(vae.state_dict())

    converted = convert_ldm_vae_checkpoint(official, vae.config)  # what load_vae does with vae.ckpt
    assert shapes(converted) == ours  # every tensor of ours filled, with its shape
    assert len(converted) == len(official)  # and every official tensor used
    assert shapes(vae_to_ldm(vae.state_dict())) == theirs  # our writer gives the official names back


@pytest.mark.parametrize(
    "change",
    [{"resblock_updown": False}, {"use_scale_shift_norm": False}, {"pooling_type": "attention_pooling"}],
)
def test_a_configuration_we_have_not_written_is_refused_rather_than_built_wrong(change):
    with pytest.raises(ValueError, match="the published configuration"):
        Kandinsky20UNet(UNetConfig(num_channels=32, model_dim=32, **change))


# --- arithmetic: the test vectors ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vectors():
    meta, tensors = reference_data.vectors("kd20-tiny")
    return tensors, meta


def vector_weights(tensors: dict, name: str) -> dict:
    prefix = f"{name}.weights."
    return {k[len(prefix) :]: v.float() for k, v in tensors.items() if k.startswith(prefix)}


def vector_inputs(tensors: dict, name: str) -> dict:
    keys = ["full_emb1", "pooled_emb1", "full_emb2"]
    if name == "inpaint_unet":
        keys += ["inpaint_image", "inpaint_mask"]
    return {k: tensors[f"{name}.{k}"] for k in keys}


@pytest.mark.parametrize("name", ["unet", "inpaint_unet"])
def test_the_tiny_vectors_load_strictly_and_give_the_authors_outputs(vectors, name):
    tensors, meta = vectors
    unet = Kandinsky20UNet(UNetConfig.from_dict(json.loads(meta[f"{name}_config"]))).eval()

    unet.load_state_dict(vector_weights(tensors, name), strict=True)
    with torch.no_grad():
        out = unet(tensors[f"{name}.x"], tensors[f"{name}.timesteps"], **vector_inputs(tensors, name))

    expected = tensors[f"{name}.out"]
    assert out.shape == expected.shape
    assert (out - expected).abs().max().item() < 1e-4
    assert expected.abs().max().item() > 0.1  # the comparison means something


def test_the_inpainting_unet_reads_the_image_only_where_the_mask_keeps_it(vectors):
    tensors, meta = vectors
    unet = Kandinsky20UNet(UNetConfig.from_dict(json.loads(meta["inpaint_unet_config"]))).eval()
    unet.load_state_dict(vector_weights(tensors, "inpaint_unet"))
    inputs = vector_inputs(tensors, "inpaint_unet")
    x, t = tensors["inpaint_unet.x"], tensors["inpaint_unet.timesteps"]
    mask = torch.zeros_like(inputs["inpaint_mask"])
    mask[..., :4] = 1

    with torch.no_grad():
        base = unet(x, t, **{**inputs, "inpaint_mask": mask})
        changed_hidden = inputs["inpaint_image"].clone()
        changed_hidden[..., 4:] += 1
        hidden = unet(x, t, **{**inputs, "inpaint_mask": mask, "inpaint_image": changed_hidden})
        changed_kept = inputs["inpaint_image"].clone()
        changed_kept[..., :4] += 1
        kept = unet(x, t, **{**inputs, "inpaint_mask": mask, "inpaint_image": changed_kept})

    assert torch.equal(base, hidden)
    assert not torch.allclose(base, kept)


# --- weights: a folder in the official layout ------------------------------------------------------------
def write_text_encoders(folder: Path, width1: int, pooled1: int) -> None:
    """text_encoder1/ and text_encoder2/ as the official repo holds them (config.json, pytorch_model.bin,
    tokenizer files), at toy size."""
    from transformers import MT5Config, MT5EncoderModel, XLMRobertaConfig

    tokenizer1, tokenizer2 = tiny_xlm_roberta_tokenizer(), tiny_t5_tokenizer()
    torch.manual_seed(0)
    config1 = XLMRobertaConfig(
        vocab_size=len(tokenizer1), hidden_size=width1, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=16, max_position_embeddings=80, pad_token_id=1,
    )  # fmt: skip
    encoder1 = MultilingualCLIPText(config1, pooled1)
    config2 = MT5Config(
        vocab_size=len(tokenizer2), d_model=512, d_kv=8, d_ff=16, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, decoder_start_token_id=0,
    )  # fmt: skip
    encoder2 = MT5EncoderModel(config2)
    for name, config, encoder, tokenizer in (
        ("text_encoder1", config1, encoder1, tokenizer1),
        ("text_encoder2", config2, encoder2, tokenizer2),
    ):
        (folder / name).mkdir(parents=True)
        config.save_pretrained(folder / name)
        torch.save(encoder.state_dict(), folder / name / "pytorch_model.bin")
        tokenizer.save_pretrained(folder / name)


@pytest.fixture(scope="module")
def official_folder(vectors, tmp_path_factory) -> Path:
    """The vectors' tiny UNets and a tiny autoencoder and text encoders, saved as sberbank-ai/Kandinsky_2.0
    lays out its files: UNet state dicts (.pt), a Lightning vae.ckpt in latent-diffusion names (with the
    training loss's tensors, which are not the autoencoder's), transformers folders with pytorch_model.bin.
    The one addition is kubin.json with the toy configs (the official repo's are the code's defaults)."""
    from diffusers import AutoencoderKL

    tensors, meta = vectors
    folder = tmp_path_factory.mktemp("official")
    torch.save(vector_weights(tensors, "unet"), folder / UNET_FILE)
    torch.save(vector_weights(tensors, "inpaint_unet"), folder / INPAINT_UNET_FILE)
    ddconfig = {"z_channels": 4, "resolution": 64, "ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1}
    torch.manual_seed(0)
    vae = AutoencoderKL(**vae_config(ddconfig))
    ldm = vae_to_ldm(vae.state_dict())
    ldm["loss.discriminator.main.0.weight"] = torch.zeros(3)
    torch.save({"state_dict": ldm, "epoch": 7}, folder / VAE_FILE)
    torch.save(vae.state_dict(), folder / "vae-diffusers.reference")
    config = json.loads(meta["unet_config"])
    write_text_encoders(folder, config["text_encoder_in_dim1"], config["text_encoder_in_dim2"])
    (folder / "kubin.json").write_text(json.dumps({"unet_config": config, "vae_ddconfig": ddconfig}))
    return folder


@pytest.fixture(scope="module")
def loaded_official(official_folder):
    spec = resolve_model("kd20")
    return kd20_native.load(spec, {"repo": str(official_folder)}, Placement("cpu", "fp32"))


@pytest.mark.parametrize("name", ["unet", "inpaint_unet"])
def test_a_folder_in_the_official_layout_loads_offline_and_gives_the_authors_outputs(
    vectors, loaded_official, name
):
    tensors, _ = vectors
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    unet = loaded_official.unet if name == "unet" else loaded_official._inpaint_unet()

    with torch.no_grad():
        out = unet(tensors[f"{name}.x"], tensors[f"{name}.timesteps"], **vector_inputs(tensors, name))

    assert (out - tensors[f"{name}.out"]).abs().max().item() < 1e-4


def test_the_official_vae_checkpoint_loads_every_tensor_through_the_ldm_conversion(
    official_folder, loaded_official
):
    reference = torch.load(official_folder / "vae-diffusers.reference", weights_only=True)
    loaded = loaded_official.vae.state_dict()

    assert loaded.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(loaded[key], value), key


def test_the_text_encoders_follow_the_authors_padding_and_pooling(loaded_official):
    model = loaded_official
    text = model._encode_prompt("a red cat", "", batch=2)

    assert text["full_emb1"].shape == (4, 77, 24)  # prompt rows, then negative rows; 77 tokens each
    assert text["pooled_emb1"].shape == (4, 20)
    assert text["full_emb2"].shape == (4, 77, 512)
    assert torch.equal(text["full_emb1"][0], text["full_emb1"][1])
    assert not torch.equal(text["full_emb1"][1], text["full_emb1"][2])
    # The pooled output is the linear map of the attention-masked mean of XLM-R's hidden states.
    tokens = model.tokenizer1(["a red cat"], max_length=77, padding="max_length", return_tensors="pt")
    hidden = model.text_encoder1.transformer(**tokens)[0]
    mask = tokens["attention_mask"][..., None]
    mean = (hidden * mask).sum(1) / mask.sum(1)
    assert torch.allclose(
        text["pooled_emb1"][0], model.text_encoder1.LinearTransformation(mean)[0], atol=1e-6
    )


def copy_folder(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize(
    "missing", [UNET_FILE, VAE_FILE, "text_encoder1/pytorch_model.bin", "text_encoder2/config.json"]
)
def test_a_missing_file_is_a_clear_error_naming_it(official_folder, tmp_path, missing):
    folder = copy_folder(official_folder, tmp_path / "copy")
    (folder / missing).unlink()

    with pytest.raises(WeightsMissing, match=rf"has no {missing}; a Kandinsky 2\.0 folder holds the files"):
        kd20_native.load(resolve_model("kd20"), {"repo": str(folder)}, Placement("cpu", "fp32"))


def test_a_missing_inpainting_unet_is_named_when_inpainting_starts(official_folder, tmp_path):
    folder = copy_folder(official_folder, tmp_path / "copy")
    (folder / INPAINT_UNET_FILE).unlink()
    model = kd20_native.load(resolve_model("kd20"), {"repo": str(folder)}, Placement("cpu", "fp32"))

    with pytest.raises(WeightsMissing, match=rf"has no {INPAINT_UNET_FILE}"):
        model._inpaint_unet()


def test_offline_without_the_weights_is_one_clear_sentence_naming_the_repo_and_file():
    spec = resolve_model("kd20")

    with pytest.raises(
        WeightsMissing,
        match=r"^Model kd20 needs Kandinsky-2-0\.pt from sberbank-ai/Kandinsky_2\.0, which is not in the "
        r"Hugging Face cache and downloads are off",
    ):
        kd20_native.load(spec, spec.sources, Placement("cpu", "fp32"))


def test_a_vae_checkpoint_with_training_objects_still_loads(official_folder, tmp_path):
    import argparse

    folder = copy_folder(official_folder, tmp_path / "copy")
    checkpoint = torch.load(folder / VAE_FILE, weights_only=True)
    checkpoint["hyper_parameters"] = argparse.Namespace(learning_rate=4.5e-6)  # not a tensor or plain data
    torch.save(checkpoint, folder / VAE_FILE)

    model = kd20_native.load(resolve_model("kd20"), {"repo": str(folder)}, Placement("cpu", "fp32"))

    reference = torch.load(official_folder / "vae-diffusers.reference", weights_only=True)
    assert all(torch.equal(model.vae.state_dict()[k], v) for k, v in reference.items())


def test_in_half_precision_the_mt5_encoder_stays_in_float32(official_folder):
    files = kd20_native.ModelFiles(str(official_folder), "kd20")

    parts = kd20_native.load_text_encoders(files, Placement("cpu", "fp16"))

    assert parts["text_encoder1"].LinearTransformation.weight.dtype == torch.float16
    assert parts["text_encoder2"].dtype == torch.float32  # mT5 overflows in float16


SPIECE_WRITER = """
import sys
from transformers.utils import sentencepiece_model_pb2_new as spm
model = spm.ModelProto()
pieces = [("<pad>", 0, 3), ("</s>", 0, 3), ("<unk>", 0, 2), ("\\u2581", -2, 1)]
pieces += [(p, -3, 1) for c in "acdert" for p in (c, "\\u2581" + c)]
for piece, score, kind in pieces:
    entry = model.pieces.add()
    entry.piece, entry.score, entry.type = piece, score, kind
model.trainer_spec.model_type = 1  # unigram
model.trainer_spec.unk_id, model.trainer_spec.pad_id, model.trainer_spec.eos_id = 2, 0, 1
model.trainer_spec.bos_id = -1
model.normalizer_spec.add_dummy_prefix = True
open(sys.argv[1], "wb").write(model.SerializeToString())
"""


def write_sentencepiece_only_tokenizer(folder: Path) -> None:
    """A T5 tokenizer as the official text_encoder2/ holds it: spiece.model and its configs, no tokenizer.json.

    The model file is written in another process: importing transformers' copy of the SentencePiece proto
    here would clash with the sentencepiece package's own copy when the tokenizer is read."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", SPIECE_WRITER, str(folder / "spiece.model")], check=True)
    specials = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", **specials}))


def test_a_sentencepiece_only_tokenizer_loads_or_says_which_package_it_needs(tmp_path):
    import importlib.util

    from kubin.errors import KubinError

    write_sentencepiece_only_tokenizer(tmp_path / "text_encoder2")

    if importlib.util.find_spec("sentencepiece") is None:
        with pytest.raises(KubinError, match=r"needs the sentencepiece package: install it with"):
            kd20_native._tokenizer(tmp_path / "text_encoder2")
    else:
        tokenizer = kd20_native._tokenizer(tmp_path / "text_encoder2")
        assert tokenizer("a red cat").input_ids[-1] == 1  # </s>


def fake_hub(monkeypatch, repo_folder: Path, cached: set[str]) -> list[tuple[str, bool]]:
    """hf_hub_download serving `repo_folder` as sberbank-ai/Kandinsky_2.0: files in `cached` come from the
    cache, the others only by download (and then they are cached)."""
    import huggingface_hub

    calls = []

    def hf_hub_download(repo_id, filename, local_files_only=False, **kwargs):
        assert repo_id == "sberbank-ai/Kandinsky_2.0"
        calls.append((filename, local_files_only))
        if local_files_only and filename not in cached:
            raise huggingface_hub.errors.LocalEntryNotFoundError(f"{filename} is not cached")
        cached.add(filename)
        return str(repo_folder / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return calls


def test_the_hub_repo_is_read_from_the_cache_first_and_downloaded_once(official_folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    cached = {UNET_FILE}
    calls = fake_hub(monkeypatch, official_folder, cached)
    spec = resolve_model("kd20")

    found = kd20_native.download(spec)

    assert found[UNET_FILE] == official_folder / UNET_FILE
    assert found["text_encoder1"] == official_folder / "text_encoder1"
    assert calls[0] == (UNET_FILE, True)  # from the cache, no download
    assert (VAE_FILE, True) in calls and (VAE_FILE, False) in calls  # the cache first, then the download
    assert ("text_encoder2/spiece.model", False) in calls  # what the authors fetch of each text encoder
    calls.clear()
    kd20_native.download(spec)
    assert all(local for _name, local in calls)  # the second time everything comes from the cache


def test_an_official_folder_is_a_model_id(official_folder):
    spec = resolve_model(str(official_folder))

    assert spec.module == "kubin.models.families.kd20.model" and spec.sources == {
        "repo": str(official_folder.resolve())
    }
    assert spec.tasks == ("t2i", "i2i", "inpaint", "outpaint")


# --- sampling: diffusers' schedulers against the authors' samplers ---------------------------------------
def authors_alphas_cumprod() -> np.ndarray:
    return np.cumprod(1.0 - np.linspace(0.0001, 0.02, 1000, dtype=np.float64))


def authors_ddim_timesteps(steps: int) -> list[int]:
    """Their DDIM sampler's timesteps, last first: every (1000 // steps)-th from 0, plus one."""
    return [t + 1 for t in range(0, 1000, 1000 // steps)][::-1]


@pytest.mark.parametrize("steps", [4, 10, 25, 50, 100])
def test_ddim_takes_the_authors_timesteps_when_the_steps_divide_1000(steps):
    scheduler = scheduler_for("DDIM")
    scheduler.set_timesteps(steps)

    assert scheduler.timesteps.tolist() == authors_ddim_timesteps(steps)


def test_ddim_runs_the_steps_asked_for_where_the_authors_sampler_runs_more():
    """The difference we keep: for 75 steps the authors' sampler strides by 13 from 0 to 988 (77 steps);
    diffusers strides by 13 for exactly 75 steps, so progress and step counts mean what the user asked."""
    scheduler = scheduler_for("DDIM")
    scheduler.set_timesteps(75)

    assert len(authors_ddim_timesteps(75)) == 77
    assert len(scheduler.timesteps) == 75
    assert scheduler.timesteps.tolist() == authors_ddim_timesteps(75)[2:]  # the same, less their 2 noisiest


def test_a_ddim_step_is_the_authors_update_with_their_eta():
    scheduler = scheduler_for("DDIM")
    scheduler.set_timesteps(10)
    ac = authors_alphas_cumprod()
    gen = torch.Generator().manual_seed(0)
    x, eps, noise = (torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    for t, prev in ((901, 801), (1, None)):
        a, a_prev = ac[t], ac[prev] if prev is not None else ac[0]  # the last step goes to alphas_cumprod[0]
        sigma = kd20_native.DDIM_ETA * np.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
        x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
        expected = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma**2) * eps + sigma * noise

        out = scheduler.step(
            eps.float(), t, x.float(), eta=kd20_native.DDIM_ETA, variance_noise=noise.float()
        ).prev_sample

        assert torch.allclose(out.double(), expected, atol=1e-5), t


def authors_respaced_timesteps(steps: int) -> list[int]:
    """Their p_sampler's respacing of 1000 steps into `steps` (one section), last first."""
    stride = 999 / (steps - 1) if steps > 1 else 1
    taken, position = [], 0.0
    for _ in range(steps):
        taken.append(round(position))
        position += stride
    return sorted(taken, reverse=True)


@pytest.mark.parametrize("steps", [4, 7, 50, 75, 100])
def test_ddpm_takes_the_timesteps_of_the_authors_respaced_sampler(steps):
    scheduler = scheduler_for("DDPM")
    scheduler.set_timesteps(steps)

    assert scheduler.timesteps.tolist() == authors_respaced_timesteps(steps)


def test_a_ddpm_step_is_the_authors_learned_range_ancestral_step_with_clipped_x0():
    steps = 7
    scheduler = scheduler_for("DDPM")
    scheduler.set_timesteps(steps)
    timesteps = authors_respaced_timesteps(steps)
    ac = authors_alphas_cumprod()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64)
    eps = torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64) * 3  # large: x0 gets clipped
    v = torch.rand(1, 4, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1
    for i in (0, 3):
        t, prev = timesteps[i], timesteps[i + 1]
        a, a_prev = ac[t], ac[prev]
        beta = 1 - a / a_prev  # the respaced process's beta
        x0 = ((x - np.sqrt(1 - a) * eps) / np.sqrt(a)).clamp(-1, 1)
        mean = beta * np.sqrt(a_prev) / (1 - a) * x0 + (1 - a_prev) * np.sqrt(1 - beta) / (1 - a) * x
        log_var = (v + 1) / 2 * np.log(beta) + (1 - v) / 2 * np.log(beta * (1 - a_prev) / (1 - a))
        noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
        expected = mean + torch.exp(0.5 * log_var) * noise.double()

        model_output = torch.cat([eps, v], dim=1).float()
        out = scheduler.step(
            model_output, t, x.float(), generator=torch.Generator().manual_seed(5)
        ).prev_sample

        assert torch.allclose(out.double(), expected, atol=1e-5), t


def test_the_inpainting_mask_grows_the_repainted_area_as_the_authors_do():
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 24, 32, 32))  # one latent pixel, (3, 3), to repaint

    keep = latent_keep_mask(mask, (8, 8))[0, 0]

    repainted = {(int(i), int(j)) for i, j in zip(*np.nonzero(keep.numpy() == 0), strict=True)}
    # Their prepare_mask clears the kept pixels beside a repainted one along the axes and the main diagonal.
    assert repainted == {(3, 3), (2, 3), (4, 3), (3, 2), (3, 4), (2, 2), (4, 4)}


# --- tiny-kd20 through the engine ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manager(fresh_manager):
    """This module's model in a manager of its own, so the session's tiny-kd22 stays loaded."""
    return fresh_manager


@pytest.fixture(scope="module")
def right_half(tmp_path_factory) -> str:
    """A mask of the photo's size: repaint the right half."""
    mask = np.zeros((70, 100), dtype=np.uint8)
    mask[:, 50:] = 255
    path = tmp_path_factory.mktemp("masks") / "right.png"
    Image.fromarray(mask).save(path)
    return str(path)


def job(task: str, **values) -> Job:
    return Job(task, MODEL, {"prompt": "a red cat", "steps": 3, "seed": 1, **values})


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_the_registry_knows_kd20_its_repo_and_its_tiny_twin():
    real, tiny = resolve_model("kd20"), resolve_model(MODEL)

    assert (real.family, real.implementation, real.module) == (
        "kd20",
        "native",
        "kubin.models.families.kd20.model",
    )
    assert real.sources == {"repo": "sberbank-ai/Kandinsky_2.0"}
    assert real.tasks == tiny.tasks == ("t2i", "i2i", "inpaint", "outpaint")
    assert real.defaults["t2i"] == {"width": 512, "height": 512, "steps": 50, "guidance_scale": 10.0}
    assert real.defaults["i2i"]["strength"] == 0.2  # the authors' strength 0.8 ("keep 80 %")
    assert real.schedulers[0] == tiny.schedulers[0] == "DDIM"
    assert set(real.unused_params) == PRIOR_ONLY and tiny.tiny and not real.tiny


def test_text_to_image_gives_pngs_of_the_asked_size_with_their_parameters(engine):
    handle = engine.run(job("t2i", width=128, height=64, batch_size=2, negative_prompt="blurry"))

    assert handle.state == DONE and handle.error is None
    assert [r.seed for r in handle.results] == [1, 2]
    for result in handle.results:
        with Image.open(result.path) as image:
            assert image.size == (result.width, result.height) == (128, 64)
            text = image.text["parameters"]
        saved = read_image_metadata(result.path)
        assert (saved["model"], saved["family"], saved["implementation"], saved["task"], saved["scheduler"]) == (
            MODEL, "kd20", "native", "t2i", "DDIM",
        )  # fmt: skip
        assert saved["params"]["negative_prompt"] == "blurry" and saved["params"]["steps"] == 3
        assert not PRIOR_ONLY & set(saved["params"])
        assert "Prior" not in text and "Steps: 3" in text
    assert not np.array_equal(pixels(handle.results[0].path), pixels(handle.results[1].path))


def test_image_to_image_runs_at_the_image_size_and_follows_the_init_image(engine, photo, tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((70, 100, 3), 200, dtype=np.uint8)).save(grey)

    from_photo = engine.run(job("i2i", init_image=photo, strength=0.5, steps=4))
    from_grey = engine.run(job("i2i", init_image=str(grey), strength=0.5, steps=4))
    tall = engine.run(job("i2i", init_image=photo, width=64, height=128, strength=0.5, steps=4))

    [result] = from_photo.results
    assert (result.width, result.height) == Image.open(result.path).size == (128, 64)  # 100x70 snaps
    assert result.meta["params"]["strength"] == 0.5
    assert Image.open(tall.results[0].path).size == (64, 128)
    assert not np.array_equal(pixels(result.path), pixels(from_grey.results[0].path))


def test_inpainting_keeps_the_pixels_outside_the_mask_and_repaints_inside(engine, photo, right_half):
    handle = engine.run(job("inpaint", init_image=photo, mask=right_half, mask_blur=0))

    [result] = handle.results
    out, original = pixels(result.path), pixels(photo)
    assert handle.state == DONE and result.meta["task"] == "inpaint"
    assert out.shape == original.shape  # back at the photo's own size
    assert np.array_equal(out[:, :50], original[:, :50])  # kept exactly
    assert not np.array_equal(out[:, 50:], original[:, 50:])


def test_outpainting_keeps_the_picture_and_paints_the_new_area(engine, photo):
    handle = engine.run(job("outpaint", init_image=photo, expand=[0, 0, 28, 0], feather=0))

    [result] = handle.results
    out, original = pixels(result.path), pixels(photo)
    assert handle.state == DONE and out.shape == (70, 128, 3)
    assert np.array_equal(out[:, :100], original)
    assert out[:, 100:].std() > 1.0


def test_the_same_seed_gives_the_same_pixels_alone_or_in_a_batch(engine):
    first = engine.run(job("t2i", seed=7))
    again = engine.run(job("t2i", seed=7))
    other = engine.run(job("t2i", seed=8))
    batch = engine.run(job("t2i", seed=6, batch_size=2))  # seeds 6 and 7

    assert np.array_equal(pixels(first.results[0].path), pixels(again.results[0].path))
    assert not np.array_equal(pixels(first.results[0].path), pixels(other.results[0].path))
    assert np.array_equal(pixels(batch.results[1].path), pixels(first.results[0].path))


@pytest.mark.parametrize(
    ("task", "values", "per_batch"),
    [
        ("t2i", {"steps": 5}, 5),
        ("i2i", {"steps": 10, "strength": 0.3}, 3),  # image to image runs int(steps * strength) steps
        ("i2i", {"steps": 4, "strength": 1.0}, 4),
        ("inpaint", {"steps": 4}, 4),
    ],
)
def test_progress_counts_exactly_the_steps_that_run(
    engine, manager, photo, right_half, task, values, per_batch
):
    if task != "t2i":
        values = {**values, "init_image": photo, **({"mask": right_half} if task == "inpaint" else {})}
    calls = []
    model = manager.get(MODEL)
    original = model.generate

    def counting(*args):
        on_step = args[-1]
        return original(*args[:-1], lambda phase, step: (calls.append((phase, step)), on_step(phase, step)))

    model.generate = counting
    try:
        handle = engine.run(job(task, batch_count=2, batch_size=2, prior_steps=9, **values))
    finally:
        del model.generate

    assert handle.total_steps == handle.step == len(calls) == 2 * per_batch
    assert calls[:per_batch] == [("denoise", i) for i in range(per_batch)]


@pytest.mark.parametrize("task", ["t2i", "inpaint"])
def test_every_offered_scheduler_paints(engine, manager, photo, right_half, task):
    offered = manager.get(MODEL).schedulers(task)
    assert offered == list(resolve_model(MODEL).schedulers)
    values = {"init_image": photo, "mask": right_half} if task == "inpaint" else {}
    for name in offered:
        handle = engine.run(job(task, scheduler=name, steps=4, **values))

        assert handle.state == DONE, name
        [result] = handle.results
        assert result.meta["scheduler"] == name
        assert handle.step == 4
        assert pixels(result.path).std() > 1.0, f"{name} gave a flat image"


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_paints_nearly_the_full_precision_picture(dtype):
    """On a GPU Kubin runs in half precision: norms compute in float32 and mT5 stays in float32 (it overflows
    in float16). Checked here on the CPU, which runs the same modules in those dtypes."""
    from kubin.models.tiny import tiny_model_folder
    from kubin.params import Text2ImageParams
    from kubin.tasks import prepare

    sources = {"repo": str(tiny_model_folder(MODEL) / "repo")}
    params = Text2ImageParams(prompt="a red cat", width=64, height=64, steps=3, seed=1)
    images = {}
    for precision in ("fp32", dtype):
        model = kd20_native.load(resolve_model(MODEL), sources, Placement("cpu", precision))
        [images[precision]], _ = model.generate("t2i", params, prepare(params), [1], lambda phase, step: None)

    full, half = (np.asarray(images[p]).astype(int) for p in ("fp32", dtype))
    assert full.std() > 10  # a picture, not one colour
    assert np.abs(full - half).mean() < 2


def test_memory_options_apply_and_leave_the_picture_unchanged(engine, tmp_path):
    from kubin.runtime.memory import MemoryOptions

    expected = pixels(engine.run(job("t2i", seed=11)).results[0].path)
    options = MemoryOptions(offload="model", vae_tiling=True, vae_slicing=True, free_text_encoder=True)
    low = ModelManager(device="cpu", dtype="fp32", memory=options)
    low_engine = Engine(low, tmp_path / "low")
    try:
        handle = low_engine.run(job("t2i", seed=11))
        model = low.get(MODEL)
        assert model.vae.use_tiling and model.vae.use_slicing
    finally:
        low_engine.close(wait=True)
        low.unload()
    assert np.array_equal(pixels(handle.results[0].path), expected)


@pytest.mark.parametrize(
    ("options", "task", "expected"),
    [
        # offload=model: every part rests on the CPU and visits the device for its phase.
        ({"offload": "model"}, "t2i", ["text_encoder1", "text_encoder2", "unet", "vae"]),
        ({"offload": "model"}, "i2i", ["text_encoder1", "text_encoder2", "vae", "unet", "vae"]),
        # free_text_encoder: the text encoders go back to the CPU once the prompt is read.
        ({"free_text_encoder": True}, "t2i", ["text_encoder1", "text_encoder2"]),
    ],
)
def test_parts_visit_the_device_only_while_they_run(manager, monkeypatch, photo, options, task, expected):
    """Recorded on the CPU, with "cpu:0" standing in for the GPU ("cpu" is where parts rest)."""
    from kubin.params import Image2ImageParams, Text2ImageParams
    from kubin.runtime.memory import MemoryOptions
    from kubin.tasks import prepare

    model = manager.get(MODEL)
    moves = []
    for name in ("text_encoder1", "text_encoder2", "unet", "vae"):
        part = getattr(model, name)
        monkeypatch.setattr(
            part, "to", lambda where, _name=name, _part=part: moves.append((_name, where)) or _part
        )
    monkeypatch.setattr(model, "placement", Placement("cpu:0", "fp32", MemoryOptions(**options)))
    # The placement module offloads to accelerators only: "cpu:0" is one here.
    monkeypatch.setattr("kubin.runtime.placement.offload_supported", lambda device: device != "cpu")
    if task == "i2i":
        params = Image2ImageParams(prompt="a cat", init_image=photo, steps=2, strength=1.0).validate()
    else:
        params = Text2ImageParams(prompt="a cat", width=64, height=64, steps=2).validate()

    model.generate(task, params, prepare(params), [1], lambda phase, i: None)

    assert moves == [move for name in expected for move in ((name, "cpu:0"), (name, "cpu"))]


def test_a_saved_model_folder_is_the_official_layout_and_gives_the_same_pixels(engine, manager, tmp_path):
    folder = manager.save(MODEL, tmp_path / "saved")
    for name in (
        UNET_FILE,
        INPAINT_UNET_FILE,
        VAE_FILE,
        "text_encoder1/pytorch_model.bin",
        "text_encoder2/config.json",
    ):
        assert (folder / name).is_file(), name
    assert "state_dict" in torch.load(folder / VAE_FILE, weights_only=True)

    from_tiny = engine.run(job("t2i", seed=4))
    from_folder = engine.run(Job("t2i", str(folder), {"prompt": "a red cat", "steps": 3, "seed": 4}))

    assert from_folder.state == DONE
    assert np.array_equal(pixels(from_tiny.results[0].path), pixels(from_folder.results[0].path))
    assert from_folder.results[0].meta["family"] == "kd20"


# --- the command line ------------------------------------------------------------------------------------
CLI_CASES = {  # task -> (arguments, the PNG's size)
    "t2i": (["--width", "128", "--height", "64"], (128, 64)),
    "i2i": (["--init-image", "PHOTO", "--strength", "0.5"], (128, 64)),
    "inpaint": (["--init-image", "PHOTO", "--mask", "MASK"], (100, 70)),
}


def test_the_command_line_paints_each_task(tmp_path, photo, right_half):
    """`python -m kubin generate` for text to image, image to image and inpainting (run side by side: most
    of each run is Python starting up)."""
    out = tmp_path / "out"
    runs = {}
    for task, (args, _size) in CLI_CASES.items():
        args = [photo if a == "PHOTO" else right_half if a == "MASK" else a for a in args]
        runs[task] = kubin_generate(
            tmp_path, "--model", MODEL, "--prompt", "a red cat", "--steps", "4", "--seed", "42", "--task", task,
            "--output-dir", str(out), *args, wait=False,
        )  # fmt: skip

    for task, run in runs.items():
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
        [line] = [json.loads(text) for text in stdout.splitlines() if text.strip()]
        assert (line["seed"], line["model"], line["task"]) == (42, MODEL, task)
        path = Path(line["path"])
        assert path.is_file() and path.is_relative_to(out / task)
        assert Image.open(path).size == CLI_CASES[task][1]
        saved = read_image_metadata(path)
        assert saved["family"] == "kd20" and saved["params"]["steps"] == 4
        assert not PRIOR_ONLY & set(saved["params"])


# --- the web UI's server ---------------------------------------------------------------------------------
@pytest.mark.server
def test_the_web_ui_server_offers_tiny_kd20_and_paints_through_its_apis(tmp_path, photo):
    """`python -m kubin --model tiny-kd20` as a user starts it: the page comes up, the model is listed
    with its tasks, and the REST routes the UI shares its queue with paint text to image and inpainting."""
    import base64

    import httpx

    with kubin_server(tmp_path, "--model", MODEL, "--output-dir", str(tmp_path / "out")) as server:
        url = server.url
        assert httpx.get(url, timeout=10).status_code == 200

        [listed] = [m for m in httpx.get(f"{url}/kubin/api/v1/models", timeout=10).json() if m["id"] == MODEL]
        assert listed["tasks"] == ["t2i", "i2i", "inpaint", "outpaint"] and listed["current"]
        assert listed["implementation"] == "native" and listed["schedulers"][0] == "DDIM"

        t2i = httpx.post(f"{url}/kubin/api/v1/tasks/t2i", json={"prompt": "a red cat", "steps": 2, "seed": 5,
                         "width": 128, "height": 64}, timeout=300).json()  # fmt: skip
        assert t2i["state"] == "done", t2i
        [result] = t2i["results"]
        assert (result["width"], result["height"], result["model"]) == (128, 64, MODEL)

        mask = Image.new("L", (100, 70), 0)
        mask.paste(255, (50, 0, 100, 70))
        mask_path = tmp_path / "mask.png"
        mask.save(mask_path)

        def encoded(path) -> str:
            return base64.b64encode(Path(path).read_bytes()).decode()

        inpaint = httpx.post(f"{url}/kubin/api/v1/tasks/inpaint", json={"prompt": "a red cat", "steps": 2,
                             "init_image": encoded(photo), "mask": encoded(mask_path)}, timeout=300).json()  # fmt: skip
        assert inpaint["state"] == "done", inpaint
        assert (inpaint["results"][0]["width"], inpaint["results"][0]["height"]) == (100, 70)
