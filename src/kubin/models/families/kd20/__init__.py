"""Kandinsky 2.0 in our own code over the official files: one repo holds both UNets (text to image and
inpainting), the autoencoder and both text encoders (XLM-R and mT5)."""

from kubin.models.common import NO_PRIOR_PARAMS
from kubin.models.spec import Family, ModelSpec, with_tiny_twin

REPO = "sberbank-ai/Kandinsky_2.0"
OFFICIAL_FILE = "Kandinsky-2-0.pt"  # a folder holding it is a Kandinsky 2.0 model folder
SCHEDULERS = ("DDIM", "DDPM", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE", "UniPC", "Euler", "Euler a")


def _defaults(size: int, steps: int) -> dict:
    """The authors' settings: 512x512, guidance 10, DDIM; 50 steps (a divisor of 1000, where our DDIM
    schedule is exactly theirs); their image-to-image strength 0.8 means "keep 80 %", which is Kubin's 0.2."""
    common = {"steps": steps, "guidance_scale": 10.0}
    return {"t2i": {"width": size, "height": size, **common}, "i2i": {**common, "strength": 0.2},
            "inpaint": common, "outpaint": common}  # fmt: skip


MODELS = with_tiny_twin(
    ModelSpec(
        id="kd20",
        family="kd20",
        implementation="native",
        tasks=("t2i", "i2i", "inpaint", "outpaint"),
        title="Kandinsky 2.0",
        sources={"repo": REPO},
        defaults=_defaults(512, steps=50),
        schedulers=SCHEDULERS,
        unused_params=NO_PRIOR_PARAMS,  # no prior, no ControlNet
    ),
    defaults=_defaults(64, steps=4),
)

FAMILY = Family(
    id="kd20",
    models=MODELS,
    order=70,
    official_files={OFFICIAL_FILE: "kd20"},
)
