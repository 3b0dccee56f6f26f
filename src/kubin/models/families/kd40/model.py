"""Kandinsky 4.0 T2V Flash, our own implementation (diffusers has none): text to video, 480p, up to 12 s.

The published model is the diffusion transformer `kandinsky4_distil_512.pt` (ai-forever/kandinsky-4-t2v-flash,
run by `kubin.models.families.kd40.dit`); everything around it is stock CogVideoX-5b (THUDM/CogVideoX-5b):
the T5 v1.1 XXL text encoder and its tokenizer (224 tokens), the 3D causal VAE (8x spatial, 4x temporal)
and the DDIM scheduler's v-prediction noise table. Sampling follows the authors' distilled loop: at each
of the 4 steps the latent is noised afresh to that step's level, and the transformer's velocity gives
the clean latent directly (no classifier-free guidance, no negative prompt).

Both sources are a Hugging Face repo or a local folder laid out like it: the DiT source holds the .pt
file; the CogVideoX source holds vae/, text_encoder/, tokenizer/ and scheduler/.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams, WeightsMissing
from kubin.models.base import LoadedModel, StepCallback
from kubin.models.families.kd40 import SAMPLER as KD40_SAMPLER
from kubin.models.spec import FOLDER_INFO, ModelSpec
from kubin.models.weights import hub_offline
from kubin.outputs import Video
from kubin.params import ImageTaskParams
from kubin.runtime.device import Placement
from kubin.runtime.placement import load_notice, on_device, place_modules

log = logging.getLogger(__name__)


DIT_FILE = "kandinsky4_distil_512.pt"
# What each CogVideoX subfolder must hold: every entry is one file, or a tuple of alternatives.
COGVIDEOX_FILES: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "vae": (
        "config.json",
        ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
         "diffusion_pytorch_model.bin"),
    ),
    "text_encoder": (
        "config.json",
        ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"),
    ),
    "tokenizer": (("spiece.model", "tokenizer.json"),),
    "scheduler": ("scheduler_config.json",),
}  # fmt: skip
TEXT_TOKENS = 224  # the authors pad or cut every prompt to this many T5 tokens
SAMPLER = KD40_SAMPLER  # the one sampling loop: the authors'
# The authors run the 480p model with one attention group per axis and no RoPE rescaling.
NUM_GROUPS = (1, 1, 1)
SCALE_FACTOR = (1.0, 1.0, 1.0)


def steps_per_batch(task: str, params: ImageTaskParams) -> int:
    return params.steps


class Kandinsky4(LoadedModel):
    """A loaded Kandinsky 4.0 T2V Flash: DiT, T5 encoder and tokenizer, CogVideoX VAE, noise table."""

    def __init__(self, spec: ModelSpec, dit, text_encoder, tokenizer, vae, scheduler, placement: Placement):
        self.spec = spec
        self.dit, self.text_encoder, self.tokenizer, self.vae = dit, text_encoder, tokenizer, vae
        self.scheduler = scheduler
        self.placement = placement
        self.device = placement.device
        self.dtype = placement.torch_dtype()
        self.default_scheduler = SAMPLER
        memory = placement.memory
        visiting = ("text_encoder",) if memory.free_text_encoder else ()
        place_modules(
            {"transformer": dit, "text_encoder": text_encoder, "vae": vae}, placement, visiting=visiting
        )
        if memory.vae_tiling:
            self.vae.enable_tiling()
        if memory.vae_slicing:
            self.vae.enable_slicing()
        if memory.attention_slicing:
            load_notice(
                "Attention slicing does not apply to Kandinsky 4 (its attention runs in fused kernels)."
            )

    # --- generation -----------------------------------------------------------------------------------
    def schedulers(self, task: str | None = None) -> list[str]:
        return [SAMPLER]

    def generate(self, task, params, prepared, seeds, on_step) -> tuple[list, str]:
        """One video (a list of PIL frames) per seed."""
        if params.scheduler and params.scheduler != SAMPLER:
            raise InvalidParams(f"{self.spec.title} samples only with {SAMPLER!r}; got {params.scheduler!r}.")
        import torch

        with torch.no_grad():
            text_embed = self.encode_prompt(params.prompt)
            videos = []
            for seed in seeds:
                latents = self.sample(text_embed, prepared.size, prepared.frames, seed, params.steps, on_step)
                videos.append(Video(self.decode(latents)))
        return videos, SAMPLER

    def encode_prompt(self, prompt: str):
        """T5 encoder states of the prompt padded to 224 tokens, without an attention mask (as the authors)."""
        ids = self.tokenizer(
            prompt,
            max_length=TEXT_TOKENS,
            truncation=True,
            add_special_tokens=True,
            padding="max_length",
            return_tensors="pt",
        ).input_ids
        with on_device(self.text_encoder, self.placement, visiting=self.placement.memory.free_text_encoder):
            return self.text_encoder(ids.to(self.device))[0][0]

    def latent_shape(self, size: tuple[int, int], frames: int) -> tuple[int, int, int, int]:
        """[latent frames, rows, columns, channels] for a video of `frames` frames at size (width, height)."""
        config = self.vae.config
        spatial = 2 ** (len(config.block_out_channels) - 1)
        temporal = int(config.temporal_compression_ratio)
        width, height = size
        latent_frames = (frames - 1) // temporal + 1
        if (frames - 1) % temporal or (temporal > 1 and latent_frames % 2 == 0):
            # The VAE decodes two latent frames at a time after the first: an even count comes out short.
            step = 2 * temporal
            raise InvalidParams(f"{self.spec.title} makes videos of {step}k+1 frames; got {frames}.")
        return (latent_frames, height // spatial, width // spatial, config.latent_channels)

    def sample(
        self, text_embed, size: tuple[int, int], frames: int, seed: int, steps: int, on_step: StepCallback
    ):
        """The authors' distilled loop: renoise to each step's level, then take the predicted clean latent."""
        import torch

        shape = self.latent_shape(size, frames)
        generator = torch.Generator("cpu").manual_seed(seed)

        def noise():  # drawn in float32 on the CPU and rounded to the model's precision, as the authors
            return torch.randn(shape, generator=generator).to(self.dtype).to(self.device).float()

        self.scheduler.set_timesteps(steps)
        alphas = self.scheduler.alphas_cumprod.to(torch.float32)
        visual_cu_seqlens = torch.tensor([0, shape[0]], dtype=torch.int32, device=self.device)
        text_cu_seqlens = torch.tensor([0, text_embed.shape[0]], dtype=torch.int32, device=self.device)
        text_embed = text_embed.to(self.device, self.dtype)
        latents = noise()
        with on_device(self.dit, self.placement), self._autocast():
            for i, t in enumerate(self.scheduler.timesteps.tolist()):
                alpha = float(alphas[t])
                latents = alpha**0.5 * latents + (1 - alpha) ** 0.5 * noise()
                time = torch.tensor([t], dtype=torch.float32, device=self.device)
                velocity = self.dit(
                    latents.to(self.dtype),
                    text_embed,
                    time,
                    visual_cu_seqlens,
                    text_cu_seqlens,
                    NUM_GROUPS,
                    SCALE_FACTOR,
                )
                latents = alpha**0.5 * latents - (1 - alpha) ** 0.5 * velocity.float()
                on_step("denoise", i)
        return latents

    def _autocast(self):
        """The authors run the DiT under CUDA autocast (LayerNorms in float32 inside a bf16 model)."""
        import torch

        half = self.dtype in (torch.float16, torch.bfloat16)
        if self.device.startswith("cuda") and half:
            return torch.autocast(device_type="cuda", dtype=self.dtype)
        return nullcontext()

    def decode(self, latents) -> list:
        """Latent video [frames, rows, columns, channels] -> RGB frames through the CogVideoX VAE."""
        import numpy as np
        from PIL import Image

        with on_device(self.vae, self.placement):
            dtype = next(self.vae.parameters()).dtype
            z = (latents / self.vae.config.scaling_factor).permute(3, 0, 1, 2)[None].to(self.device, dtype)
            self.vae.num_latent_frames_batch_size = 2  # the authors' choice: two latent frames at a time
            video = self.vae.decode(z).sample[0].float()
        video = ((video + 1.0) / 2.0).clamp(0.0, 1.0)  # [3, frames, height, width]
        pixels = (video.permute(1, 2, 3, 0) * 255.0).round().to("cpu").numpy().astype(np.uint8)
        return [Image.fromarray(frame) for frame in pixels]

    # --- saving and releasing -------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """The model in the official layouts: folder/dit/ (the .pt) and folder/cogvideox/, plus kubin.json."""
        folder = Path(folder)
        DitCheckpoint(self.dit).save_pretrained(folder / "dit")
        CogVideoXParts(self.vae, self.text_encoder, self.tokenizer, self.scheduler).save_pretrained(
            folder / "cogvideox"
        )
        info = {"saved_from": self.spec.id, "defaults": self.spec.defaults}
        (folder / FOLDER_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
        return folder

    def release(self) -> None:
        self.dit = self.text_encoder = self.vae = None


# --- the official file layouts -------------------------------------------------------------------------
@dataclass
class DitCheckpoint:
    """The DiT as the authors publish it: a plain state dict in kandinsky4_distil_512.pt."""

    dit: Any

    def save_pretrained(self, folder: str | Path) -> Path:
        import torch

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu") for k, v in self.dit.state_dict().items()}
        torch.save(state, folder / DIT_FILE)
        return folder / DIT_FILE


@dataclass
class CogVideoXParts:
    """The parts Kandinsky 4 takes from CogVideoX-5b, each in its subfolder as in that repo."""

    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        for name in COGVIDEOX_FILES:
            getattr(self, name).save_pretrained(folder / name)
        return folder


# --- loading ----------------------------------------------------------------------------------------------
def find_weights(
    spec: ModelSpec, sources: dict[str, str], placement: Placement, task: str | None = None
) -> dict[str, Path]:
    """The DiT checkpoint and CogVideoX's folders, found or fetched (see ModelSpec.module)."""
    return download(spec.with_sources(sources))


