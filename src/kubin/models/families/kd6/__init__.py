"""Kandinsky 6.0 Video through diffusers (`Kandinsky6TI2VAPipeline`): 5-second clips with a synchronized
soundtrack, from a prompt or from a first frame and a prompt. One model id per published checkpoint; each
runs both tasks (text to video and image to video) with one pipeline. Its video super-resolution model
(`Kandinsky6SRPipeline`, kd6-sr) upscales any video (the vsr task)."""

from kubin.models.spec import OWN_VLM, TINY_NOTE, Family, LoraPart, ModelSpec
from kubin.runtime.presets import Preset

REPO = "kandinskylab/Kandinsky-6.0-{}-5s-Diffusers"
# The authors' negative prompt, which the pipeline uses when none is given (with guidance above 1).
NEGATIVE = (
    "Static, 2D cartoon, cartoon, 2d animation, paintings, images, worst quality, low quality, ugly, "
    "deformed, walking backwards"
)
FPS = 24
FRAMES = 5 * FPS + 1  # the 5 s checkpoints: 121 frames, 4k+1 (the video VAE packs 4 frames per latent)
# Sizes (width, height): the pipeline's default 768x512 and its docs' 864x480 for Pro; the transformer
# takes any multiple of 16, these are offered as presets.
LITE_SIZES = ((768, 512), (512, 768), (512, 512))
PRO_SIZES = ((864, 480), (480, 864), (768, 512), (512, 768))
# Published checkpoints: id -> (repo name, title, steps, guidance, scheduler, sizes). The distilled ones are
# run with PiFlow at guidance 1 (no negative prompt) and the 10 steps they were distilled to (the authors'
# PiFlow settings and diffusers' model table; an older pipeline docstring said 16).
VARIANTS = {
    "kd6": ("Lite", "Kandinsky 6.0 Video Lite (3B)", 50, 5.0, "Flow Match Euler", LITE_SIZES),
    "kd6-lite-distill": ("Lite-distill", "Kandinsky 6.0 Video Lite distilled, 10 steps (3B)", 10, 1.0, "PiFlow",
                         LITE_SIZES),
    "kd6-lite-pretrain": ("Lite-pretrain", "Kandinsky 6.0 Video Lite pretrain (3B)", 50, 5.0, "Flow Match Euler",
                          LITE_SIZES),
    "kd6-pro": ("Pro", "Kandinsky 6.0 Video Pro (29B)", 50, 5.0, "Flow Match Euler", PRO_SIZES),
    "kd6-pro-distill": ("Pro-distill", "Kandinsky 6.0 Video Pro distilled, 10 steps (29B)", 10, 1.0, "PiFlow",
                        PRO_SIZES),
    "kd6-pro-pretrain": ("Pro-pretrain", "Kandinsky 6.0 Video Pro pretrain (29B)", 50, 5.0, "Flow Match Euler",
                         PRO_SIZES),
}  # fmt: skip
PIPELINE_CLASSES = {"Kandinsky6TI2VAPipeline": "kd6", "Kandinsky6SRPipeline": "kd6-sr"}
# Video super-resolution, distilled to 2 steps (PiFlow): any video 2x, 2.25x or 4x, in overlapping tiles.
SR_REPO = "kandinskylab/Kandinsky-6.0-VSR-distilled2steps-5s-Diffusers"


def _defaults(steps: int, guidance: float, size: tuple[int, int], frames: int, fps: int) -> dict:
    """The recommended values of both tasks; image to video follows the init image's aspect ratio."""
    common = {"frames": frames, "fps": fps, "steps": steps, "guidance_scale": guidance,
              "negative_prompt": NEGATIVE if guidance > 1 else "", "sample_audio": True}  # fmt: skip
    return {"t2v": {**common, "width": size[0], "height": size[1]}, "i2v": dict(common)}


