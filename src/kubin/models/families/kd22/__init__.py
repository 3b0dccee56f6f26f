"""Kandinsky 2.2 through diffusers: a prior turns text into a CLIP image embedding, a decoder paints it;
with an inpainting and a depth-ControlNet decoder."""

from kubin.models.prior_decoder import (
    PRIOR_DECODER_FOLDERS,
    PRIOR_DECODER_PRESETS,
    prior_decoder_defaults,
    prior_decoder_lora_parts,
)
from kubin.models.spec import Family, ModelSpec, with_tiny_twin

# The 2.2 decoder loop never calls scale_model_input and passes generator= to step(), so only schedulers
# that need no input scaling and take a generator (UniPC, DEIS and PNDM do not).
SCHEDULERS = ("DDPM", "DDIM", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE")
TASKS = ("t2i", "i2i", "mix", "inpaint", "outpaint")
SOURCES = {
    "prior": "kandinsky-community/kandinsky-2-2-prior",
    "decoder": "kandinsky-community/kandinsky-2-2-decoder",
    "decoder_inpaint": "kandinsky-community/kandinsky-2-2-decoder-inpaint",
    "decoder_controlnet": "kandinsky-community/kandinsky-2-2-controlnet-depth",
}


MODELS = with_tiny_twin(
    ModelSpec(
        id="kd22",
        family="kd22",
        implementation="diffusers",
        tasks=TASKS,
        title="Kandinsky 2.2",
        sources=SOURCES,
        defaults=prior_decoder_defaults(768, steps=50, prior_steps=25),
        schedulers=SCHEDULERS,
        features=("controlnet",),
    ),
    defaults=prior_decoder_defaults(64, steps=4, prior_steps=2),
)

FAMILY = Family(
    id="kd22",
    models=MODELS,
    order=10,
    presets=PRIOR_DECODER_PRESETS,
    attention_slicing=True,
    main_pipelines=PRIOR_DECODER_FOLDERS,
    pipeline_classes={"KandinskyV22Pipeline": "kd22"},
    # ControlNet needs its own decoder: only a folder that holds one has the feature.
    feature_folders={"controlnet": "decoder_controlnet"},
    # The 2.2 decoder turns the image embedding into 32 tokens and reads no prompt; its CLIP is ViT-bigG.
    lora_parts=prior_decoder_lora_parts(image_tokens=32, reads_prompt=False, clip_width=1280),
)
