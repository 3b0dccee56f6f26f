"""Kandinsky 2.0, our own implementation: the official files of `sberbank-ai/Kandinsky_2.0` (two UNets, a
KL autoencoder, a multilingual CLIP and an mT5 text encoder) loaded into Kubin's UNet
(`native/kd20_unet.py`), transformers' text encoders and diffusers' `AutoencoderKL`, sampled with diffusers'
schedulers. Text to image, image to image, inpainting and outpainting (the inpainting UNet, loaded on
first use).

How this follows the authors' sampling (kandinsky2/kandinsky2_model.py), and where it differs on purpose:
- Prompts are padded to 77 tokens for both encoders, and the UNet sees every position (it has no text
  mask). Guidance mixes the prompt's noise with the noise for the negative prompt (empty by default, as
  the authors' only choice) and keeps the prompt's learned variance.
- DDIM (the authors' default sampler, eta 0.05) is diffusers' DDIMScheduler with the same schedule
  (linear betas 1e-4..0.02, timesteps k * (1000 // steps) + 1, final alpha = alphas_cumprod[0]). When
  1000 is not a multiple of `steps`, the authors' sampler runs more steps than asked (75 runs 77); we run
  the steps asked for. DDPM is their `p_sampler`: respaced ancestral steps with the learned variance
  range and x0 clipped to [-1, 1] (DDPMScheduler, variance_type "learned_range", linspace spacing).
- Image to image uses Kubin's strength (how much to change) and starts at the schedule's own timestep; the
  authors' strength means how much to keep (their 0.8 is our 0.2), always works at 512x512 and noises one
  training step below the first timestep it samples.
- Inpainting feeds the UNet the latent image and the mask (1 = keep, with the authors' one-pixel growth of
  the repainted area). Their `p_sampler` also pastes the known latents into each step's x0 estimate; their
  DDIM sampler does not, and neither do we: Kubin puts the unmasked pixels back at the end.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image

from kubin.errors import InvalidParams, KubinError, WeightsMissing
from kubin.models.base import LoadedModel
from kubin.models.common import cpu_generators
from kubin.models.families.kd20.unet import Kandinsky20UNet, MultilingualCLIPText, UNetConfig
from kubin.models.schedulers import make_scheduler
from kubin.models.spec import FOLDER_INFO, ModelSpec
from kubin.models.weights import hub_offline
from kubin.params import ImageTaskParams
from kubin.runtime.device import Placement
from kubin.runtime.placement import load_notice, on_device, place_modules

log = logging.getLogger(__name__)


UNET_FILE = "Kandinsky-2-0.pt"
INPAINT_UNET_FILE = "Kandinsky-2-0-inpainting.pt"
VAE_FILE = "vae.ckpt"
TEXT_ENCODER_FILES = {  # what the authors download of each text encoder folder
    "text_encoder1": ("config.json", "pytorch_model.bin", "sentencepiece.bpe.model", "special_tokens_map.json",
                      "tokenizer.json", "tokenizer_config.json"),
    "text_encoder2": ("config.json", "pytorch_model.bin", "spiece.model", "special_tokens_map.json",
                      "tokenizer_config.json"),
}  # fmt: skip
# The files a folder must hold to load (the rest of the lists above are tokenizer files a folder may hold
# in another form, e.g. tokenizer.json alone).
REQUIRED_IN_TEXT_ENCODER = ("config.json", "pytorch_model.bin", "tokenizer_config.json")
LATENT_SCALE = 0.0512  # the authors' scale of the autoencoder's latents
MAX_TOKENS = 77
DDIM_ETA = 0.05  # the authors' default for their DDIM sampler
# The published autoencoder (the authors' ddconfig): 4 levels, 128 channels times 1, 2, 4, 4.
VAE_DDCONFIG = {"z_channels": 4, "resolution": 256, "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2}

# The authors' diffusion: 1000 linear betas from 1e-4 to 0.02, epsilon prediction with a learned variance.
SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",  # their DDIM timesteps: k * (1000 // steps) + 1
    "clip_sample": False,
    "set_alpha_to_one": False,  # the last DDIM step goes to alphas_cumprod[0]
}
# Per scheduler, what makes it the authors' sampler: DDPM is their p_sampler over a respaced schedule.
SCHEDULER_CONFIG = {
    "DDPM": {"variance_type": "learned_range", "clip_sample": True, "timestep_spacing": "linspace"},
}
SCHEDULERS = ("DDIM", "DDPM", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE", "UniPC", "Euler", "Euler a")


def steps_per_batch(task: str, params: ImageTaskParams) -> int:
    """No prior: the denoising steps, of which image to image runs the last `strength` share."""
    return params.decoder_steps() if task == "i2i" else params.steps


def scheduler_for(name: str):
    """The diffusers scheduler `name` configured as the authors' diffusion."""
    return make_scheduler(name, {**SCHEDULE, **SCHEDULER_CONFIG.get(name, {})})


