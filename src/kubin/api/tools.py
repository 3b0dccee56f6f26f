"""The tool models over HTTP: AUTOMATIC1111's `POST /sdapi/v1/interrogate` (its request and response shape)
and Kubin's own `/kubin/api/v1/tools/{caption,depth,enhance}`. Each runs as a tool job in the engine's
queue (behind the jobs already queued), with the models the server's settings name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from kubin.api.jobs import ApiState

CAPTION_MODES = ("short", "detailed", "more detailed", "tags")  # kubin.tools.caption.MODES


class InterrogateRequest(BaseModel):
    """A1111's body: the image, and which interrogator (`clip` or `deepdanbooru` there)."""

    image: str = Field(description="base64 image (or a data: URL)")
    model: str = Field(
        "clip",
        description="Kubin answers with its caption model: `deepdanbooru` (A1111's tagger) gives tags, any other "
        "a detailed caption",
    )


class InterrogateResponse(BaseModel):
    caption: str


class CaptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="base64 image, data: URL or an output url")
    mode: str = Field(
        "short",
        description=", ".join(CAPTION_MODES)
        + " (tags: comma-separated); `detail` is accepted as its old name",
        validation_alias=AliasChoices("mode", "detail"),
    )
    model: str | None = Field(
        None,
        description="a Kandinsky 5 or 6 model id: caption with its own Qwen2.5-VL encoder (no caption model is "
        "loaded); default or another model: the caption model",
    )


class CaptionResponse(BaseModel):
    caption: str
    mode: str
    caption_model: str


class DepthRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(
        description="base64 image, data: URL or an output url: the photo to estimate depth from"
    )


class DepthResponse(BaseModel):
    url: str | None = Field(description="the saved depth map (mode L, the image's size; white = near)")
    width: int
    height: int
    depth_model: str


class EnhanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str
    model: str | None = Field(None, description="the generation model the prompt is for; default: the API's")


class EnhanceResponse(BaseModel):
    prompt: str
    enhanced: str
    model: str
    enhance_model: str


def build_routers(state: ApiState, route_class) -> list[APIRouter]:
    a1111 = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111-compatible"], route_class=route_class)
    native = APIRouter(prefix="/kubin/api/v1/tools", tags=["Kubin tools"], route_class=route_class)

    def image(value: str, what: str):
        from kubin.images import open_image

        created: list[Path] = []
        try:
            return open_image(state.image_file(value, what, created), what).convert("RGB")
        finally:
            for path in created:
                path.unlink(missing_ok=True)

    def caption(value: str, mode: str, model_id: str | None = None) -> str:
        from kubin.tools.jobs import caption_image

        return caption_image(state.engine, image(value, "image"), model_id, mode=mode, owner="api")

    @a1111.post("/interrogate", response_model=InterrogateResponse)
    async def interrogate(request: InterrogateRequest) -> dict[str, Any]:
        """A caption of the image from the caption model (a1111: CLIP interrogator)."""
        mode = "tags" if request.model == "deepdanbooru" else "detailed"
        return {"caption": await run_in_threadpool(caption, request.image, mode)}

    @native.post("/caption", response_model=CaptionResponse)
    async def caption_route(request: CaptionRequest) -> dict[str, Any]:
        """What the image shows, in words (a short, detailed or more detailed caption, or tags)."""
        from kubin.tools.jobs import caption_model_for

        captioner = caption_model_for(state.engine, request.model)
        text = await run_in_threadpool(caption, request.image, request.mode, captioner)
        return {"caption": text, "mode": request.mode, "caption_model": captioner}

    @native.post("/depth", response_model=DepthResponse)
    async def depth_route(request: DepthRequest) -> dict[str, Any]:
        """The depth map of a photo (for a ControlNet hint), saved under the output folder's depth/."""
        from kubin.outputs import save_tool_output
        from kubin.tools.jobs import estimate_depth

        photo = image(request.image, "image")
        depth = await run_in_threadpool(estimate_depth, state.engine, photo, None, "api")
        model = state.engine.tool_models.depth
        saved = save_tool_output(depth, Path(state.output_dir), "depth", model, {}, {})
        return {
            "url": state.output_url(saved),
            "width": depth.width,
            "height": depth.height,
            "depth_model": model,
        }

    @native.post("/enhance", response_model=EnhanceResponse)
    async def enhance_route(request: EnhanceRequest) -> dict[str, Any]:
        """The prompt rewritten in detail for the generation model named: by the prompt expansion model, or by
        that model's own encoder (Kandinsky 5 and 6)."""
        from kubin.tools.jobs import enhance_model_for, enhance_prompt

        spec = state.spec(request.model)
        text = await run_in_threadpool(enhance_prompt, state.engine, request.prompt, spec.id, None, "api")
        return {
            "prompt": request.prompt,
            "enhanced": text,
            "model": spec.id,
            "enhance_model": enhance_model_for(state.engine, spec.id),
        }

    return [a1111, native]
