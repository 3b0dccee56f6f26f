"""Kandinsky 2.1 through diffusers: a prior turns text (or a mix of texts and images) into a CLIP image
embedding; the decoders read it and the prompt, through their own multilingual text encoder."""

from kubin.models.prior_decoder import (
    PRIOR_DECODER_FOLDERS,
    PRIOR_DECODER_PRESETS,
    prior_decoder_defaults,
    prior_decoder_lora_parts,
)
from kubin.models.spec import Family, ModelSpec, with_tiny_twin

# The 2.1 decoders loop like 2.2's (no scale_model_input, generator= passed to step()); their own is DDIM.
SCHEDULERS = ("DDIM", "DDPM", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE")
TASKS = ("t2i", "i2i", "mix", "inpaint", "outpaint")
SOURCES = {
    "prior": "kandinsky-community/kandinsky-2-1-prior",
    "decoder": "kandinsky-community/kandinsky-2-1",
    "decoder_inpaint": "kandinsky-community/kandinsky-2-1-inpaint",
}


# diffusers' examples for 2.1: 768x768, 100 decoder steps, 25 prior steps, guidance 4 for both.
MODELS = with_tiny_twin(
    ModelSpec(
        id="kd21",
        family="kd21",
        implementation="diffusers",
        tasks=TASKS,
        title="Kandinsky 2.1",
        sources=SOURCES,
        defaults=prior_decoder_defaults(768, steps=100, prior_steps=25),
        schedulers=SCHEDULERS,
    ),
    defaults=prior_decoder_defaults(64, steps=4, prior_steps=2),
)

FAMILY = Family(
    id="kd21",
    models=MODELS,
    order=20,
    presets=PRIOR_DECODER_PRESETS,
    attention_slicing=True,
    main_pipelines=PRIOR_DECODER_FOLDERS,
    pipeline_classes={"KandinskyPipeline": "kd21"},
    # The 2.1 decoder turns the image embedding into 10 tokens and reads the prompt; its CLIP is ViT-L/14.
    lora_parts=prior_decoder_lora_parts(image_tokens=10, reads_prompt=True, clip_width=768),
)
