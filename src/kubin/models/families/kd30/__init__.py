"""Kandinsky 3.0 through diffusers: one pipeline (T5 text encoder, UNet, MoVQ), no prior, no ControlNet;
its code is the Kandinsky 3 architecture Kandinsky 3.1 shares (kubin.models.kandinsky3)."""

from typing import Any

from kubin.models.common import KANDINSKY3_LORA_PARTS, KANDINSKY3_PRESETS, NO_PRIOR_PARAMS
from kubin.models.spec import Family, ModelSpec, with_tiny_twin

# Its loops skip scale_model_input and pass generator= to step(); Karras sigmas are left out because on
# its cosine schedule they pile the timesteps up at the end and the DPM solver steps past its last sigma.
SCHEDULERS = ("DDPM", "DDIM", "DPM++ 2M", "DPM++ SDE")


def _defaults(size: int, steps: int) -> dict[str, dict[str, Any]]:
    # diffusers' Kandinsky 3 examples: 1024x1024, 25 steps, guidance 3; image to image at strength 0.75.
    common = {"steps": steps, "guidance_scale": 3.0}
    return {"t2i": {"width": size, "height": size, **common}, "i2i": {**common, "strength": 0.75}}


MODELS = with_tiny_twin(
    ModelSpec(
        id="kd30",
        family="kd30",
        implementation="diffusers",
        tasks=("t2i", "i2i"),
        title="Kandinsky 3.0",
        sources={"pipeline": "kandinsky-community/kandinsky-3"},
        defaults=_defaults(1024, steps=25),
        schedulers=SCHEDULERS,
        unused_params=NO_PRIOR_PARAMS,
    ),
    defaults=_defaults(64, steps=4),
)

FAMILY = Family(
    id="kd30",
    models=MODELS,
    order=30,
    presets=KANDINSKY3_PRESETS,
    lora_parts=KANDINSKY3_LORA_PARTS,
    int8_helps=True,
    attention_slicing=True,
    main_pipelines=("pipeline",),
    pipeline_classes={"Kandinsky3Pipeline": "kd30"},
)
