"""Kandinsky 4.0 T2V Flash in our own code: the authors' diffusion transformer over the CogVideoX VAE and
T5 encoder, distilled to 4 steps without guidance."""

from kubin.models.spec import Family, ModelSpec, with_tiny_twin
from kubin.params import SOUND_PARAMS

# The authors' 480p sizes (width, height). Their clips have an odd number of latent frames (2 per second
# + 1), which the CogVideoX VAE decodes to 8k+1 frames: 12 s is 25 latent frames = 97 frames at their
# 8 fps. The distilled model runs 4 steps without guidance (no negative prompt).
SIZES = ((672, 384), (384, 672), (512, 512), (736, 352), (352, 736), (544, 480), (480, 544))
UNUSED = ("negative_prompt", "guidance_scale", *SOUND_PARAMS)
SAMPLER = "Kandinsky 4 Flash (CogVideoX DDIM, renoise)"


def _defaults(width: int, height: int, frames: int) -> dict:
    return {"t2v": {"width": width, "height": height, "frames": frames, "fps": 8, "steps": 4,
                    "guidance_scale": 1.0, "negative_prompt": ""}}  # fmt: skip


MODELS = with_tiny_twin(
    ModelSpec(
        id="kd40",
        family="kd40",
        implementation="native",
        tasks=("t2v",),
        title="Kandinsky 4.0 T2V Flash",
        sources={"dit": "ai-forever/kandinsky-4-t2v-flash", "cogvideox": "THUDM/CogVideoX-5b"},
        defaults=_defaults(*SIZES[0], frames=97),
        schedulers=(SAMPLER,),
        unused_params=UNUSED,
        limits={"frames": 97, "frame_step": 8},
        resolutions=SIZES,
        dtype="bf16",
    ),
    defaults=_defaults(64, 64, frames=17),
    resolutions=((64, 64), (128, 64), (64, 128)),
)

FAMILY = Family(
    id="kd40",
    models=MODELS,
    order=80,
    int8_helps=True,
)
