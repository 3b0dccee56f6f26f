"""Kandinsky 3.1 (base, Flash, inpainting) from the authors' own checkpoints, which diffusers does not ship.

The official files are renamed onto diffusers' Kandinsky 3 modules once and cached (native/kd31_convert.py);
from then on the model runs like Kandinsky 3.0 (`Kandinsky30`: text to image and image to image on one
loaded pipeline), plus what 3.1 adds: the authors' unconditional context (their learned null embedding,
which diffusers' Kandinsky 3 has no place for), the Flash model's sampler (4 steps, no guidance), and
inpainting with the 9-channel UNet (native/kd3_inpaint.py).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams, WeightsMissing
from kubin.models.families.kd31 import convert
from kubin.models.kandinsky3 import Kandinsky30
from kubin.models.kandinsky3 import steps_per_batch as kd30_steps_per_batch
from kubin.models.spec import FOLDER_INFO, ModelSpec
from kubin.params import ImageTaskParams
from kubin.runtime.device import Placement
from kubin.runtime.placement import place_pipeline, release_text_encoders
from kubin.tasks import Prepared

log = logging.getLogger(__name__)

FLASH = "flash"  # the feature of the distilled model: its own sampler, few steps, no guidance
FLASH_SCHEDULER = "Flash"
INPAINT_TASKS = ("inpaint", "outpaint")
TOKENS = 128  # the prompt length the authors' T5 processor pads and cuts to

# The authors' sampler: 1000-step cosine schedule, timesteps 999, 999 - 1000/steps, ... (diffusers'
# "trailing" spacing), each step's x0 clipped to its 99th (inpainting: 95th) percentile of |x0|, at least 1.
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "timestep_spacing": "trailing",
    "prediction_type": "epsilon",
    "variance_type": "fixed_small",
    "clip_sample": False,
    "thresholding": True,
    "dynamic_thresholding_ratio": 0.99,
    "sample_max_value": float("inf"),  # the authors do not cap the percentile (it passes 1e4 at t = 999)
}
INPAINT_THRESHOLD = 0.95


def steps_per_batch(task: str, params: ImageTaskParams) -> int:
    return kd30_steps_per_batch(task, params)


@functools.cache
def flash_scheduler_class():
    from diffusers import DDPMScheduler
    from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput
    from diffusers.utils.torch_utils import randn_tensor

    class Kandinsky31FlashScheduler(DDPMScheduler):
        """The authors' Flash sampling: at timesteps 979, 729, 479, 229 (for 4 steps; 1000/steps apart)
        the model predicts the clean latents, which are noised afresh to the next timestep; the last
        prediction is the result."""

        def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None):
            import torch

            stride = self.config.num_train_timesteps // num_inference_steps
            start = self.config.num_train_timesteps - 21  # 979, the authors' first Flash timestep
            steps = [max(start - i * stride, 0) for i in range(num_inference_steps)]
            self.num_inference_steps = num_inference_steps
            self.timesteps = torch.tensor(steps, dtype=torch.long, device=device)

        def step(self, model_output, timestep, sample, generator=None, return_dict=True):
            alphas = self.alphas_cumprod.to(device=sample.device, dtype=sample.dtype)
            t = int(timestep)
            x0 = (sample - (1 - alphas[t]).sqrt() * model_output) / alphas[t].sqrt()
            later = [int(s) for s in self.timesteps if int(s) < t]
            if later:
                noise = randn_tensor(
                    sample.shape, generator=generator, device=sample.device, dtype=sample.dtype
                )
                following = later[0]
                prev = alphas[following].sqrt() * x0 + (1 - alphas[following]).sqrt() * noise
            else:
                prev = x0
            if not return_dict:
                return (prev,)
            return DDPMSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    return Kandinsky31FlashScheduler


def attach_null_embedding(unet, null_embedding):
    """Give the UNet the authors' conditioning contexts. Their text encoder zeroes the projected context
    at padding tokens, and their unconditional context is the learned null embedding as the one token
    seen. diffusers projects inside the UNet, so the rule is applied to its projection's output: a token
    whose T5 vector is zero (padding) projects to zero, and a context with no token at all (what the
    pipelines pass for "no negative prompt") becomes the null embedding followed by zeros."""

    def hook(module, args, output):
        hidden = args[0]
        padding = (hidden == 0).all(dim=-1)
        if not padding.any():
            return output
        output = output.masked_fill(padding[..., None], 0.0)
        empty = padding.all(dim=-1)
        if empty.any():
            output[empty, 0] = null_embedding.to(device=output.device, dtype=output.dtype)
        return output

    return unet.encoder_hid_proj.register_forward_hook(hook)


def authors_negative(pipe, prompt: str, negative: str, device):
    """The negative prompt as the authors' T5 processor makes it: its tokens cut to the prompt's count,
    the last one made end-of-text, read under the prompt's attention mask; then, like the prompt, zero at
    padding and cut one token past the prompt's length. Returns (embeddings, mask)."""
    import torch

    tokenizer = pipe.tokenizer
    prompt_ids = tokenizer(prompt, max_length=TOKENS, truncation=True)["input_ids"]
    length = len(prompt_ids)
    ids = tokenizer(negative, max_length=TOKENS, truncation=True)["input_ids"][:length]
    ids[-1] = tokenizer.eos_token_id
    ids = torch.tensor([ids + [tokenizer.pad_token_id] * (TOKENS - len(ids))], device=device)
    mask = torch.tensor([[1] * length + [0] * (TOKENS - length)], device=device)
    hidden = pipe.text_encoder(ids, attention_mask=mask)[0]
    cut = min(length + 1, TOKENS)
    return hidden[:, :cut] * mask[:, :cut, None].to(hidden.dtype), mask[:, :cut]


