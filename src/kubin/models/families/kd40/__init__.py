"""Kandinsky 4.0 T2V Flash in our own code: the authors' diffusion transformer over the CogVideoX VAE and
T5 encoder, distilled to 4 steps without guidance."""

from kubin.models.spec import TINY_NOTE, Family, ModelSpec

# The authors' 480p sizes (width, height). Their clips have an odd number of latent frames (2 per second
# + 1), which the CogVideoX VAE decodes to 8k+1 frames: 12 s is 25 latent frames = 97 frames at their
# 8 fps. The distilled model runs 4 steps without guidance (no negative prompt).
SIZES = ((672, 384), (384, 672), (512, 512), (736, 352), (352, 736), (544, 480), (480, 544))
UNUSED = ("negative_prompt", "guidance_scale")
SAMPLER = "Kandinsky 4 Flash (CogVideoX DDIM, renoise)"


def _spec(tiny: bool) -> ModelSpec:
    width, height = (64, 64) if tiny else SIZES[0]
    return ModelSpec(
        id="tiny-kd40" if tiny else "kd40",
        family="kd40",
        implementation="native",
        tasks=("t2v",),
        title="Kandinsky 4.0 T2V Flash" + (TINY_NOTE if tiny else ""),
        # built in code on first use when tiny
        sources={} if tiny else {"dit": "ai-forever/kandinsky-4-t2v-flash", "cogvideox": "THUDM/CogVideoX-5b"},
        defaults={"t2v": {"width": width, "height": height, "frames": 17 if tiny else 97, "fps": 8,
                          "steps": 4, "guidance_scale": 1.0, "negative_prompt": ""}},
        schedulers=(SAMPLER,),
        unused_params=UNUSED,
        limits={"frames": 97, "frame_step": 8},
        resolutions=((64, 64), (128, 64), (64, 128)) if tiny else SIZES,
        dtype="bf16",
        tiny=tiny,
    )  # fmt: skip


FAMILY = Family(
    id="kd40",
    models=(_spec(tiny=False), _spec(tiny=True)),
    order=80,
    int8_helps=True,
)