class Kandinsky20(LoadedModel):
    """A loaded Kandinsky 2.0: text encoders, autoencoder and the text-to-image UNet; the inpainting UNet
    is loaded on first use."""

    def __init__(self, spec: ModelSpec, parts: dict[str, Any], files: ModelFiles, placement: Placement):
        self.spec = spec
        self.tokenizer1 = parts["tokenizer1"]
        self.text_encoder1 = parts["text_encoder1"]
        self.tokenizer2 = parts["tokenizer2"]
        self.text_encoder2 = parts["text_encoder2"]
        self.vae = parts["vae"]
        self.unet = parts["unet"]
        self.inpaint_unet = None
        self.files = files
        self.placement = placement
        self.default_scheduler = SCHEDULERS[0]

    def schedulers(self, task: str = "t2i") -> list[str]:
        return list(SCHEDULERS)

    def generate(self, task, params, prepared, seeds, on_step) -> tuple[list[Image.Image], str]:
        """Images for one batch (one per seed), and the name of the scheduler used."""
        import torch

        name = params.scheduler or self.default_scheduler
        if name not in SCHEDULERS:
            raise InvalidParams(
                f"Scheduler {name!r} is not available for {self.spec.title}; choose one of {', '.join(SCHEDULERS)}."
            )
        scheduler = scheduler_for(name)
        inpainting = task in ("inpaint", "outpaint")
        unet = self._inpaint_unet() if inpainting else self.unet
        device, dtype = self.placement.device, self.placement.torch_dtype()
        batch = len(seeds)
        generators = cpu_generators(seeds)
        with torch.no_grad():
            text = self._encode_prompt(params.prompt, params.negative_prompt, batch)
            width, height = prepared.size
            shape = (4, height // 8, width // 8)
            noise = torch.cat([torch.randn((1, *shape), generator=g) for g in generators]).to(device, dtype)
            scheduler.set_timesteps(params.steps, device=device)
            timesteps = scheduler.timesteps
            extra: dict[str, torch.Tensor] = {}
            if task == "i2i":
                start = params.steps - params.decoder_steps()
                timesteps = timesteps[start * scheduler.order :]
                if hasattr(scheduler, "set_begin_index"):
                    scheduler.set_begin_index(start * scheduler.order)
                image = self._encode_image(prepared.image, generators)
                latents = scheduler.add_noise(image, noise, timesteps[:1].repeat(batch))
            else:
                latents = noise * scheduler.init_noise_sigma
            if inpainting:
                image = self._encode_image(prepared.image, generators)
                keep = latent_keep_mask(prepared.mask, shape[1:]).to(device, dtype)
                extra = {
                    "inpaint_image": (image * keep).repeat(2, 1, 1, 1),
                    "inpaint_mask": keep.repeat(2 * batch, 1, 1, 1),
                }
            learned_variance = getattr(scheduler.config, "variance_type", None) in (
                "learned",
                "learned_range",
            )
            step_args = _step_arguments(scheduler, generators, eta=DDIM_ETA if name == "DDIM" else None)
            with on_device(unet, self.placement):
                for i, t in enumerate(timesteps):
                    model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)
                    out = unet(model_input, t.expand(2 * batch).to(device), **text, **extra)
                    eps, variance = out[:, :4], out[:, 4:]
                    cond, uncond = eps.chunk(2)
                    eps = uncond + params.guidance_scale * (cond - uncond)
                    if learned_variance:
                        eps = torch.cat([eps, variance.chunk(2)[0]], dim=1)
                    latents = scheduler.step(eps.to(latents.dtype), t, latents, **step_args).prev_sample
                    on_step("denoise", i)
            with on_device(self.vae, self.placement):
                pixels = self.vae.decode(latents / LATENT_SCALE).sample
        return to_images(pixels), name

    def _encode_prompt(self, prompt: str, negative: str, batch: int) -> dict:
        """Both encoders' outputs for the prompt rows then the negative rows (`batch` of each)."""
        import torch

        texts = [prompt, negative or ""]
        out = {}
        with on_device(self.text_encoder1, self.placement, visiting=self.placement.memory.free_text_encoder):
            ids, mask = self._tokens(self.tokenizer1, texts)
            full1, pooled1 = self.text_encoder1(ids, mask)
        with on_device(self.text_encoder2, self.placement, visiting=self.placement.memory.free_text_encoder):
            ids, mask = self._tokens(self.tokenizer2, texts)
            full2 = self.text_encoder2(input_ids=ids, attention_mask=mask).last_hidden_state
        for name, value in (("full_emb1", full1), ("pooled_emb1", pooled1), ("full_emb2", full2)):
            out[name] = torch.repeat_interleave(value, batch, dim=0)
        return out

    def _tokens(self, tokenizer, texts: list[str]):
        encoded = tokenizer(
            texts, max_length=MAX_TOKENS, padding="max_length", truncation=True, return_tensors="pt"
        )
        device = self.placement.device
        return encoded["input_ids"].to(device), encoded["attention_mask"].to(device)

    def _encode_image(self, image: Image.Image, generators: list):
        """The image's latents, one sample of the autoencoder's posterior per seed, scaled as the UNet expects."""
        import numpy as np
        import torch

        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1)
        pixels = pixels.permute(2, 0, 1)[None].to(self.placement.device, self.placement.torch_dtype())
        with on_device(self.vae, self.placement):
            posterior = self.vae.encode(pixels).latent_dist
            latents = (
                [posterior.sample(generator=g) for g in generators] if generators else [posterior.mode()]
            )
        return torch.cat(latents) * LATENT_SCALE

    def _inpaint_unet(self):
        if self.inpaint_unet is None:
            self.inpaint_unet = load_unet(
                self.files.path(INPAINT_UNET_FILE), self.files.unet_config(True), self.placement
            )
            log.info("Loaded the inpainting UNet of %s", self.spec.id)
        return self.inpaint_unet

    def save(self, folder: str | Path) -> Path:
        """The model in the official layout (loadable as a model folder), plus kubin.json with its configs
        and recommended defaults."""
        folder = Path(folder)
        write_official_layout(
            folder,
            unet=self.unet,
            inpaint_unet=self._inpaint_unet() if "inpaint" in self.spec.tasks else None,
            vae=self.vae,
            text_encoder1=self.text_encoder1,
            tokenizer1=self.tokenizer1,
            text_encoder2=self.text_encoder2,
            tokenizer2=self.tokenizer2,
            info={"saved_from": self.spec.id, "defaults": self.spec.defaults},
        )
        return folder

    def release(self) -> None:
        self.unet = self.inpaint_unet = self.vae = self.text_encoder1 = self.text_encoder2 = None


