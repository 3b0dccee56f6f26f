"""Kandinsky 5.0 through diffusers: every published checkpoint (text to video Lite and Pro, image to video
Pro, text to image and image editing Lite), one model id per task and variant."""

from typing import Any

from kubin.models.spec import OWN_VLM, TINY_NOTE, Family, LoraPart, ModelSpec
from kubin.params import SOUND_PARAMS
from kubin.runtime.presets import Preset

REPO = "kandinskylab/Kandinsky-5.0-{}-Diffusers"
NEGATIVE = (
    "Static, 2D cartoon, cartoon, 2d animation, paintings, images, worst quality, low quality, ugly, "
    "deformed, walking backwards"
)  # the authors' negative prompt for video, which the pipelines use when none is given
SCHEDULERS = ("Flow Match Euler",)
UNUSED_IMAGE = ("negative_prior_prompt", "prior_steps", "prior_guidance_scale", "hint_image", "batch_size")
LITE_VIDEO_SIZES = ((768, 512), (512, 768), (512, 512))
PRO_VIDEO_SIZES = ((1024, 768), (768, 1024), (768, 512), (512, 768))
PRO_I2V_SIZES = ((768, 512), (512, 768), (1024, 768), (768, 1024))
# The sizes the image pipelines accept (width, height); others are snapped by aspect ratio.
IMAGE_SIZES = ((1024, 1024), (640, 1408), (1408, 640), (768, 1280), (1280, 768), (896, 1152), (1152, 896))
# Variant -> (steps, guidance): no-CFG and distilled models run without classifier-free guidance.
VARIANTS = {"sft": (50, 5.0), "pretrain": (50, 5.0), "nocfg": (50, 1.0), "distilled16steps": (16, 1.0)}
LITE_VARIANTS = ("sft", "pretrain", "nocfg", "distilled16steps")
# Pro is distilled to the same 16 steps without guidance; its repos say "distilled" without the count.
VARIANTS["distilled"] = VARIANTS["distilled16steps"]
VARIANT_TITLES = {
    "sft": "SFT",
    "pretrain": "pretrain",
    "nocfg": "no-CFG",
    "distilled16steps": "distilled, 16 steps",
    "distilled": "distilled, 16 steps",
}
# The model a folder in diffusers layout takes its spec from, by its pipeline class.
PIPELINE_CLASSES = {
    "Kandinsky5T2VPipeline": "kd50-t2v-lite-sft-5s",
    "Kandinsky5I2VPipeline": "kd50-i2v-pro-sft-5s",
    "Kandinsky5T2IPipeline": "kd50-t2i-lite-sft",
    "Kandinsky5I2IPipeline": "kd50-i2i-lite-sft",
}


def _video(line: str, task: str, variant: str, seconds: int, sizes) -> ModelSpec:
    steps, guidance = VARIANTS[variant]
    frames = seconds * 24 + 1
    width, height = sizes[0]
    kind = "T2V" if task == "t2v" else "I2V"
    return ModelSpec(
        id=f"kd50-{task}-{line.lower()}-{'distilled' if variant.startswith('distilled') else variant}-{seconds}s",
        family="kd50",
        implementation="diffusers",
        tasks=(task,),
        title=f"Kandinsky 5.0 {kind} {line} {VARIANT_TITLES[variant]} {seconds} s",
        sources={"pipeline": REPO.format(f"{kind}-{line}-{variant}-{seconds}s")},
        # Image to video follows the init image's aspect ratio (width/height 0) unless asked otherwise.
        defaults={task: {**({"width": width, "height": height} if task == "t2v" else {}), "frames": frames,
                         "fps": 24, "steps": steps, "guidance_scale": guidance,
                         "negative_prompt": NEGATIVE if guidance > 1 else ""}},
        schedulers=SCHEDULERS,
        features=(OWN_VLM,),  # Qwen2.5-VL captions and expands prompts too
        unused_params=SOUND_PARAMS,
        limits={"frames": frames, "frame_step": 4, **({"min_frames": 17} if task == "i2v" else {})},
        resolutions=sizes,
        dtype="bf16",
    )  # fmt: skip


