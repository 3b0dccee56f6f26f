"""What the Kandinsky 2.x families (a prior pipeline feeding a decoder pipeline) do the same way:
their defaults and presets, loading the two pipelines, and saving them as a folder Kubin can load as a model id."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kubin.errors import WeightsMissing
from kubin.models.base import LoadedModel, Phase
from kubin.models.schedulers import compatible_schedulers, pick_scheduler, scheduler_name
from kubin.models.spec import FOLDER_INFO, LoraPart, ModelSpec
from kubin.models.weights import ensure_weights
from kubin.runtime.device import Placement
from kubin.runtime.placement import load_notice, place_pipeline
from kubin.runtime.presets import Preset

log = logging.getLogger(__name__)

# A saved 2.x model folder: prior/ and decoder/ in diffusers layout (decoder/ names the family's pipeline).
PRIOR_DECODER_FOLDERS = ("decoder",)
# --medvram / --lowvram for a prior + decoder model.
PRIOR_DECODER_PRESETS = {
    "medvram": Preset(
        {"offload": "model"},
        "about 4 GB: one part on the GPU at a time, the largest the 1.25 B UNet (2.5 GB in fp16)",
    ),
    "lowvram": Preset(
        {"offload": "sequential", "attention_slicing": True},
        "2 GB or less: layer by layer, attention in slices; much slower",
    ),
}


def prior_decoder_lora_parts(image_tokens: int, reads_prompt: bool, clip_width: int) -> tuple[LoraPart, ...]:
    """The parts of a 2.x model that take adapters: the text-to-image decoder's UNet (also used for image to
    image and mix) and the prior's transformer. 2.1 and 2.2 name every layer alike, so each part carries
    what tells the two apart in a file (see `decoder_telltale`, `prior_telltale`)."""
    return (
        LoraPart(
            "decoder",
            "decoder UNet",
            r"(conv_in|conv_out|time_embedding|add_embedding|encoder_hid_proj\.(image_embeds|text_proj)|mid_block"
            r"|(down|up)_blocks\.\d+\.(attentions\.\d+\.(to_q|to_k|to_v|to_out|add_k_proj|add_v_proj)"
            r"|resnets|downsamplers|upsamplers))(\..*)?",
            prefix="unet",
            telltale=decoder_telltale(image_tokens, reads_prompt),
        ),
        LoraPart(
            "prior",
            "prior transformer",
            r"(transformer_blocks\.\d+\.(attn1|ff)|proj_in|embedding_proj"
            r"|encoder_hidden_states_proj|time_embedding|proj_to_clip_embeddings)(\..*)?",
            prefix="prior",
            telltale=prior_telltale(clip_width),
        ),
    )  # fmt: skip


def decoder_telltale(image_tokens: int, reads_prompt: bool):
    """What tells a 2.x decoder UNet's adapter apart: the 2.1 UNet reads the prompt (its `text_proj` layers)
    and turns the image embedding into 10 tokens of the cross-attention width, the 2.2 UNet into 32 (at
    every size of the model). An adapter of the attention layers alone fits both: it says nothing."""
    import re

    def telltale(shapes: dict[str, tuple[int, int]]) -> bool | None:
        if any(re.fullmatch(r"(encoder_hid_proj|add_embedding)\.text_proj", m) for m in shapes):
            return reads_prompt
        embeds = shapes.get("encoder_hid_proj.image_embeds")
        widths = {shape[0] for m, shape in shapes.items() if m.endswith((".add_k_proj", ".add_v_proj"))}
        if embeds is None or len(widths) != 1:
            return None
        return embeds[1] == image_tokens * widths.pop()

    return telltale


# The CLIP embedding width of the full-size priors: 2.1's ViT-L/14, 2.2's ViT-bigG/14.
CLIP_WIDTHS = (768, 1280)


def prior_telltale(clip_width: int):
    """What tells a 2.x prior's adapter apart: the width of the CLIP embeddings its outer layers read and
    write (768 in 2.1, 1280 in 2.2). Its attention layers are alike in both, and a tiny model's width is
    neither: those say nothing."""

    def telltale(shapes: dict[str, tuple[int, int]]) -> bool | None:
        widths = [
            shape[0]
            for m, shape in shapes.items()
            if m in ("proj_in", "embedding_proj", "encoder_hidden_states_proj")
        ]
        widths += [shape[1] for m, shape in shapes.items() if m == "proj_to_clip_embeddings"]
        known = [w for w in widths if w in CLIP_WIDTHS]
        return known[0] == clip_width if known else None

    return telltale


def step_phases(task: str, params) -> list[Phase]:
    """A batch runs the prior, then the decoder (image to image: the last `strength` share of its steps)."""
    return [
        Phase("prior", params.prior_steps),
        Phase("decoder", params.steps_per_batch() - params.prior_steps),
    ]


def prior_decoder_defaults(size: int, steps: int, prior_steps: int) -> dict[str, dict[str, Any]]:
    """Recommended values per task; only tasks with a free output size get width and height."""
    common = {"steps": steps, "guidance_scale": 4.0, "prior_steps": prior_steps, "prior_guidance_scale": 4.0}
    sized = {"width": size, "height": size, **common}
    return {
        "t2i": sized,
        "mix": sized,
        "i2i": {**common, "strength": 0.5},
        "inpaint": common,
        "outpaint": common,
    }


class PriorDecoderModel(LoadedModel):
    """A loaded 2.x model: one prior feeding the decoder pipelines of every task. The text-to-image decoder
    (also used for image to image and mix) is loaded with the prior; the others (inpainting, ControlNet:
    EXTRA_DECODERS) on first use. A family subclass says how it calls them (`generate`)."""

    # Folder name -> (diffusers pipeline class, what a user calls it), for the decoders loaded on first use.
    EXTRA_DECODERS: dict[str, tuple[str, str]] = {}

    def __init__(self, spec: ModelSpec, prior, decoder, placement: Placement, sources: dict[str, str]):
        self.spec = spec
        self.prior = prior
        self.decoder = decoder
        self.extra_decoders: dict[str, Any] = {}
        self.placement = placement
        self.sources = sources
        self._decoder_scheduler_config = dict(decoder.scheduler.config)
        self.default_scheduler = scheduler_name(decoder.scheduler)

    def schedulers(self, task: str | None = None) -> list[str]:
        # The 2.x decoder loops never call scale_model_input, and they pass generator= to step().
        return compatible_schedulers(self.decoder.scheduler, scales_input=False, passes_generator=True)

    def pick_scheduler(self, task: str, params) -> tuple[Any, str]:
        """The decoder scheduler this job asked for (or the model's own), and its name."""
        return pick_scheduler(
            params.scheduler,
            self.default_scheduler,
            self.schedulers(task),
            self._decoder_scheduler_config,
            self.spec.title,
        )

    def lora_modules(self) -> dict[str, Any]:
        """The decoder's UNet and the prior's transformer, for the family's `lora_parts` that name them."""
        return {"decoder": self.decoder.unet, "prior": self.prior.prior}

    def decoder_loras(self) -> list:
        """The adapters of the job under way that change the text-to-image decoder's UNet."""
        return [lora for lora in getattr(self, "active_loras", []) if lora.file.part == "decoder"]

    def switch_extra_decoder_loras(self, unet) -> None:
        """The job's decoder adapters on an inpainting or ControlNet decoder's own UNet (its attention layers
        are the text-to-image decoder's), unfused; a job without any switches them off there."""
        from kubin.models.lora import AdapterSlots

        slots = self.__dict__.setdefault("_lora_slots", AdapterSlots())
        slots.activate({"decoder": unet}, self.decoder_loras())

    def extra_decoder(self, name: str):
        """A second decoder (inpainting, ControlNet) loaded on first use and kept with the model."""
        if name not in self.extra_decoders:
            import diffusers

            class_name, what = self.EXTRA_DECODERS[name]
            source = self.sources.get(name)
            if not source:
                raise WeightsMissing(
                    f"{self.spec.title} has no {what} decoder: add a {name}/ folder in diffusers layout "
                    f"or set models.<id>.{name} in the config."
                )
            path = ensure_weights(source, self.spec.id)
            pipe = self.load_extra_decoder(getattr(diffusers, class_name), path)
            pipe.set_progress_bar_config(disable=True)  # Kubin reports progress itself
            place_pipeline(pipe, self.placement.device, self.placement.memory)
            self.extra_decoders[name] = pipe
            log.info("Loaded the %s decoder of %s", what, self.spec.id)
        return self.extra_decoders[name]

    def load_extra_decoder(self, cls, path: str):
        return cls.from_pretrained(path, dtype=self.placement.torch_dtype())

    def save(self, folder: str | Path) -> Path:
        """Write the model (with every extra decoder it has) as a folder loadable as a model id."""
        extra = {name: self.extra_decoder(name) for name in self.EXTRA_DECODERS if self.sources.get(name)}
        return save_prior_and_decoder(folder, self.spec, self.prior, self.decoder, extra)

    def release(self) -> None:
        self.prior = self.decoder = None
        self.extra_decoders = {}


def load_prior_and_decoder(
    spec: ModelSpec, sources: dict[str, str], placement: Placement, prior_cls, decoder_cls
):
    """Both pipelines from their sources (downloaded if needed), on the device, with their own bars off."""
    prior_path, decoder_path = find_prior_and_decoder(spec, sources)
    prior_placement = prior_placement_for(placement)
    pipes = (
        prior_cls.from_pretrained(prior_path, dtype=prior_placement.torch_dtype()),
        decoder_cls.from_pretrained(decoder_path, dtype=placement.torch_dtype()),
    )
    for pipe, where in zip(pipes, (prior_placement, placement), strict=True):
        place_pipeline(pipe, where.device, where.memory)
        pipe.set_progress_bar_config(disable=True)  # Kubin reports progress itself
    if prior_placement != placement:
        unquantised = (
            f" It is not quantised: {placement.memory.quantize} needs CUDA."
            if prior_placement.memory.quantize != placement.memory.quantize
            else ""
        )
        load_notice(
            f"The prior runs on the CPU in fp32 (prior on CPU); the decoder on the {placement.device} "
            f"in {placement.dtype}.{unquantised}"
        )
    log.info("Loaded %s on %s (%s)", spec.id, placement.device, placement.dtype)
    return pipes


def find_prior_and_decoder(spec: ModelSpec, sources: dict[str, str]) -> tuple[str, str]:
    """The prior's and the decoder's folders: local, in the Hugging Face cache, or downloaded now (unless
    offline: then WeightsMissing says what to fetch)."""
    return ensure_weights(sources["prior"], spec.id), ensure_weights(sources["decoder"], spec.id)


def prior_placement_for(placement: Placement) -> Placement:
    """Where the prior runs: with prior_on_cpu on the CPU in fp32 (half precision is slow or missing
    there), held whole (there is nothing to offload to) and not quantised by bitsandbytes (CUDA only);
    otherwise beside the decoder."""
    if not placement.memory.prior_on_cpu:
        return placement
    memory = placement.memory.with_(offload="none")
    if memory.quantize.startswith("bnb-"):  # bitsandbytes quantises on CUDA only
        memory = memory.with_(quantize="none")
    return Placement("cpu", "fp32", memory)


def for_decoder(embeds, decoder, placement: Placement):
    """The prior's image embeddings on the decoder's device and in its dtype: they differ with
    prior_on_cpu, and the decoders move them only when guidance is on. (Without it they already match;
    `_execution_device` walks the pipeline's modules, milliseconds per call, so it is not asked then.)"""
    if not placement.memory.prior_on_cpu:
        return embeds
    return embeds.to(device=decoder._execution_device, dtype=decoder.unet.dtype)


def save_prior_and_decoder(
    folder: str | Path, spec: ModelSpec, prior, decoder, extra: dict | None = None
) -> Path:
    """prior/, decoder/ and any extra decoders in diffusers layout, plus kubin.json with the model's
    recommended defaults, so the folder behaves like the model it came from."""
    folder = Path(folder)
    prior.save_pretrained(folder / "prior")
    decoder.save_pretrained(folder / "decoder")
    for name, pipe in (extra or {}).items():
        pipe.save_pretrained(folder / name)
    saved = {"saved_from": spec.id, "defaults": spec.defaults}
    (folder / FOLDER_INFO).write_text(json.dumps(saved, indent=2), encoding="utf-8")
    return folder