def _step_arguments(scheduler, generators: list, eta: float | None) -> dict:
    """What this scheduler's step() takes of: the seeds' generators, DDIM's eta."""
    import inspect

    accepted = inspect.signature(scheduler.step).parameters
    args: dict[str, Any] = {"generator": generators} if "generator" in accepted else {}
    if eta is not None and "eta" in accepted:
        args["eta"] = eta
    return args


def latent_keep_mask(mask: Image.Image, size: tuple[int, int]):
    """The authors' inpainting mask at latent size: 1 where the image is kept, 0 where it is repainted,
    with the repainted area grown by one latent pixel (along the main diagonal and the axes, as theirs)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    repaint = torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0 > 0.5).float()
    repaint = F.interpolate(repaint[None, None], size=size, mode="nearest")
    kernel = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])[None, None]
    grown = F.conv2d(repaint, kernel, padding=1) > 0
    return 1.0 - grown.float()


def to_images(pixels) -> list[Image.Image]:
    """[-1, 1] images to PIL, rounded as the authors' process_images does."""
    array = ((pixels.float() + 1) * 127.5).round().clamp(0, 255).to("cpu").byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in array]


# --- weights: the official layout ------------------------------------------------------------------------
class ModelFiles:
    """Where the files of one Kandinsky 2.0 come from: a local folder in the official layout, or the hub
    repo (the cache first, a download when allowed). A missing file is a WeightsMissing naming it."""

    def __init__(self, source: str, model_id: str):
        self.source = source
        self.model_id = model_id
        path = Path(source).expanduser()
        self.folder = path if path.is_absolute() or source.startswith((".", "~")) or path.exists() else None
        if self.folder is not None and not self.folder.is_dir():
            raise WeightsMissing(f"Model {model_id}: the folder {self.folder} does not exist.")
        self._info: dict | None = None

    def path(self, name: str) -> Path:
        """The local path of a file (or of a text encoder folder, with the files it must hold)."""
        names = [f"{name}/{f}" for f in TEXT_ENCODER_FILES[name]] if name in TEXT_ENCODER_FILES else [name]
        if self.folder is not None:
            required = (
                [f"{name}/{f}" for f in REQUIRED_IN_TEXT_ENCODER] if name in TEXT_ENCODER_FILES else names
            )
            missing = [n for n in required if not (self.folder / n).is_file()]
            if missing:
                raise WeightsMissing(
                    f"Model {self.model_id}: the folder {self.folder} has no {', '.join(missing)}; a Kandinsky 2.0 "
                    f"folder holds the files of sberbank-ai/Kandinsky_2.0 ({UNET_FILE}, {INPAINT_UNET_FILE}, "
                    f"{VAE_FILE}, text_encoder1/, text_encoder2/)."
                )
            return self.folder / name
        first = self._hub_file(names[0])
        for other in names[1:]:
            self._hub_file(other)
        return first.parent if name in TEXT_ENCODER_FILES else first

    def _hub_file(self, name: str) -> Path:
        from huggingface_hub import hf_hub_download

        try:  # the cache first, without touching the network
            return Path(hf_hub_download(self.source, name, local_files_only=True))
        except Exception:
            pass
        hint = (
            f"run `python -m kubin download {self.model_id}` on a machine with internet access, or point the "
            f"config's models.{self.model_id}.repo at a local folder with the official files"
        )
        if hub_offline():
            raise WeightsMissing(
                f"Model {self.model_id} needs {name} from {self.source}, which is not in the Hugging Face cache "
                f"and downloads are off (HF_HUB_OFFLINE); {hint}."
            )
        log.warning("Downloading %s of %s for %s (first use)...", name, self.source, self.model_id)
        try:
            return Path(hf_hub_download(self.source, name))
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise WeightsMissing(
                f"Model {self.model_id} needs {name} from {self.source}, which could not be downloaded ({reason}); {hint}."
            ) from None

    def info(self) -> dict:
        """kubin.json beside the official files (written by `kubin save` and the tiny model): the configs of
        a model that is not the published size. The published repo has none."""
        if self._info is None:
            self._info = {}
            if self.folder is not None and (self.folder / FOLDER_INFO).is_file():
                self._info = json.loads((self.folder / FOLDER_INFO).read_text(encoding="utf-8"))
        return self._info

    def unet_config(self, inpainting: bool) -> UNetConfig:
        return UNetConfig.from_dict({**self.info().get("unet_config", {}), "inpainting": inpainting})

    def vae_config(self) -> dict:
        return vae_config(self.info().get("vae_ddconfig", VAE_DDCONFIG))


