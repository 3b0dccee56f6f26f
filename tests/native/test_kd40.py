"""Kandinsky 4.0 T2V Flash, our own implementation, proven against the authors' layout and arithmetic.

The full-size DiT has exactly the state-dict keys and shapes of the published checkpoint (the manifest);
at the test vectors' tiny size it loads the authors' weights strictly and reproduces their outputs, with
one attention group per axis and with grouped (local/global) attention, through PyTorch's attention and
through the packing that flash-attention's variable-length kernel gets. Packed videos never see each
other. A folder laid out like the official repos loads offline; a missing file is named. The tiny model
makes videos through the engine and the command line like every other model: frames, size, fps, seeds,
progress per step and cancel within a step.
"""

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import reference_data
import torch
from cli_helpers import kubin_generate

from kubin.engine import DONE, FAILED, Engine, Job
from kubin.errors import InvalidParams, WeightsMissing
from kubin.models.families.kd40 import dit as kd40_dit
from kubin.models.families.kd40 import model as kd40_native
from kubin.models.families.kd40.dit import KD40_CONFIG, Kandinsky4DiT, config_from_state_dict
from kubin.models.families.kd40.tiny import build_tiny_kd40
from kubin.models.manager import ModelManager
from kubin.models.registry import resolve_model
from kubin.outputs import read_video_metadata, video_info
from kubin.params import Text2VideoParams
from kubin.runtime.memory import MemoryOptions
from kubin.tasks import prepare

SMALL = {"prompt": "a red cat walks", "steps": 2, "seed": 1, "frames": 9}


def vectors() -> tuple[dict, list[dict], dict[str, torch.Tensor]]:
    metadata, tensors = reference_data.vectors("kd40-dit-tiny")
    return json.loads(metadata["config"]), json.loads(metadata["cases"]), tensors


def authors_weights(tensors) -> dict[str, torch.Tensor]:
    return {k.removeprefix("weights."): v.float() for k, v in tensors.items() if k.startswith("weights.")}


@pytest.fixture(scope="module")
def tiny_dit() -> Kandinsky4DiT:
    config, _, tensors = vectors()
    dit = Kandinsky4DiT(**config).eval()
    dit.load_state_dict(authors_weights(tensors), strict=True)
    return dit


def run_case(dit, tensors, case: dict, **overrides):
    name = case["name"]
    inputs = {
        k: tensors[f"{name}.{k}"] for k in ("x", "text_embed", "time", "visual_cu_seqlens", "text_cu_seqlens")
    }
    inputs.update(overrides)
    with torch.no_grad():
        return dit(**inputs, num_groups=case["num_groups"], scale_factor=case["scale_factor"])


# --- the checkpoint layout and the authors' arithmetic -----------------------------------------------
def test_the_full_size_dit_has_the_published_checkpoints_keys_with_identical_shapes():
    manifest = reference_data.manifest("kd40-dit")
    assert manifest["config"] == {**KD40_CONFIG, "patch_size": [1, 2, 2], "axes_dims": [16, 24, 24]}
    with torch.device("meta"):
        dit = Kandinsky4DiT(**manifest["config"])
    state = dit.state_dict()

    ours = {key: list(tensor.shape) for key, tensor in state.items()}
    theirs = {key: shape for key, (shape, _dtype) in manifest["keys"].items()}
    assert sorted(set(theirs) - set(ours)) == []  # nothing missing
    assert sorted(set(ours) - set(theirs)) == []  # nothing extra
    assert ours == theirs
    assert sum(p.numel() for p in dit.parameters()) == manifest["params"]
    assert config_from_state_dict(state) == {**KD40_CONFIG}  # read back off the shapes alone