def _image(task: str, variant: str) -> ModelSpec:
    kind = task.upper()
    defaults: dict[str, Any] = {"steps": 50, "guidance_scale": 3.5}
    if task == "t2i":
        defaults.update(width=1024, height=1024)
    return ModelSpec(
        id=f"kd50-{task}-lite-{variant}",
        family="kd50",
        implementation="diffusers",
        tasks=(task,),
        title=f"Kandinsky 5.0 {kind} Lite {VARIANT_TITLES[variant]}",
        sources={"pipeline": REPO.format(f"{kind}-Lite-{variant}")},
        defaults={task: defaults},
        schedulers=SCHEDULERS,
        features=(OWN_VLM,),  # Qwen2.5-VL captions and expands prompts too
        # Image editing here follows the instruction at full steps: there is no strength.
        unused_params=UNUSED_IMAGE + (("strength",) if task == "i2i" else ()),
        resolutions=IMAGE_SIZES,
        resolutions_only=True,
        dtype="bf16",
    )


def _tiny(task: str) -> ModelSpec:
    """tiny-kd50-<task>: the same pipeline class at toy size (64x64; 17 frames for video)."""
    video = task in ("t2v", "i2v")
    base = {"steps": 4, "guidance_scale": 4.0}
    if video:
        base.update(frames=17, fps=8, **({"width": 64, "height": 64} if task == "t2v" else {}))
    elif task == "t2i":
        base.update(width=64, height=64)
    return ModelSpec(
        id=f"tiny-kd50-{task}",
        family="kd50",
        implementation="diffusers",
        tasks=(task,),
        title=f"Kandinsky 5.0 {task.upper()}{TINY_NOTE}",
        defaults={task: base},
        schedulers=SCHEDULERS,
        features=(OWN_VLM,),  # Qwen2.5-VL captions and expands prompts too
        unused_params=SOUND_PARAMS if video else UNUSED_IMAGE + (("strength",) if task == "i2i" else ()),
        limits={"frames": 121, "frame_step": 4, "min_frames": 17} if video else {},
        resolutions=((64, 64), (128, 64), (64, 128)),
        resolutions_only=not video,
        tiny=True,
    )


MODELS = (
    *(_video("Lite", "t2v", v, s, LITE_VIDEO_SIZES) for s in (5, 10) for v in LITE_VARIANTS),
    _video("Pro", "t2v", "sft", 5, PRO_VIDEO_SIZES),
    _video("Pro", "t2v", "distilled", 5, PRO_VIDEO_SIZES),
    _video("Pro", "i2v", "sft", 5, PRO_I2V_SIZES),
    _video("Pro", "i2v", "distilled", 5, PRO_I2V_SIZES),
    _image("t2i", "sft"),
    _image("t2i", "pretrain"),
    _image("i2i", "sft"),
    _image("i2i", "pretrain"),
    *(_tiny(task) for task in ("t2v", "i2v", "t2i", "i2i")),
)

FAMILY = Family(
    id="kd50",
    models=MODELS,
    order=50,
    presets={
        "medvram": Preset(
            {"offload": "model", "vae_tiling": True},
            "16 to 24 GB: one part on the GPU at a time, the largest the Qwen2.5-VL 7B encoder "
            "(about 16 GB in bf16); the video decoded in tiles",
        ),
        "lowvram": Preset(
            {"offload": "sequential", "vae_tiling": True},
            "8 GB: layer by layer (the largest layer is Qwen's 1.1 GB token embedding), the video decoded "
            "in tiles; much slower, and the waiting weights take about 24 GB of system RAM",
        ),
    },
    int8_helps=True,
    vae_tiling=True,
    # TaylorSeer's default module patterns ("^transformer_blocks.*attn", ...) match no Kandinsky 5 module:
    # its visual blocks' attention and feed-forward outputs are the ones predicted between full steps.
    cache_modules=(r"visual_transformer_blocks\.\d+\.(self_attention|cross_attention|feed_forward)",),
    main_pipelines=("pipeline",),
    pipeline_classes=PIPELINE_CLASSES,
    # The diffusion transformer of every Kandinsky 5 pipeline (text and visual blocks, embeddings).
    lora_parts=(
        LoraPart(
            "transformer",
            "transformer",
            r"(time_embeddings|text_embeddings|pooled_text_embeddings|visual_embeddings|out_layer"
            r"|(text|visual)_transformer_blocks\.\d+\.(self_attention|cross_attention|feed_forward"
            r"|text_modulation|visual_modulation))(\..*)?",
            prefix="transformer",
        ),
    ),  # fmt: skip
)