def find_weights(
    spec: ModelSpec, sources: dict[str, str], placement: Placement, task: str | None = None
) -> ModelFiles:
    """The official files a load reads (the UNet, the autoencoder, both text encoders): in the configured
    folder or the Hugging Face cache, or downloaded now (see ModelSpec.module)."""
    files = ModelFiles(sources["repo"], spec.id)
    for name in (UNET_FILE, VAE_FILE, *TEXT_ENCODER_FILES):
        files.path(name)
    return files


def load(spec: ModelSpec, sources: dict[str, str], placement: Placement) -> Kandinsky20:
    files = find_weights(spec, sources, placement)  # every file checked before the slow loading
    parts = load_text_encoders(files, placement)
    encoders = {"text_encoder1": parts["text_encoder1"], "text_encoder2": parts["text_encoder2"]}
    _quantize(
        {"text_encoder": encoders["text_encoder1"], "text_encoder_2": encoders["text_encoder2"]}, placement
    )
    # Freed after encoding: the text encoders rest on the CPU and visit the device for each prompt.
    place_modules(encoders, placement, visiting=tuple(encoders) if placement.memory.free_text_encoder else ())
    parts["vae"] = load_vae(files.path(VAE_FILE), files.vae_config(), placement)
    parts["unet"] = load_unet(files.path(UNET_FILE), files.unet_config(False), placement)
    log.info("Loaded %s on %s (%s)", spec.id, placement.device, placement.dtype)
    return Kandinsky20(spec, parts, files, placement)