def load(spec: ModelSpec, sources: dict[str, str], placement: Placement) -> Kandinsky4:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
    from transformers import T5EncoderModel, T5Tokenizer

    found = find_weights(spec, sources, placement)
    dit_path, cogvideox = found["dit"], found["cogvideox"]
    dtype = placement.torch_dtype()
    dit = load_dit(dit_path, spec.id).to(dtype)
    text_encoder = T5EncoderModel.from_pretrained(cogvideox / "text_encoder", dtype=dtype).eval()
    try:
        tokenizer = T5Tokenizer.from_pretrained(cogvideox / "tokenizer")
    except (ImportError, ValueError) as exc:  # spiece.model alone needs sentencepiece to be read
        raise WeightsMissing(
            f"Model {spec.id}: the T5 tokenizer in {cogvideox / 'tokenizer'} could not be read ({exc}); "
            "install sentencepiece to read its spiece.model."
        ) from None
    vae = AutoencoderKLCogVideoX.from_pretrained(cogvideox / "vae", torch_dtype=dtype).eval()
    scheduler = CogVideoXDDIMScheduler.from_pretrained(cogvideox / "scheduler")
    for part in (dit, text_encoder, vae):
        part.requires_grad_(False)
    if placement.memory.quantize != "none":  # on the CPU still: the parts move to the device quantised
        from kubin.runtime.quantize import quantize_components

        for notice in quantize_components(
            {"transformer": dit, "text_encoder": text_encoder}, placement.memory, placement.device
        ):
            load_notice(notice)
    model = Kandinsky4(spec, dit, text_encoder, tokenizer, vae, scheduler, placement)
    log.info("Loaded %s on %s (%s)", spec.id, placement.device, placement.dtype)
    return model


