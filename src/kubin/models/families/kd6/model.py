"""Kandinsky 6.0 Video through diffusers' `Kandinsky6TI2VAPipeline`: one multimodal transformer denoises
the video and its soundtrack together (Qwen2.5-VL text tokens and a CLIP pooled embedding in; an optional
init image as the first frame); a HunyuanVideo-style VAE decodes the frames, an MMAudio VAE and vocoder the
sound.

Prompt expansion runs here rather than inside the pipeline call, so that the expanded prompt can be saved
with the video: the pipeline's own `expand_prompts` (the loaded Qwen2.5-VL writes a detailed video+audio
prompt from a short one) is called first, then the pipeline with the result.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams
from kubin.models.base import LoadedModel, Phase
from kubin.models.common import cpu_generators, find_pipeline_folder, folder_attributes
from kubin.models.families.kd6 import FAMILY
from kubin.models.spec import FOLDER_INFO, ModelSpec
from kubin.outputs import Video
from kubin.params import ImageTaskParams
from kubin.runtime.device import Placement
from kubin.runtime.placement import place_pipeline

log = logging.getLogger(__name__)

# Settings diffusers does not save with the pipeline, kept in the model folder's kubin.json:
# how many tokens prompt expansion may write (the pipeline's default, 1024, is its prompt length).
ATTRIBUTES = ("expand_max_tokens",)
EXPAND_MAX_TOKENS = 1024
EXPAND_PHASE = Phase("expand", 1, "Expanding the prompt", counted=False)


def step_phases(task: str, params: ImageTaskParams) -> list[Phase]:
    """The prompt expansion (when asked for), then the denoising steps; an upscale reports its steps as
    shares of its tiles' work (every tile takes every step)."""
    if task == "vsr":
        return [Phase("upscale", params.steps, "Upscaling")]
    expand = [EXPAND_PHASE] if getattr(params, "expand_prompt", False) else []
    return [*expand, Phase("denoise", params.steps)]