def _model(model_id: str) -> ModelSpec:
    repo, title, steps, guidance, scheduler, sizes = VARIANTS[model_id]
    return ModelSpec(
        id=model_id,
        family="kd6",
        implementation="diffusers",
        tasks=("t2v", "i2v"),
        title=title,
        sources={"pipeline": REPO.format(repo)},
        defaults=_defaults(steps, guidance, sizes[0], FRAMES, FPS),
        schedulers=(scheduler,),
        features=(OWN_VLM,),  # Qwen2.5-VL captions and expands prompts too
        # The distilled model has no guidance to set: its steps are the schedule PiFlow was distilled to.
        unused_params=("guidance_scale", "negative_prompt") if guidance == 1.0 else (),
        limits={"frames": FRAMES, "frame_step": 4},
        resolutions=sizes,
        dtype="bf16",
    )


TINY = ModelSpec(
    id="tiny-kd6",
    family="kd6",
    implementation="diffusers",
    tasks=("t2v", "i2v"),
    title="Kandinsky 6.0 Video" + TINY_NOTE,
    defaults=_defaults(4, 4.0, (64, 64), 17, 8),
    schedulers=("Flow Match Euler",),
    features=(OWN_VLM,),
    limits={"frames": 121, "frame_step": 4},
    resolutions=((64, 64), (128, 64), (64, 128)),
    tiny=True,
)

SUPER_RESOLUTION = ModelSpec(
    id="kd6-sr",
    family="kd6",
    implementation="diffusers",
    tasks=("vsr",),
    title="Kandinsky 6.0 video super-resolution (1.4B, 2 steps)",
    sources={"pipeline": SR_REPO},
    defaults={"vsr": {"steps": 2, "scale": "2.25"}},  # 854x480 -> 1920x1080
    schedulers=("PiFlow",),
    dtype="bf16",
)
TINY_SUPER_RESOLUTION = ModelSpec(
    id="tiny-kd6-sr",
    family="kd6",
    implementation="diffusers",
    tasks=("vsr",),
    title="Kandinsky 6.0 video super-resolution" + TINY_NOTE,
    defaults={"vsr": {"steps": 2, "scale": "2"}},
    schedulers=("PiFlow",),
    tiny=True,
)

FAMILY = Family(
    id="kd6",
    models=(*(_model(model_id) for model_id in VARIANTS), TINY, SUPER_RESOLUTION, TINY_SUPER_RESOLUTION),
    order=55,
    presets={
        "medvram": Preset(
            {"offload": "model", "vae_tiling": True},
            "Lite: 16 to 24 GB: one part on the GPU at a time, the largest the Qwen2.5-VL 7B encoder (about "
            "16 GB in bf16); the video decoded in tiles. Pro's 29B transformer needs about 58 GB in bf16, or "
            "int8 and a 40 GB card (estimates)",
        ),
        "lowvram": Preset(
            {"offload": "sequential", "vae_tiling": True},
            "8 GB: layer by layer, the video decoded in tiles; much slower, and the waiting weights take "
            "about 26 GB (Lite) or 80 GB (Pro) of system RAM (estimates)",
        ),
    },
    int8_helps=True,
    vae_tiling=True,
    # As for Kandinsky 5: the visual blocks' attention and feed-forward outputs (TaylorSeer's defaults
    # match no module here).
    cache_modules=(r"visual_transformer_blocks\.\d+\.(self_attention|cross_attention|feed_forward)",),
    main_pipelines=("pipeline",),
    pipeline_classes=PIPELINE_CLASSES,
    # The video-and-sound transformer: its video and audio text streams, and visual blocks whose video and
    # audio decoder blocks and cross-modal attention tell it from Kandinsky 5's.
    lora_parts=(
        LoraPart(
            "transformer",
            "transformer",
            r"((audio|video)_(time_embeddings|text_embeddings|pooled_text_embeddings|text_transformer_blocks)"
            r"|audio_embeddings|audio_out_layer|visual_embeddings|out_layer"
            r"|visual_transformer_blocks\.\d+\.(video_dec_block|audio_dec_block|av_cross_attention"
            r"|va_cross_attention|av_modulation|va_modulation))(\..*)?",
            prefix="transformer",
        ),
    ),  # fmt: skip
)