def download(spec: ModelSpec) -> dict[str, Path]:
    """Fetch what `spec` needs into the Hugging Face cache (or check its local folders): only the DiT file
    and CogVideoX's four subfolders, never that repo's own transformer."""
    return {
        "dit": dit_checkpoint(spec.sources["dit"], spec.id),
        "cogvideox": cogvideox_folder(spec.sources["cogvideox"], spec.id),
    }


def load_dit(path: Path, model_id: str):
    """Our DiT with the checkpoint's weights, built at the size its tensors have (no memory is spent on
    random weights first). The RoPE position tables are computed when a checkpoint lacks them."""
    import torch

    from kubin.models.families.kd40.dit import Kandinsky4DiT, RoPE3D, config_from_state_dict

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    try:
        config = config_from_state_dict(state)
    except (KeyError, IndexError, TypeError, AttributeError):
        raise WeightsMissing(
            f"Model {model_id}: {path} does not hold a Kandinsky 4.0 DiT state dict."
        ) from None
    with torch.device("meta"):
        dit = Kandinsky4DiT(**config)
    missing, unexpected = dit.load_state_dict(state, strict=False, assign=True)
    rope = {f"rope_embeddings.args_{i}" for i in range(3)}
    if unexpected or set(missing) - rope:
        wrong = sorted(set(missing) - rope)[:3] + sorted(unexpected)[:3]
        raise WeightsMissing(
            f"Model {model_id}: {path} does not match the Kandinsky 4.0 DiT ({', '.join(wrong)} ...)."
        )
    if missing:
        dit.rope_embeddings = RoPE3D(config["axes_dims"])
    return dit.eval()


