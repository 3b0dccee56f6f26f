"""Shap-E (OpenAI) through diffusers: text to 3D and image to 3D, one pipeline per task."""

from kubin.models.spec import TINY_NOTE, Family, ModelSpec

TASKS = ("t2mesh", "i2mesh")
# diffusers' Shap-E examples: 64 steps, guidance 15 from text and 3 from an image, 256 px renders.
DEFAULTS = {
    "t2mesh": {"steps": 64, "guidance_scale": 15.0, "frame_size": 256, "mesh_resolution": 128},
    "i2mesh": {"steps": 64, "guidance_scale": 3.0, "frame_size": 256, "mesh_resolution": 128},
}
TINY_DEFAULTS = {
    task: {**values, "steps": 4, "frame_size": 32, "mesh_resolution": 32} for task, values in DEFAULTS.items()
}

FAMILY = Family(
    id="shap-e",
    models=(
        ModelSpec(
            id="shap-e",
            family="shap-e",
            implementation="diffusers",
            tasks=TASKS,
            title="Shap-E (OpenAI)",
            sources={"t2mesh": "openai/shap-e", "i2mesh": "openai/shap-e-img2img"},
            defaults=DEFAULTS,
        ),
        ModelSpec(
            id="tiny-shap-e",
            family="shap-e",
            implementation="diffusers",
            tasks=TASKS,
            title="Shap-E" + TINY_NOTE,
            defaults=TINY_DEFAULTS,
            tiny=True,
        ),
    ),
    order=60,
    main_pipelines=TASKS,
    pipeline_classes={"ShapEPipeline": "shap-e", "ShapEImg2ImgPipeline": "shap-e"},
    # A folder offers a task only when it holds that task's pipeline.
    task_folders={task: task for task in TASKS},
)