def download(spec: ModelSpec) -> dict[str, Path]:
    """Fetch into the Hugging Face cache (or find in a local folder) every file of the model: both UNets,
    the autoencoder and both text encoder folders. Returns where each is."""
    files = ModelFiles(spec.sources["repo"], spec.id)
    return {name: files.path(name) for name in (UNET_FILE, INPAINT_UNET_FILE, VAE_FILE, *TEXT_ENCODER_FILES)}


def _torch_load(path: Path) -> dict:
    """A checkpoint's tensors: memory-mapped where the file allows it, and unpickling only tensors and plain
    data where it holds nothing else (a Lightning checkpoint may also hold training objects; the authors'
    code unpickles those files in full, and so do we, from the repo or folder the user chose)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):  # a file in the legacy (pre-zip) format cannot be memory-mapped
            raise
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        log.warning("%s holds more than tensors; loading it with full unpickling, as the authors do", path)
        return torch.load(path, map_location="cpu", weights_only=False)


def load_unet(path: Path, config: UNetConfig, placement: Placement) -> Kandinsky20UNet:
    """A UNet checkpoint, strictly for its parameters: a missing tensor is an error; tensors the module does
    not have (the authors load with strict=False) are logged and left out."""
    import torch

    state = _torch_load(path)
    with torch.device("meta"):
        unet = Kandinsky20UNet(config)
    _check_keys(unet.state_dict(), state, path)
    unet.load_state_dict({k: v for k, v in state.items() if k in unet.state_dict()}, assign=True)
    unet = unet.to(placement.torch_dtype()).eval()
    _quantize({"unet": unet}, placement)  # on the CPU still: it moves to the device quantised
    place_modules({"unet": unet}, placement)  # the device or offload; channels-last, torch.compile
    return unet


def _quantize(modules: dict, placement: Placement) -> None:
    """memory.quantize: the UNet's / text encoders' Linear layers in 8 or 4 bits (runtime/quantize.py)."""
    if placement.memory.quantize != "none":
        from kubin.runtime.quantize import quantize_components

        for notice in quantize_components(modules, placement.memory, placement.device):
            load_notice(notice)


class OfficialLayout:
    """Modules to be written in the official layout, by `save_pretrained` like a diffusers pipeline (the
    tiny model is built so)."""

    def __init__(self, **modules):
        self.modules = modules

    def save_pretrained(self, folder: str | Path) -> None:
        write_official_layout(Path(folder), **self.modules)


def _check_keys(expected: dict, state: dict, path: Path) -> None:
    missing = [k for k in expected if k not in state]
    if missing:
        raise WeightsMissing(
            f"{path} is not a Kandinsky 2.0 checkpoint of this configuration: {len(missing)} tensor(s) missing, "
            f"e.g. {', '.join(missing[:3])}."
        )
    wrong = [k for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise WeightsMissing(
            f"{path} does not match this configuration: {wrong[0]} has shape {tuple(state[wrong[0]].shape)}."
        )
    extra = [k for k in state if k not in expected]
    if extra:
        log.info("%s: %d tensor(s) not used (e.g. %s)", path.name, len(extra), extra[0])


def vae_config(ddconfig: dict) -> dict:
    """diffusers' AutoencoderKL arguments for the authors' LDM `ddconfig`."""
    levels = len(ddconfig["ch_mult"])
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": ddconfig["z_channels"],
        "block_out_channels": [ddconfig["ch"] * m for m in ddconfig["ch_mult"]],
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "layers_per_block": ddconfig["num_res_blocks"],
        "sample_size": ddconfig["resolution"],
        "scaling_factor": LATENT_SCALE,
    }


def load_vae(path: Path, config: dict, placement: Placement):
    """vae.ckpt (a Lightning checkpoint in latent-diffusion names) through diffusers' LDM conversion."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    checkpoint = _torch_load(path)
    state = checkpoint.get("state_dict", checkpoint)
    state = {k: v for k, v in state.items() if not k.startswith("loss.")}  # the training discriminator
    vae = AutoencoderKL(**config)
    converted = convert_ldm_vae_checkpoint(state, vae.config)
    _check_keys(vae.state_dict(), converted, path)
    vae.load_state_dict(converted)
    vae = vae.eval()
    if placement.dtype != "fp32":  # (a cast to the same dtype makes diffusers warn about float32 modules)
        vae = vae.to(placement.torch_dtype())
    if placement.memory.vae_tiling:
        vae.enable_tiling()
    if placement.memory.vae_slicing:
        vae.enable_slicing()
    place_modules({"vae": vae}, placement)
    return vae