class Kandinsky31(Kandinsky30):
    """A loaded Kandinsky 3.1: the text-to-image pipeline around the converted modules; the inpainting
    UNet is converted and loaded on first use."""

    def __init__(self, spec: ModelSpec, pipe, placement: Placement, repo: str, null_embedding):
        super().__init__(spec, pipe, placement)
        self.repo = repo
        self.flash = FLASH in spec.features
        self.null_embedding = null_embedding
        attach_null_embedding(pipe.unet, null_embedding)
        self._inpaint_pipe = None
        self._inpaint_null = None

    def schedulers(self, task: str = "t2i") -> list[str]:
        return [FLASH_SCHEDULER] if self.flash else super().schedulers(task)

    def _scheduler_for(self, task: str, params: ImageTaskParams):
        from kubin.models.schedulers import pick_scheduler

        if self.flash:
            name = params.scheduler or FLASH_SCHEDULER
            if name != FLASH_SCHEDULER:
                raise InvalidParams(
                    f"Scheduler {name!r} is not available for {self.spec.title}; it samples only with "
                    f"{FLASH_SCHEDULER!r}, the sampler it was distilled for."
                )
            return flash_scheduler_class().from_config(self._scheduler_config), name
        config = dict(self._scheduler_config)
        if task in INPAINT_TASKS:
            config["dynamic_thresholding_ratio"] = INPAINT_THRESHOLD
        return pick_scheduler(
            params.scheduler, self.default_scheduler, self.schedulers(task), config, self.spec.title
        )

    def _pipeline_for(self, task: str, scheduler):
        if task not in INPAINT_TASKS:
            return super()._pipeline_for(task, scheduler)
        if getattr(self, "active_loras", None):
            raise InvalidParams(
                "A Kandinsky 3.1 LoRA applies to its text-to-image UNet (text to image, image to image); the "
                "inpainting UNet takes none."
            )
        from kubin.models.families.kd31.inpaint import Kandinsky3InpaintPipeline

        pipe = Kandinsky3InpaintPipeline(**{**self._inpainting().components, "scheduler": scheduler})
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _task_inputs(self, task: str, params: ImageTaskParams, prepared: Prepared) -> dict[str, Any]:
        if task in INPAINT_TASKS:  # both at the size the job runs at; the result has the image's size
            return {"image": prepared.image, "mask_image": prepared.mask}
        return super()._task_inputs(task, params, prepared)

    def _prompt_inputs(self, pipe, params: ImageTaskParams) -> dict[str, Any]:
        """The prompt and the negative prompt encoded here, as the authors do: the prompt as the pipelines
        would; no negative prompt is their null context, passed as a one-token mask over an all-zero context
        (see attach_null_embedding); a negative prompt is cut to the prompt's token count."""
        negative = params.negative_prompt or None
        guided = params.guidance_scale > 1  # the pipelines' do_classifier_free_guidance
        memory = self.placement.memory
        free = memory.free_text_encoder and memory.offload == "none"
        if free:
            pipe.text_encoder.to(self.placement.device)  # back from the CPU where the last job left it
        device = pipe._execution_device
        embeds, negative_embeds, mask, negative_mask = pipe.encode_prompt(
            params.prompt, guided, num_images_per_prompt=1, device=device, _cut_context=True
        )
        if guided and negative is not None:
            negative_embeds, negative_mask = authors_negative(pipe, params.prompt, negative, device)
        elif guided:
            negative_mask = negative_mask.clone()
            negative_mask[:, 0] = 1
        if free:
            release_text_encoders(pipe)
        return {
            "prompt_embeds": embeds,
            "negative_prompt_embeds": negative_embeds,
            "attention_mask": mask,
            "negative_attention_mask": negative_mask,
        }

    def _inpainting(self):
        """The inpainting pipeline: the converted 9-channel UNet with the loaded text encoder and MoVQ."""
        if self._inpaint_pipe is None:
            from kubin.models.families.kd31.inpaint import Kandinsky3InpaintPipeline, Kandinsky3InpaintUNet

            unet_file, projection_file = (
                convert.native_file(self.repo, name, self.spec.id)
                for name in convert.UNET_FILES["inpainting"]
            )
            folder = convert.converted_unet(
                unet_file, projection_file, convert.unet_arch(self.repo), "kd31-inpainting-unet"
            )
            unet = Kandinsky3InpaintUNet.from_pretrained(folder, torch_dtype=self.placement.torch_dtype())
            self._inpaint_null = convert.load_null_embedding(folder)
            attach_null_embedding(unet, self._inpaint_null)
            pipe = Kandinsky3InpaintPipeline(**{**self.pipe.components, "unet": unet})
            pipe.set_progress_bar_config(disable=True)
            place_pipeline(pipe, self.placement.device, self.placement.memory)
            self._inpaint_pipe = pipe
            log.info("Loaded the inpainting UNet of %s", self.spec.id)
        return self._inpaint_pipe

    def save(self, folder: str | Path) -> Path:
        """The model in the official repo's layout (weights/...: the UNet with its null embedding and
        projection, the inpainting UNet where the model has one, the MoVQ, the T5 encoder) plus kubin.json,
        so `--model FOLDER` loads it back as this model."""
        folder = Path(folder)
        unets = {"flash" if self.flash else "base": (self.pipe.unet, self.null_embedding)}
        if not self.flash:
            try:
                unets["inpainting"] = (self._inpainting().unet, self._inpaint_null)
            except WeightsMissing as exc:
                log.warning("Saving %s without its inpainting UNet: %s", self.spec.id, exc)
        layout = convert.OfficialLayout(
            unets, self.pipe.movq, self.pipe.text_encoder, self.pipe.tokenizer, convert.unet_arch(self.repo)
        )
        layout.save_pretrained(folder)
        info = {"saved_from": self.spec.id, "defaults": self.spec.defaults}
        (folder / FOLDER_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
        return folder

    def release(self) -> None:
        super().release()
        self._inpaint_pipe = None


def find_weights(
    spec: ModelSpec, sources: dict[str, str], placement: Placement, task: str | None = None
) -> dict[str, Path]:
    """The official files the variant loads (its UNet and projection, the MoVQ, the T5 encoder folder): in
    the configured folder or the Hugging Face cache, or downloaded now (see ModelSpec.module)."""
    repo = sources.get("repo")
    if not repo:
        raise WeightsMissing(
            f"{spec.title} needs the official weights: set models.{spec.id}.repo in the config to "
            f"{convert.NATIVE_REPO} or to a local folder laid out like it."
        )
    unet, projection = (convert.native_file(repo, n, spec.id) for n in convert.UNET_FILES[_variant(spec)])
    return {
        "unet": unet,
        "projection": projection,
        "movq": convert.native_file(repo, convert.MOVQ_FILE, spec.id),
        "encoder": convert.native_file(repo, convert.ENCODER_DIR + "/", spec.id),
    }


def _variant(spec: ModelSpec) -> str:
    return "flash" if FLASH in spec.features else "base"


def load(spec: ModelSpec, sources: dict[str, str], placement: Placement) -> Kandinsky31:
    """Convert (once) and load the variant's UNet, the MoVQ and the T5 encoder of the official repo."""
    import torch
    from diffusers import DDPMScheduler, Kandinsky3Pipeline, Kandinsky3UNet, VQModel
    from transformers import T5EncoderModel, T5Tokenizer

    files = find_weights(spec, sources, placement)
    repo, variant, encoder = sources["repo"], _variant(spec), files["encoder"]
    unet_folder = convert.converted_unet(
        files["unet"], files["projection"], convert.unet_arch(repo), f"kd31-{variant}-unet"
    )
    movq_folder = convert.converted_movq(files["movq"])
    dtype = placement.torch_dtype()
    try:  # the tokenizer first: it is quick to read, and spiece.model alone needs sentencepiece
        tokenizer = T5Tokenizer.from_pretrained(encoder)
    except (OSError, ImportError, ValueError) as exc:
        raise WeightsMissing(
            f"Model {spec.id}: the T5 tokenizer in {encoder} could not be read ({_first_line(exc)}); "
            "a tokenizer given only as spiece.model needs the sentencepiece package (pip install sentencepiece)."
        ) from None
    try:
        text_encoder = T5EncoderModel.from_pretrained(encoder, dtype=dtype)
    except OSError as exc:
        raise WeightsMissing(
            f"Model {spec.id}: the T5 encoder in {encoder} is incomplete ({_first_line(exc)})."
        ) from None
    pipe = Kandinsky3Pipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder.eval(),
        unet=Kandinsky3UNet.from_pretrained(unet_folder, torch_dtype=dtype),
        scheduler=DDPMScheduler(**SCHEDULER_CONFIG),
        movq=VQModel.from_pretrained(movq_folder, torch_dtype=dtype),
    )
    pipe.set_progress_bar_config(disable=True)  # Kubin reports progress itself
    place_pipeline(pipe, placement.device, placement.memory)
    null_embedding = convert.load_null_embedding(unet_folder).to(torch.float32)
    log.info("Loaded %s (%s) on %s (%s) from %s", spec.id, variant, placement.device, placement.dtype, repo)
    return Kandinsky31(spec, pipe, placement, repo, null_embedding)


def download(spec: ModelSpec) -> dict[str, Path]:
    """Fetch the files `spec` needs into the Hugging Face cache (or check its local folder): its UNet and
    projection (the base model also the inpainting pair), the MoVQ and the T5 encoder folder."""
    repo = spec.sources.get("repo", "")
    variants = ("flash",) if FLASH in spec.features else ("base", "inpainting")
    names = [name for variant in variants for name in convert.UNET_FILES[variant]]
    names += [convert.MOVQ_FILE, convert.ENCODER_DIR + "/"]
    return {name: convert.native_file(repo, name, spec.id) for name in names}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160].rstrip(".")
