"""Kandinsky 3.1 in our own code over the authors' checkpoints (converted onto diffusers' Kandinsky 3
modules): text to image, image to image, inpainting and outpainting, and the distilled Flash model."""

from kubin.models.common import KANDINSKY3_LORA_PARTS, KANDINSKY3_PRESETS, NO_PRIOR_PARAMS
from kubin.models.spec import TINY_NOTE, Family, ModelSpec

REPO = "ai-forever/Kandinsky3.1"
TASKS = ("t2i", "i2i", "inpaint", "outpaint")
FLASH_TASKS = ("t2i", "i2i")
SCHEDULERS = ("DDPM", "DDIM", "DPM++ 2M", "DPM++ SDE")
FLASH_SCHEDULERS = ("Flash",)


def _spec(flash: bool, tiny: bool = False) -> ModelSpec:
    """The authors' settings: 1024x1024, 50 steps, guidance 3 (inpainting 4); Flash: 4 steps, no guidance."""
    size = 64 if tiny else 1024
    steps, guidance, inpaint_guidance = (4, 1.0, 1.0) if flash else (4 if tiny else 50, 3.0, 4.0)
    common = {"steps": steps, "guidance_scale": guidance}
    defaults = {"t2i": {"width": size, "height": size, **common}, "i2i": {**common, "strength": 0.75}}
    if not flash:
        defaults.update(inpaint={**common, "guidance_scale": inpaint_guidance},
                        outpaint={**common, "guidance_scale": inpaint_guidance})  # fmt: skip
    name = "kd31-flash" if flash else "kd31"
    return ModelSpec(
        id=f"tiny-{name}" if tiny else name,
        family="kd31",
        implementation="native",
        tasks=FLASH_TASKS if flash else TASKS,
        title=("Kandinsky 3.1 Flash" if flash else "Kandinsky 3.1") + (TINY_NOTE if tiny else ""),
        sources={} if tiny else {"repo": REPO},  # tiny: built in code in the same layout
        defaults=defaults,
        schedulers=FLASH_SCHEDULERS if flash else SCHEDULERS,
        features=("flash",) if flash else (),
        unused_params=NO_PRIOR_PARAMS,  # no prior, no ControlNet
        tiny=tiny,
    )


FAMILY = Family(
    id="kd31",
    models=(_spec(flash=False), _spec(flash=True), _spec(flash=False, tiny=True)),
    order=40,
    presets=KANDINSKY3_PRESETS,
    lora_parts=KANDINSKY3_LORA_PARTS,
    int8_helps=True,
    # A folder holding one of these files is laid out like the official repo (the first found decides).
    official_files={"weights/kandinsky3.pt": "kd31", "weights/kandinsky3_flash.pt": "kd31-flash"},
)