def load_text_encoders(files: ModelFiles, placement: Placement) -> dict:
    """text_encoder1/ (multilingual CLIP: XLM-R + linear, one state dict) and text_encoder2/ (mT5 encoder),
    each with the tokenizer saved beside it."""
    import torch
    from transformers import AutoConfig, MT5EncoderModel

    folder1, folder2 = files.path("text_encoder1"), files.path("text_encoder2")
    state = _torch_load(folder1 / "pytorch_model.bin")
    if "LinearTransformation.weight" not in state:
        raise WeightsMissing(
            f"{folder1 / 'pytorch_model.bin'} has no LinearTransformation: not a multilingual CLIP."
        )
    encoder1 = MultilingualCLIPText(
        AutoConfig.from_pretrained(folder1), state["LinearTransformation.weight"].shape[0]
    )
    _check_keys(encoder1.state_dict(), state, folder1 / "pytorch_model.bin")
    encoder1.load_state_dict({k: v for k, v in state.items() if k in encoder1.state_dict()})
    encoder2 = MT5EncoderModel.from_pretrained(folder2, dtype=torch.float32)
    dtype = placement.torch_dtype()
    # mT5 overflows in float16 (its activations pass 65504): it stays in float32 then (bf16 is safe).
    dtype2 = torch.float32 if placement.dtype == "fp16" else dtype
    return {
        "tokenizer1": _tokenizer(folder1),
        "text_encoder1": encoder1.to(dtype).eval(),
        "tokenizer2": _tokenizer(folder2),
        "text_encoder2": encoder2.to(dtype2).eval(),
    }