def _hint(model_id: str) -> str:
    return (
        f"run `python -m kubin download {model_id}` on a machine with internet access, "
        f"or point the config's models.{model_id} entries at local folders"
    )


def _is_local(source: str) -> bool:
    path = Path(source).expanduser()
    return path.is_absolute() or source.startswith((".", "~")) or path.exists()


def dit_checkpoint(source: str, model_id: str) -> Path:
    """The DiT file: in a local folder (or given as the file itself), or from the hub repo."""
    if _is_local(source):
        path = Path(source).expanduser()
        path = path if path.suffix == ".pt" else path / DIT_FILE
        if not path.is_file():
            raise WeightsMissing(
                f"Model {model_id}: {path} is missing (the DiT checkpoint, named {DIT_FILE})."
            )
        return path
    from huggingface_hub import hf_hub_download

    return Path(_from_hub(lambda **kw: hf_hub_download(source, DIT_FILE, **kw), source, model_id))


def cogvideox_folder(source: str, model_id: str) -> Path:
    """The folder with CogVideoX's vae/, text_encoder/, tokenizer/ and scheduler/, every file checked."""
    if _is_local(source):
        folder = Path(source).expanduser()
    else:
        from huggingface_hub import snapshot_download

        patterns = [f"{name}/*" for name in COGVIDEOX_FILES]  # not the repo's own 11 GB transformer
        folder = Path(
            _from_hub(lambda **kw: snapshot_download(source, allow_patterns=patterns, **kw), source, model_id)
        )
    for name, files in COGVIDEOX_FILES.items():
        for entry in files:
            choices = (entry,) if isinstance(entry, str) else entry
            if not any((folder / name / choice).is_file() for choice in choices):
                raise WeightsMissing(
                    f"Model {model_id}: {folder / name / choices[0]} is missing"
                    + (f" (or {', '.join(choices[1:])})" if len(choices) > 1 else "")
                    + f"; the folder must be laid out like THUDM/CogVideoX-5b ({name}/)."
                )
    return folder


def _from_hub(fetch: Callable[..., str], repo: str, model_id: str) -> str:
    """The cache first, without touching the network; then a download unless the hub is offline."""
    try:
        return fetch(local_files_only=True)
    except Exception:  # not cached (the hub raises several error types for it)
        pass
    if hub_offline():
        raise WeightsMissing(
            f"Model {model_id} needs {repo}, which is not in the Hugging Face cache and downloads are off "
            f"(HF_HUB_OFFLINE); {_hint(model_id)}."
        )
    log.warning("Downloading %s for %s (first use)...", repo, model_id)
    try:
        return fetch()
    except Exception as exc:  # network, DNS, auth, missing repo: all mean the same to the user
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160].rstrip(".")
        raise WeightsMissing(
            f"Model {model_id} needs {repo}, which is not in the Hugging Face cache and could not be "
            f"downloaded ({reason}); {_hint(model_id)}."
        ) from None