@pytest.mark.parametrize("case", ["base", "grouped"])
def test_the_tiny_dit_loads_the_authors_weights_strictly_and_gives_their_outputs(tiny_dit, case):
    config, cases, tensors = vectors()
    [spec] = [c for c in cases if c["name"] == case]

    out = run_case(tiny_dit, tensors, spec)

    expected = tensors[f"{case}.out"]
    assert list(out.shape) == spec["out_shape"] == list(expected.shape)
    assert torch.allclose(out, expected, atol=1e-4, rtol=0), (out - expected).abs().max()
    assert config_from_state_dict(authors_weights(tensors)) == {
        **config, "patch_size": tuple(config["patch_size"]), "axes_dims": tuple(config["axes_dims"])
    }  # fmt: skip


def test_a_strict_load_refuses_a_state_dict_with_a_key_missing():
    config, _, tensors = vectors()
    weights = authors_weights(tensors)
    weights.pop("transformer_blocks.1.1.self_attention.key_norm.weight")
    with pytest.raises(RuntimeError, match="key_norm"):
        Kandinsky4DiT(**config).load_state_dict(weights, strict=True)


@pytest.mark.parametrize("case", ["base", "grouped"])
def test_packed_videos_attend_only_within_their_own_segment(tiny_dit, case):
    """Two videos packed along the frame axis come out exactly as each does alone."""
    _, cases, tensors = vectors()
    [spec] = [c for c in cases if c["name"] == case]
    x, text = tensors[f"{case}.x"], tensors[f"{case}.text_embed"]
    other_x, other_text = torch.flip(x, dims=[0]) * 0.5 + 0.3, torch.roll(text, 2, dims=0) - 0.2
    frames, tokens = x.shape[0], text.shape[0]

    alone = run_case(tiny_dit, tensors, spec)
    other_alone = run_case(
        tiny_dit, tensors, spec, x=other_x, text_embed=other_text, time=torch.tensor([250.0])
    )
    packed = run_case(
        tiny_dit, tensors, spec,
        x=torch.cat([x, other_x]),
        text_embed=torch.cat([text, other_text]),
        time=torch.tensor([500.0, 250.0]),
        visual_cu_seqlens=torch.tensor([0, frames, 2 * frames], dtype=torch.int32),
        text_cu_seqlens=torch.tensor([0, tokens, 2 * tokens], dtype=torch.int32),
    )  # fmt: skip

    assert torch.allclose(packed[:frames], alone, atol=1e-5)
    assert torch.allclose(packed[frames:], other_alone, atol=1e-5)
    assert not torch.allclose(alone, other_alone, atol=1e-2)