class Kandinsky6(LoadedModel):
    """A loaded Kandinsky 6.0 Video model: one pipeline for text to video and image to video."""

    def __init__(self, spec: ModelSpec, pipe, placement: Placement, attributes: dict[str, Any]):
        self.spec = spec
        self.pipe = pipe
        self.placement = placement
        self.attributes = attributes

    def schedulers(self, task: str | None = None) -> list[str]:
        # Flow matching (PiFlow for the distilled checkpoint): the pipeline's own, which nothing replaces.
        return [self.spec.schedulers[0]]

    def lora_modules(self) -> dict[str, Any]:
        return {"transformer": self.pipe.transformer}

    @property
    def has_sound(self) -> bool:
        return self.pipe.audio_vae is not None and self.pipe.vocoder is not None

    def generate(self, task, params, prepared, seeds, on_step) -> tuple[list[Video], str]:
        """One Video (frames, and the soundtrack unless sound is off) per seed."""
        import torch

        name = params.scheduler or self.schedulers(task)[0]
        if name not in self.schedulers(task):
            raise InvalidParams(
                f"Scheduler {name!r} is not available for {self.spec.title}; choose {self.schedulers(task)[0]}."
            )
        sound = bool(params.sample_audio)
        if sound and not self.has_sound:
            raise InvalidParams(
                f"{self.spec.title} was loaded without its audio VAE and vocoder, so it cannot make sound; "
                "turn Sound off."
            )
        width, height = prepared.size
        image = prepared.image if task == "i2v" else None
        expand_phase = 1 if params.expand_prompt else 0

        def hook(pipe, step, timestep, tensors):
            on_step("denoise", expand_phase + step)
            return tensors

        outputs = []
        with torch.no_grad():
            for seed in seeds:  # one video per call (batch size 1)
                prompt, expanded = params.prompt, ""
                if params.expand_prompt:
                    expanded = self.expand(prompt, image, seed)
                    on_step("expand", 0)
                    prompt = expanded
                result = self.pipe(
                    prompt=prompt,
                    image=image,
                    # Empty means the pipeline's own negative prompt (the authors' "Static, 2D cartoon, ...").
                    negative_prompt=params.negative_prompt or None,
                    width=width,
                    height=height,
                    num_frames=prepared.frames,
                    frame_rate=float(params.fps),  # the soundtrack lasts as long as the frames at this rate
                    num_inference_steps=params.steps,
                    guidance_scale=params.guidance_scale,
                    generator=cpu_generators([seed])[0],
                    sample_audio=sound,
                    callback_on_step_end=hook,
                )
                audio = None
                if sound:
                    samples = result.audio[0].float().cpu().numpy()[None]  # (channels, n)
                    audio = (samples, int(self.pipe.audio_sample_rate))
                outputs.append(Video(list(result.frames[0]), audio=audio, expanded_prompt=expanded))
        return outputs, name

    def expand(self, prompt: str, image, seed: int) -> str:
        """The prompt rewritten by the model's Qwen2.5-VL into a detailed video+audio prompt (grounded on the
        init image for image to video); seeded, so a seed gives the same expansion."""
        pipe = self.pipe
        text = pipe.expand_prompts(
            prompt,
            pipe.tokenizer,
            pipe.text_encoder,
            pipe._execution_device,
            image=image,
            max_sequence_length=int(self.attributes.get("expand_max_tokens", EXPAND_MAX_TOKENS)),
            generator=cpu_generators([seed])[0],
        )
        # Printable text only: the answer goes into the metadata, the mp4's tags and the page.
        text = "".join(c for c in text if c.isprintable() or c == "\n").strip()
        return text or prompt  # a model that answers nothing leaves the prompt as it was

    def caption(self, image, mode: str) -> str:
        from kubin.tools.vlm import caption

        pipe = self.pipe
        return caption(pipe.tokenizer, pipe.text_encoder, pipe._execution_device, image, mode)

    def expand_prompt(self, prompt: str) -> str:
        """The pipeline's own expansion (as Expand prompt in a job does), with seed 0: the same prompt gives
        the same text."""
        return self.expand(prompt, None, 0)

    def save(self, folder: str | Path) -> Path:
        """The pipeline as folder/pipeline/ plus kubin.json (defaults and unsaved attributes)."""
        folder = Path(folder)
        self.pipe.save_pretrained(folder / "pipeline")
        info = {"saved_from": self.spec.id, "defaults": self.spec.defaults, "attributes": self.attributes}
        (folder / FOLDER_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
        return folder

    def release(self) -> None:
        self.pipe = None


class Kandinsky6SuperResolution(LoadedModel):
    """A loaded Kandinsky 6.0 video super-resolution model (`Kandinsky6SRPipeline`): the vsr task."""

    def __init__(self, spec: ModelSpec, pipe, placement: Placement):
        self.spec = spec
        self.pipe = pipe
        self.placement = placement

    def schedulers(self, task: str | None = None) -> list[str]:
        return [self.spec.schedulers[0]]

    def generate(self, task, params, prepared, seeds, on_step) -> tuple[list[Video], str]:
        """One upscaled Video per seed (the seed picks the noise mixed into the tiles), with the source's
        frame rate and sound."""
        import torch

        outputs = []
        for seed in seeds:
            with torch.no_grad(), _reporting_steps(self.pipe, params.steps, on_step):
                try:
                    result = self.pipe(
                        video=prepared.video,
                        resolution_scale=float(params.scale),
                        num_inference_steps=params.steps,
                        min_overlap=params.tile_overlap,
                        generator=cpu_generators([seed])[0],
                    )
                except ValueError as exc:  # a video smaller than one tile, ...
                    if "must be at least" not in str(exc):
                        raise
                    raise InvalidParams(f"The video is too small for {self.spec.title}: {exc}") from None
            outputs.append(Video(list(result.frames[0]), audio=prepared.audio, fps=prepared.fps))
        return outputs, self.schedulers(task)[0]

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.pipe.save_pretrained(folder / "pipeline")
        info = {"saved_from": self.spec.id, "defaults": self.spec.defaults}
        (folder / FOLDER_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
        return folder

    def release(self) -> None:
        self.pipe = None


@contextmanager
def _reporting_steps(pipe, steps: int, on_step):
    """Report a super-resolution call's progress through on_step (which may raise to cancel) as `steps`
    shares: the pipeline takes no step callback and runs every step of one tile before the next tile, so
    its progress bar's updates are counted and scaled to `steps` reports."""

    class Counting:
        def __init__(self, total: int):
            self.total, self.updates, self.reported = max(1, total), 0, 0

        def update(self, n: int = 1) -> None:
            self.updates += n
            while self.reported < round(self.updates * steps / self.total):
                self.reported += 1
                on_step("upscale", self.reported)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

    own = pipe.progress_bar
    pipe.progress_bar = lambda iterable=None, total=None: Counting(total or 1)
    try:
        yield
    finally:
        pipe.progress_bar = own


find_weights = find_pipeline_folder


def load(spec: ModelSpec, sources: dict[str, str], placement: Placement) -> LoadedModel:
    from diffusers import Kandinsky6SRPipeline, Kandinsky6TI2VAPipeline

    path = find_weights(spec, sources, placement)
    if spec.tasks == ("vsr",):
        pipe = Kandinsky6SRPipeline.from_pretrained(path, dtype=placement.torch_dtype())
        place_pipeline(pipe, placement.device, placement.memory)
        pipe.set_progress_bar_config(disable=True)
        log.info("Loaded %s on %s (%s)", spec.id, placement.device, placement.dtype)
        return Kandinsky6SuperResolution(spec, pipe, placement)
    pipe = Kandinsky6TI2VAPipeline.from_pretrained(path, dtype=placement.torch_dtype())
    attributes = folder_attributes(Path(path), ATTRIBUTES)
    if placement.memory.free_text_encoder:
        log.info(
            "free_text_encoder is not applied to Kandinsky 6 (prompt expansion needs Qwen2.5-VL); "
            "use offload=model to keep its encoders off the GPU."
        )
    place_pipeline(pipe, placement.device, placement.memory, cache_modules=FAMILY.cache_modules)
    pipe.set_progress_bar_config(disable=True)  # Kubin reports progress itself
    log.info("Loaded %s on %s (%s)", spec.id, placement.device, placement.dtype)
    return Kandinsky6(spec, pipe, placement, attributes)