def _tokenizer(folder: Path):
    """The tokenizer saved in a text encoder folder. The official mT5 folder holds only its SentencePiece
    model (spiece.model), which transformers reads only with the sentencepiece package."""
    import importlib.util

    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except (ValueError, ImportError, OSError):
        if (folder / "tokenizer.json").is_file() or importlib.util.find_spec("sentencepiece") is not None:
            raise
        raise KubinError(
            f"The tokenizer in {folder} is a SentencePiece model without a tokenizer.json, and reading it needs "
            "the sentencepiece package: install it with `pip install sentencepiece` (in Kubin's venv)."
        ) from None


def write_official_layout(folder: Path, *, unet, inpaint_unet, vae, text_encoder1, tokenizer1, text_encoder2,
                          tokenizer2, info: dict | None = None) -> None:  # fmt: skip
    """Write the modules as sberbank-ai/Kandinsky_2.0 lays them out (torch state dicts, a Lightning-style
    vae.ckpt in latent-diffusion names, transformers folders with pytorch_model.bin), plus kubin.json with
    the UNet and autoencoder configs, which the official repo leaves to the code."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    cpu = {k: v.detach().to("cpu") for k, v in unet.state_dict().items()}
    torch.save(cpu, folder / UNET_FILE)
    if inpaint_unet is not None:
        torch.save(
            {k: v.detach().to("cpu") for k, v in inpaint_unet.state_dict().items()},
            folder / INPAINT_UNET_FILE,
        )
    vae_state = {k: v.detach().to("cpu") for k, v in vae.state_dict().items()}
    torch.save({"state_dict": vae_to_ldm(vae_state)}, folder / VAE_FILE)
    for name, encoder, tokenizer in (
        ("text_encoder1", text_encoder1, tokenizer1),
        ("text_encoder2", text_encoder2, tokenizer2),
    ):
        sub = folder / name
        sub.mkdir(exist_ok=True)
        config = encoder.transformer.config if name == "text_encoder1" else encoder.config
        config.save_pretrained(sub)
        torch.save(
            {k: v.detach().to("cpu") for k, v in encoder.state_dict().items()}, sub / "pytorch_model.bin"
        )
        tokenizer.save_pretrained(sub)
    config = {k: v for k, v in asdict(unet.config).items() if k != "inpainting"}
    ddconfig = _ddconfig(vae.config)
    (folder / FOLDER_INFO).write_text(
        json.dumps({**(info or {}), "unet_config": config, "vae_ddconfig": ddconfig}, indent=2),
        encoding="utf-8",
    )


def _ddconfig(config) -> dict:
    ch = config.block_out_channels[0]
    return {
        "z_channels": config.latent_channels,
        "resolution": config.sample_size,
        "ch": ch,
        "ch_mult": [c // ch for c in config.block_out_channels],
        "num_res_blocks": config.layers_per_block,
    }


_VAE_RENAMES = [  # diffusers -> latent-diffusion names (the inverse of diffusers' single-file conversion)
    (r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.(\d)\.", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.", r"\1.mid.attn_1.norm."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_(q|k|v)\.", r"\1.mid.attn_1.\2."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_out\.0\.", r"\1.mid.attn_1.proj_out."),
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block."),
    (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample."),
    (r"\.conv_shortcut\.", ".nin_shortcut."),
]


def vae_to_ldm(state: dict) -> dict:
    """An AutoencoderKL state dict in latent-diffusion names, as vae.ckpt holds it."""
    ups = 1 + max(int(m[1]) for k in state if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k)))
    out = {}
    for key, value in state.items():
        for pattern, repl in _VAE_RENAMES:
            key = re.sub(pattern, repl, key)
        up = re.match(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers\.0)\.", key)
        if up:
            kind = "block" if up[2] == "resnets" else "upsample"
            key = f"decoder.up.{ups - 1 - int(up[1])}.{kind}." + key[up.end() :]
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # the LDM attention projections are 1x1 convolutions
        out[key] = value.detach()
    return out