def reference_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
    """What flash-attention's varlen kernel computes: plain softmax attention within each segment."""
    out = torch.empty_like(q)
    bounds = cu_seqlens_q.tolist()
    assert bounds == cu_seqlens_k.tolist() and max_seqlen_q == max(np.diff(bounds))
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # heads first
        weights = torch.softmax(qs @ ks.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        out[start:end] = (weights @ vs).transpose(0, 1)
    return out


@pytest.mark.parametrize("case", ["base", "grouped"])
def test_the_flash_attention_packing_gives_the_authors_outputs_too(tiny_dit, case, monkeypatch):
    """flash-attention is not installed here: its varlen kernel is stood in for by the plain softmax it
    computes, so what is checked is our packing of groups and segments into one sequence."""
    _, cases, tensors = vectors()
    [spec] = [c for c in cases if c["name"] == case]
    calls = []

    def varlen(*args):
        calls.append(args[3].tolist())
        return reference_varlen(*args)

    monkeypatch.setattr(kd40_dit, "_use_flash", lambda q: varlen)
    out = run_case(tiny_dit, tensors, spec)

    assert torch.allclose(out, tensors[f"{case}.out"], atol=1e-4, rtol=0)
    groups = int(np.prod(spec["num_groups"]))
    frames, height, width = tensors[f"{case}.x"].shape[:3]
    tokens = frames * (height // 2) * (width // 2) // groups + tensors[f"{case}.text_embed"].shape[0]
    assert calls and all(c == [i * tokens for i in range(groups + 1)] for c in calls)
    assert len(calls) == 2 * 2  # every block of both block pairs


def test_without_flash_attention_installed_attention_runs_through_pytorch():
    assert kd40_dit.flash_varlen() is None  # not installed on this machine
    q = torch.zeros(1, 2, 2, 4, dtype=torch.float32)
    assert kd40_dit._use_flash(q) is None


# --- loading folders laid out like the official repos ---------------------------------------------
@pytest.fixture(scope="module")
def official_layout(tmp_path_factory) -> dict[str, Path]:
    """The tiny model saved as the authors publish: the DiT state dict in bf16 in kandinsky4_distil_512.pt,
    and CogVideoX-5b's vae/, text_encoder/, tokenizer/, scheduler/ subfolders."""
    root = tmp_path_factory.mktemp("official")
    parts = build_tiny_kd40(seed=3)
    dit_repo, cogvideox_repo = root / "kandinsky-4-t2v-flash", root / "CogVideoX-5b"
    dit_repo.mkdir()
    state = {k: v.to(torch.bfloat16) for k, v in parts["dit"].dit.state_dict().items()}
    torch.save(state, dit_repo / "kandinsky4_distil_512.pt")
    parts["cogvideox"].save_pretrained(cogvideox_repo)
    return {"dit": dit_repo, "cogvideox": cogvideox_repo}


def test_a_folder_laid_out_like_the_official_repos_loads_offline_and_makes_a_video(official_layout, tmp_path):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert sorted(p.name for p in official_layout["cogvideox"].iterdir()) == [
        "scheduler", "text_encoder", "tokenizer", "vae",
    ]  # fmt: skip
    sources = {"kd40": {k: str(v) for k, v in official_layout.items()}}
    manager = ModelManager(device="cpu", dtype="fp32", sources=sources)
    engine = Engine(manager, tmp_path / "output")
    try:
        handle = engine.run(Job("t2v", "kd40", {**SMALL, "width": 64, "height": 64}))
        model = manager.get("kd40")
    finally:
        engine.close(wait=True)
        manager.unload()

    assert handle.state == DONE, handle.error
    assert video_info(handle.results[0].path)["frames"] == 9
    assert model.dit is None  # released on unload


def test_the_dit_loads_from_the_checkpoint_with_the_authors_values(official_layout):
    path = official_layout["dit"] / "kandinsky4_distil_512.pt"
    saved = torch.load(path, weights_only=True)

    dit = kd40_native.load_dit(path, "kd40")

    loaded = dit.state_dict()
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert not any(t.is_meta for t in loaded.values())


def test_a_checkpoint_without_position_tables_gets_them_computed(official_layout, tmp_path):
    saved = torch.load(official_layout["dit"] / "kandinsky4_distil_512.pt", weights_only=True)
    stripped = {k: v for k, v in saved.items() if not k.startswith("rope_embeddings.")}
    torch.save(stripped, tmp_path / "kandinsky4_distil_512.pt")

    dit = kd40_native.load_dit(tmp_path / "kandinsky4_distil_512.pt", "kd40")

    assert torch.allclose(dit.rope_embeddings.args_2, saved["rope_embeddings.args_2"].float(), atol=0.5)
    assert dit.rope_embeddings.args_2[5, 1] == pytest.approx(5 * kd40_dit.frequencies(3)[1].item())


def test_a_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "kandinsky4_distil_512.pt")
    with pytest.raises(WeightsMissing, match="does not hold a Kandinsky 4.0 DiT state dict"):
        kd40_native.load_dit(tmp_path / "kandinsky4_distil_512.pt", "kd40")


@pytest.mark.parametrize(
    ("part", "missing", "message"),
    [
        ("dit", "kandinsky4_distil_512.pt", "kandinsky4_distil_512.pt is missing (the DiT checkpoint"),
        ("cogvideox", "vae/diffusion_pytorch_model.safetensors",
         "vae/diffusion_pytorch_model.safetensors is missing (or diffusion_pytorch_model.safetensors.index.json"),
        ("cogvideox", "vae/config.json", "vae/config.json is missing; the folder must be laid out like"),
        ("cogvideox", "text_encoder/model.safetensors", "text_encoder/model.safetensors is missing"),
        ("cogvideox", "tokenizer/tokenizer.json", "tokenizer/spiece.model is missing (or tokenizer.json)"),
        ("cogvideox", "scheduler/scheduler_config.json", "scheduler/scheduler_config.json is missing"),
    ],
)  # fmt: skip
def test_a_missing_file_is_a_clear_error_naming_it(official_layout, tmp_path, part, missing, message):
    copies = {name: tmp_path / name for name in official_layout}
    for name, folder in official_layout.items():
        shutil.copytree(folder, copies[name])
    (copies[part] / missing).unlink()
    manager = ModelManager(
        device="cpu", dtype="fp32", sources={"kd40": {k: str(v) for k, v in copies.items()}}
    )

    with pytest.raises(WeightsMissing) as error:
        manager.get("kd40")

    assert message in str(error.value)
    assert str(copies[part] / missing.split("/")[0]) in str(error.value)
    assert manager.loaded_id is None


def test_a_tokenizer_folder_with_only_spiece_model_names_what_reads_it(official_layout, tmp_path):
    """CogVideoX ships its T5 tokenizer as spiece.model, which needs sentencepiece (not installed here)."""
    copies = {name: tmp_path / name for name in official_layout}
    for name, folder in official_layout.items():
        shutil.copytree(folder, copies[name])
    tokenizer = copies["cogvideox"] / "tokenizer"
    (tokenizer / "tokenizer.json").unlink()
    (tokenizer / "spiece.model").write_bytes(b"not read here")
    manager = ModelManager(
        device="cpu", dtype="fp32", sources={"kd40": {k: str(v) for k, v in copies.items()}}
    )

    with pytest.raises(WeightsMissing, match="could not be read .*install sentencepiece"):
        manager.get("kd40")


def test_offline_without_the_weights_the_job_fails_with_the_repo_and_how_to_fetch_it(tmp_path):
    manager = ModelManager(device="cpu", dtype="fp32")
    engine = Engine(manager, tmp_path / "output")
    try:
        handle = engine.submit(Job("t2v", "kd40", {**SMALL, "width": 64, "height": 64}))
        handle.wait(60)
    finally:
        engine.close(wait=True)

    assert handle.state == FAILED and isinstance(handle.error, WeightsMissing)
    message = str(handle.error)
    assert "ai-forever/kandinsky-4-t2v-flash" in message and "HF_HUB_OFFLINE" in message
    assert "python -m kubin download kd40" in message


def test_the_dit_file_is_found_in_the_hugging_face_cache_offline(official_layout, monkeypatch):
    """A repo id resolves through the hub cache without the network (the cache lives in HF_HOME)."""
    calls = []

    def cached(repo, filename, local_files_only=False):
        calls.append((repo, filename, local_files_only))
        return str(official_layout["dit"] / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", cached)
    path = kd40_native.dit_checkpoint("ai-forever/kandinsky-4-t2v-flash", "kd40")

    assert path == official_layout["dit"] / "kandinsky4_distil_512.pt"
    assert calls == [("ai-forever/kandinsky-4-t2v-flash", "kandinsky4_distil_512.pt", True)]


# --- the tiny model through the engine and the command line ----------------------------------------
@pytest.fixture(scope="module")
def manager(fresh_manager):
    """This module's model in a manager of its own, so the session's tiny-kd22 stays loaded."""
    return fresh_manager


def job(**values) -> Job:
    return Job("t2v", "tiny-kd40", {**SMALL, **values})


def frames_of(path) -> np.ndarray:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]
    return np.stack([np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader])


def test_the_registry_knows_kd40_as_a_native_480p_12_second_text_to_video_model():
    spec, tiny = resolve_model("kd40"), resolve_model("tiny-kd40")
    assert (spec.implementation, spec.tasks, spec.module, spec.family) == (
        "native",
        ("t2v",),
        "kubin.models.families.kd40.model",
        "kd40",
    )
    assert spec.sources == {"dit": "ai-forever/kandinsky-4-t2v-flash", "cogvideox": "THUDM/CogVideoX-5b"}
    defaults = spec.defaults["t2v"]
    assert (defaults["frames"], defaults["fps"], defaults["steps"]) == (97, 8, 4)  # 12 s at 8 fps, 4 steps
    # 97 frames = 25 latent frames: the authors' 2 per second + 1; odd latent counts decode to 8k+1 frames
    assert spec.limits == {"frames": 97, "frame_step": 8} == tiny.limits
    assert (defaults["width"], defaults["height"]) == (672, 384) and (352, 736) in spec.resolutions
    assert all(w * h <= 512 * 512 for w, h in spec.resolutions)  # 480p
    assert spec.dtype == "bf16" and tiny.tiny and tiny.implementation == "native"
    # Distilled: no guidance; and no soundtrack or prompt expansion (Kandinsky 6's switches).
    assert set(spec.unused_params) == {"negative_prompt", "guidance_scale", "sample_audio", "expand_prompt"}


@pytest.mark.parametrize(("frames", "width", "height", "fps"), [(17, 64, 64, 8), (9, 80, 64, 12)])
def test_text_to_video_makes_an_mp4_of_the_frames_size_and_fps_asked_for(engine, frames, width, height, fps):
    handle = engine.run(job(frames=frames, width=width, height=height, fps=fps))

    assert handle.state == DONE and handle.error is None and handle.notices == []
    [result] = handle.results
    assert result.path.suffix == ".mp4"
    assert video_info(result.path) == {"frames": frames, "width": width, "height": height, "fps": float(fps)}
    video = frames_of(result.path)
    assert not np.array_equal(video[0], video[-1])  # a clip, not one picture repeated
    meta = read_video_metadata(result.path)
    assert (meta["model"], meta["family"], meta["implementation"]) == ("tiny-kd40", "kd40", "native")
    assert meta["scheduler"] == kd40_native.SAMPLER
    assert "negative_prompt" not in meta["params"] and "guidance_scale" not in meta["params"]


def test_a_frame_count_off_the_8k_plus_1_step_is_snapped_and_more_than_12_seconds_is_refused(engine):
    for asked, made in ((10, 9), (14, 17)):
        handle = engine.run(job(frames=asked))
        assert handle.notices == [f"This model makes videos of 8k+1 frames; {asked} frames became {made}."]
        assert video_info(handle.results[0].path)["frames"] == made

    with pytest.raises(InvalidParams, match=r"makes at most 97 frames \(12.1 s at 8 fps\); got 101"):
        engine.submit(job(frames=101))


def test_every_denoising_step_is_reported_once(engine, manager):
    handle = engine.run(job(steps=3, batch_count=2, seed=40))

    assert handle.total_steps == 3 * 2
    assert handle.step == handle.total_steps
    assert handle.phase == "denoise"
    assert [r.seed for r in handle.results] == [40, 41]

    model = manager.get("tiny-kd40")
    calls = []
    values = Text2VideoParams(prompt="a cat", steps=5, frames=9, width=64, height=64).validate()
    videos, _ = model.generate(
        "t2v", values, prepare(values), [1, 2], lambda phase, i: calls.append((phase, i))
    )
    assert calls == [("denoise", i) for i in range(5)] * 2
    assert [len(v) for v in videos] == [9, 9]


def authors_pipeline(
    model, prompt: str, size: tuple[int, int], frames: int, seed: int, steps: int
) -> np.ndarray:
    """The authors' T2V Flash pipeline step by step, on the loaded parts, as a reference: T5 states of the
    prompt padded to 224 tokens, no mask; noise from one CPU generator; at each step the scheduler's
    add_noise to that step's level, the DiT's velocity, and x0 = sqrt(a) x - sqrt(1 - a) v; then the VAE
    on latents / scaling_factor, two latent frames at a time, and (x + 1) / 2."""
    tokens = model.tokenizer(prompt, max_length=224, truncation=True, add_special_tokens=True,
                             padding="max_length", return_tensors="pt").input_ids  # fmt: skip
    text_embed = model.text_encoder(tokens)[0].squeeze(0)
    width, height = size
    shape = ((frames - 1) // 4 + 1, height // 8, width // 8, 16)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(*shape, generator=generator)
    scheduler = model.scheduler
    scheduler.set_timesteps(steps)
    visual_cu_seqlens = torch.tensor([0, shape[0]], dtype=torch.int32)
    text_cu_seqlens = torch.tensor([0, 224], dtype=torch.int32)
    for step in scheduler.timesteps:
        latents = scheduler.add_noise(latents, torch.randn(latents.shape, generator=generator), step)
        velocity = model.dit(
            latents, text_embed, step.unsqueeze(0).float(), visual_cu_seqlens, text_cu_seqlens
        )
        alpha = scheduler.alphas_cumprod[step]
        latents = (alpha**0.5 * latents - (1 - alpha) ** 0.5 * velocity).float()
    model.vae.num_latent_frames_batch_size = 2
    video = model.vae.decode((latents / model.vae.config.scaling_factor).permute(3, 0, 1, 2)[None]).sample
    video = ((video[0].float() + 1.0) / 2.0).clamp(0.0, 1.0)
    return (video.permute(1, 2, 3, 0) * 255.0).round().numpy().astype(np.uint8)


def test_generation_follows_the_authors_pipeline_from_prompt_to_pixels(manager):
    model = manager.get("tiny-kd40")
    values = Text2VideoParams(prompt="a red cat walks", steps=4, frames=9, width=64, height=64).validate()

    with torch.no_grad():
        [video], sampler = model.generate("t2v", values, prepare(values), [123], lambda phase, i: None)
        expected = authors_pipeline(model, "a red cat walks", (64, 64), 9, 123, 4)

    ours = np.stack([np.asarray(frame) for frame in video])
    assert ours.shape == expected.shape == (9, 64, 64, 3)
    assert np.abs(ours.astype(int) - expected).max() <= 1  # float32 rounding at most one level
    assert model.scheduler.timesteps.tolist() == [999, 749, 499, 249]  # 4 trailing steps, as the authors'


def test_a_frame_count_the_vae_cannot_make_is_refused_by_the_model_itself(manager):
    """Called directly (not through the engine, which snaps frames first), 5 frames would be 2 latent
    frames, which the VAE decodes to 8: refused rather than a video of another length."""
    model = manager.get("tiny-kd40")
    values = Text2VideoParams(prompt="a cat", steps=1, frames=5, width=64, height=64).validate()
    with pytest.raises(InvalidParams, match="makes videos of 8k\\+1 frames; got 5"):
        model.generate("t2v", values, prepare(values), [1], lambda phase, i: None)


def test_memory_options_apply_and_leave_the_video_unchanged(manager, tmp_path):
    plain = Engine(manager, tmp_path / "plain")
    try:
        expected = frames_of(plain.run(job(seed=11)).results[0].path)
    finally:
        plain.close(wait=True)
    low = ModelManager(
        device="cpu",
        dtype="fp32",
        memory=MemoryOptions(offload="model", vae_tiling=True, free_text_encoder=True),
    )
    engine = Engine(low, tmp_path / "low")
    try:
        handle = engine.run(job(seed=11))
        model = low.get("tiny-kd40")
        assert model.vae.use_tiling
        # offload needs a GPU: none on the CPU, and the user is told so
        assert any("CPU offload (model) needs a GPU" in n for n in handle.notices), handle.notices
        assert next(model.dit.parameters()).device.type == "cpu"
    finally:
        engine.close(wait=True)
        low.unload()
    assert np.array_equal(frames_of(handle.results[0].path), expected)


def test_model_offload_brings_each_part_to_the_device_only_while_it_runs(manager, monkeypatch):
    """On a GPU, offload=model keeps the parts on the CPU and moves each in for its phase: the text
    encoder for the prompt, the DiT for the steps, the VAE for decoding (recorded here on the CPU)."""
    model = manager.get("tiny-kd40")
    moves = []
    for name in ("text_encoder", "dit", "vae"):
        part = getattr(model, name)
        monkeypatch.setattr(
            part, "to", lambda where, _name=name, _part=part: moves.append((_name, where)) or _part
        )
    # "cpu:0" stands in for the GPU ("cpu" is where parts rest), with model offload, which the
    # placement module allows on an accelerator only.
    monkeypatch.setattr("kubin.runtime.placement.offload_supported", lambda device: device != "cpu")
    monkeypatch.setattr(model, "device", "cpu:0")
    monkeypatch.setattr(
        model, "placement", replace(model.placement, device="cpu:0", memory=MemoryOptions(offload="model"))
    )

    values = Text2VideoParams(prompt="a cat", steps=2, frames=9, width=64, height=64).validate()
    model.generate("t2v", values, prepare(values), [1], lambda phase, i: None)

    assert moves == [
        ("text_encoder", "cpu:0"), ("text_encoder", "cpu"),
        ("dit", "cpu:0"), ("dit", "cpu"),
        ("vae", "cpu:0"), ("vae", "cpu"),
    ]  # fmt: skip


def test_bf16_runs_every_part_in_bf16(tmp_path):
    manager = ModelManager(device="cpu", dtype="bf16")
    engine = Engine(manager, tmp_path / "output")
    try:
        handle = engine.run(job(steps=1))
        model = manager.get("tiny-kd40")
        dtypes = {next(getattr(model, part).parameters()).dtype for part in ("dit", "text_encoder", "vae")}
    finally:
        engine.close(wait=True)
        manager.unload()
    assert handle.state == DONE and dtypes == {torch.bfloat16}
    assert video_info(handle.results[0].path)["frames"] == 9


def test_download_finds_both_sources_and_loading_uses_the_same_lookup(official_layout):
    spec = resolve_model("kd40").with_sources({k: str(v) for k, v in official_layout.items()})
    found = kd40_native.download(spec)
    assert found == {
        "dit": official_layout["dit"] / "kandinsky4_distil_512.pt",
        "cogvideox": official_layout["cogvideox"],
    }


def test_a_saved_model_is_written_in_the_official_layouts_and_loads_back_to_the_same_video(manager, tmp_path):
    folder = manager.save("tiny-kd40", tmp_path / "saved")
    assert (folder / "dit" / "kandinsky4_distil_512.pt").is_file()
    assert sorted(p.name for p in (folder / "cogvideox").iterdir()) == [
        "scheduler",
        "text_encoder",
        "tokenizer",
        "vae",
    ]
    assert json.loads((folder / "kubin.json").read_text())["saved_from"] == "tiny-kd40"

    engine = Engine(manager, tmp_path / "tiny")
    try:
        expected = frames_of(engine.run(job(seed=5)).results[0].path)
    finally:
        engine.close(wait=True)
    again = ModelManager(
        device="cpu",
        dtype="fp32",
        sources={"kd40": {"dit": str(folder / "dit"), "cogvideox": str(folder / "cogvideox")}},
    )
    engine = Engine(again, tmp_path / "again")
    try:
        handle = engine.run(Job("t2v", "kd40", {**SMALL, "seed": 5, "width": 64, "height": 64}))
    finally:
        engine.close(wait=True)
        again.unload()
    assert np.array_equal(frames_of(handle.results[0].path), expected)


def test_the_command_line_makes_a_video_and_prints_its_path(tmp_path):
    out = tmp_path / "out"
    done = kubin_generate(
        tmp_path, "--model", "tiny-kd40", "--task", "t2v", "--prompt", "a red cat walks", "--frames", "9",
        "--fps", "6", "--steps", "2", "--seed", "42", "--output-dir", str(out), timeout=180,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stdout.splitlines() if text.strip()]
    assert (line["seed"], line["model"], line["task"], line["frames"], line["fps"]) == (
        42,
        "tiny-kd40",
        "t2v",
        9,
        6,
    )
    path = Path(line["path"])
    assert path.suffix == ".mp4" and path.is_file() and path.is_relative_to(out / "t2v")
    assert video_info(path) == {"frames": 9, "width": 64, "height": 64, "fps": 6.0}
