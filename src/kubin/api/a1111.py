"""The AUTOMATIC1111-compatible subset of the API (/sdapi/v1/...), so tools written for that web UI
work with Kandinsky unchanged.

Same field names, types and response shapes as A1111: images as base64 PNGs (the saved files, with
their `parameters` chunk), `parameters` echoing the request and `info` a JSON string. Fields that
mean nothing for Kandinsky are accepted and ignored (listed in info's `ignored_fields`); unknown
fields are a 422 naming them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Body
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from kubin import __version__
from kubin.api.jobs import ApiState, wait_for
from kubin.api.security import decode_image
from kubin.engine import CANCELLED, FAILED, JobHandle
from kubin.errors import InvalidParams
from kubin.models.registry import list_models


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Mapped to Kandinsky parameters (None: the model's recommended value).
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    sampler_name: str | None = None
    scheduler: str | None = Field(None, description='"Karras" with "DPM++ 2M" picks "DPM++ 2M Karras"')
    batch_size: int = 1
    n_iter: int = Field(1, description="batch count")
    steps: int | None = None
    cfg_scale: float | None = Field(None, description="guidance scale")
    width: int | None = None
    height: int | None = None
    override_settings: dict[str, Any] | None = Field(None, description="only sd_model_checkpoint is used")
    send_images: bool = True
    # Accepted for compatibility and ignored.
    styles: list[str] | None = None
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_index: str | None = None
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    force_task_id: str | None = None
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    save_images: bool = True
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None
    distilled_cfg_scale: float | None = None


class Txt2ImgRequest(_Request):
    denoising_strength: float | None = None
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    hr_distilled_cfg: float | None = None
    hr_additional_modules: list[str] | None = None


class Img2ImgRequest(_Request):
    init_images: list[str] = Field(default_factory=list, description="base64 images; the first is used")
    denoising_strength: float | None = Field(None, description="strength of the change, 0..1")
    mask: str | None = Field(None, description="base64 mask (white = repaint): inpainting")
    inpainting_mask_invert: int = Field(0, description="1 repaints the black part")
    mask_blur: int | None = None
    include_init_images: bool = False
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None


class GenerationResponse(BaseModel):
    images: list[str]
    parameters: dict[str, Any]
    info: str


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None


class PngInfoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="base64 PNG")


class PngInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


# Options a client may set: the model is applied, the rest are A1111 settings with no meaning here.
IGNORED_OPTIONS = {
    "sd_vae", "CLIP_stop_at_last_layers", "samples_format", "samples_save", "save_images_add_number",
    "grid_save", "outdir_samples", "outdir_txt2img_samples", "outdir_img2img_samples", "eta_noise_seed_delta",
    "sd_checkpoint_hash", "live_previews_enable", "show_progress_every_n_steps", "enable_pnginfo",
    "forge_additional_modules", "forge_preset", "sd_model_refiner", "img2img_color_correction",
    "sd_vae_overrides_per_model_preferences", "token_merging_ratio", "upscaler_for_img2img",
}  # fmt: skip
# Request fields mapped to Kandinsky parameters; every other field is accepted and ignored.
MAPPED = {
    "prompt", "negative_prompt", "seed", "sampler_name", "scheduler", "batch_size", "n_iter", "steps",
    "cfg_scale", "width", "height", "override_settings", "send_images", "init_images", "denoising_strength",
    "mask", "inpainting_mask_invert", "mask_blur", "include_init_images", "sampler_index", "save_images",
}  # fmt: skip


def build_router(state: ApiState, route_class) -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111-compatible"], route_class=route_class)

    # Async: a waiting client holds no worker thread (the pool is shared with the UI's events), and
    # one that disconnects leaves its job to finish and save its images.
    @router.post("/txt2img", response_model=GenerationResponse)
    async def txt2img(request: Txt2ImgRequest) -> dict[str, Any]:
        """Text to image."""
        handle, sampler = await run_in_threadpool(_submit_txt2img, state, request)
        await wait_for(handle)
        return await run_in_threadpool(_response, state, handle, request, request.model_dump(), sampler)

    @router.post("/img2img", response_model=GenerationResponse)
    async def img2img(request: Img2ImgRequest) -> dict[str, Any]:
        """Image to image; with `mask`, inpainting (white repaints)."""
        handle, sampler = await run_in_threadpool(_submit_img2img, state, request)
        await wait_for(handle)
        echo = request.model_dump()
        if not request.include_init_images:
            echo["init_images"] = None
            echo["mask"] = None
        return await run_in_threadpool(_response, state, handle, request, echo, sampler)

    @router.get("/sd-models")
    def sd_models() -> list[dict[str, Any]]:
        """The image models (title = model id, for sd_model_checkpoint); video models are in /kubin/api/v1."""
        return [
            {
                "title": spec.id,
                "model_name": spec.id,
                "hash": None,
                "sha256": None,
                "filename": next(iter(spec.sources.values()), ""),
                "config": None,
            }
            for spec in list_models()
            if spec.supports("t2i") or spec.supports("i2i")
        ]

    @router.get("/samplers")
    def samplers() -> list[dict[str, Any]]:
        """The schedulers of the API's current model."""
        return [{"name": name, "aliases": [], "options": {}} for name in state.spec().schedulers]

    @router.get("/schedulers")
    def schedulers() -> list[dict[str, Any]]:
        """A1111 1.9+ splits samplers and schedules; here "Karras" is the only schedule (see samplers)."""
        karras = any(name.endswith("Karras") for name in state.spec().schedulers)
        names = [("automatic", "Automatic")] + ([("karras", "Karras")] if karras else [])
        return [
            {"name": name, "label": label, "aliases": None, "default_rho": -1, "need_inner_model": False}
            for name, label in names
        ]

    # What A1111 clients list at start; Kandinsky has none of these, so they are empty.
    for path, empty in (
        ("/upscalers", []), ("/sd-vae", []), ("/prompt-styles", []),
        ("/embeddings", {"loaded": {}, "skipped": {}}), ("/hypernetworks", []), ("/face-restorers", []),
    ):  # fmt: skip
        router.add_api_route(path, _constant(empty), methods=["GET"], summary=f"always {empty}")

    @router.get("/loras")
    def loras() -> list[dict[str, Any]]:
        """The adapters of the LoRA folder that fit a model family, as A1111 lists them: name, alias, path,
        metadata (the file's safetensors metadata). Use them in a prompt as <lora:name:weight>."""
        return [
            {"name": f.name, "alias": f.name, "path": str(f.path), "metadata": dict(f.metadata)}
            for f in state.engine.loras.list()
            if f.fits
        ]

    @router.post("/refresh-loras")
    def refresh_loras() -> None:
        """Scan the LoRA folder again."""
        state.engine.loras.refresh()

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        """Nothing to rescan: the models are Kubin's registry."""

    @router.get("/options")
    def get_options() -> dict[str, Any]:
        return {
            "sd_model_checkpoint": state.model_id,
            "outdir_samples": str(state.output_dir),
            "samples_format": "png",
            "samples_save": True,
        }

    @router.post("/options")
    def set_options(options: dict[str, Any] = Body(...)) -> None:  # noqa: B008 (FastAPI's idiom)
        """Only `sd_model_checkpoint` changes anything (the API's model; the UI keeps its own)."""
        unknown = sorted(set(options) - IGNORED_OPTIONS - {"sd_model_checkpoint"})
        if unknown:
            raise InvalidParams(
                f"Unknown option(s): {', '.join(unknown)}. Kubin uses sd_model_checkpoint and ignores "
                f"{', '.join(sorted(IGNORED_OPTIONS))}."
            )
        if "sd_model_checkpoint" in options:
            state.model_id = state.spec(_checkpoint_id(options["sd_model_checkpoint"])).id
        return None

    @router.get("/progress", response_model=ProgressResponse)
    def progress(skip_current_image: bool = False) -> dict[str, Any]:
        """The running job's progress; current_image is its latest saved image."""
        pending = state.engine.pending()
        current = state.engine.current()
        out: dict[str, Any] = {"progress": 0.0, "eta_relative": 0.0, "current_image": None, "textinfo": None}
        job_state = ProgressState(job_count=len(pending), interrupted=state.interrupted)
        if current is not None:
            total = max(current.total_steps, 1)
            out["progress"] = min(current.step / total, 1.0)
            out["eta_relative"] = round(current.eta_seconds() or 0.0, 2)
            job_state.job = f"job {current.id}"
            job_state.job_no = len(current.results)
            job_state.sampling_step = current.step
            job_state.sampling_steps = current.total_steps
            job_state.interrupted = current.cancel_requested
            job_state.job_timestamp = _timestamp(current)
            out["textinfo"] = f"Step {current.step}/{current.total_steps}" if current.step else "Starting…"
            if not skip_current_image and current.results and current.results[-1].path.suffix == ".png":
                out["current_image"] = _b64(current.results[-1].path)
        out["state"] = job_state
        return out

    @router.post("/interrupt")
    def interrupt() -> None:
        """Stop the running job within a step; the images finished so far are saved and returned."""
        current = state.engine.current()
        if current is not None:
            state.interrupted = True
            state.engine.cancel(current)

    @router.post("/png-info", response_model=PngInfoResponse)
    def png_info(request: PngInfoRequest) -> dict[str, Any]:
        """The generation parameters a PNG carries (A1111 `parameters`, and Kubin's own JSON)."""
        path = decode_image(request.image, "image", state.uploads, state.max_upload_pixels)
        try:
            with Image.open(path) as image:
                items = {
                    k: v
                    for k, v in (getattr(image, "text", None) or image.info).items()
                    if isinstance(v, str)
                }
        finally:
            path.unlink(missing_ok=True)
        info = items.pop("parameters", "")
        return {"info": info, "items": items, "parameters": parse_infotext(info) if info else {}}

    return router


def _constant(value: Any):
    def answer() -> Any:
        return value

    return answer


def _checkpoint_id(value: Any) -> str:
    """A1111 titles look like "name [hash]": the part before the hash."""
    return re.sub(r"\s*\[[0-9a-fA-F]*\]\s*$", "", str(value))


def _model_override(state: ApiState, request: _Request) -> str:
    checkpoint = (request.override_settings or {}).get("sd_model_checkpoint")
    return state.spec(_checkpoint_id(checkpoint)).id if checkpoint else state.model_id


def _common_params(state: ApiState, request: _Request, model_id: str) -> tuple[dict[str, Any], SamplerChoice]:
    """The parameters both routes share, and the sampler choice (for the notice in the answer)."""
    params: dict[str, Any] = {
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "batch_size": request.batch_size,
        "batch_count": request.n_iter,
    }
    if request.steps is not None:
        params["steps"] = request.steps
    if request.cfg_scale is not None:
        params["guidance_scale"] = request.cfg_scale
    sampler = pick_sampler(request.sampler_name, request.scheduler, state.spec(model_id).schedulers)
    if not sampler.requested and request.sampler_index:  # the deprecated alias
        sampler = pick_sampler(request.sampler_index, None, state.spec(model_id).schedulers, strict=False)
    if sampler.scheduler:
        params["scheduler"] = sampler.scheduler
    return params, sampler


def _size(request: _Request) -> dict[str, int]:
    return {k: v for k, v in (("width", request.width), ("height", request.height)) if v is not None}


# AUTOMATIC1111's sampler names -> Kubin's schedulers, closest first (same family and order, then
# deterministic or stochastic alike). A name the model offers itself is used as it is.
A1111_SAMPLERS: dict[str, tuple[str, ...]] = {
    "euler a": ("Euler a", "DDPM", "Euler", "DPM++ SDE"),
    "euler": ("Euler", "Flow Match Euler", "DDIM", "DPM++ 2M"),
    "lms": ("DPM++ 2M", "UniPC", "DEIS", "PNDM"),
    "lms karras": ("DPM++ 2M Karras", "DPM++ 2M", "UniPC"),
    "heun": ("Heun", "DPM++ 2M", "UniPC"),
    "dpm2": ("DPM++ 2M", "Heun", "UniPC"),
    "dpm2 karras": ("DPM++ 2M Karras", "DPM++ 2M", "Heun"),
    "dpm2 a": ("DPM++ SDE", "Euler a", "DDPM"),
    "dpm2 a karras": ("DPM++ SDE", "Euler a", "DDPM"),
    "dpm++ 2s a": ("DPM++ SDE", "Euler a", "DDPM"),
    "dpm++ 2s a karras": ("DPM++ SDE", "Euler a", "DDPM"),
    "dpm++ 2m": ("DPM++ 2M", "DPM++ 2M Karras", "UniPC", "DEIS"),
    "dpm++ 2m karras": ("DPM++ 2M Karras", "DPM++ 2M", "UniPC"),
    "dpm++ sde": ("DPM++ SDE", "DDPM", "Euler a"),
    "dpm++ sde karras": ("DPM++ SDE", "DDPM", "Euler a"),
    "dpm++ 2m sde": ("DPM++ SDE", "DPM++ 2M"),
    "dpm++ 2m sde karras": ("DPM++ SDE", "DPM++ 2M Karras", "DPM++ 2M"),
    "dpm++ 2m sde exponential": ("DPM++ SDE", "DPM++ 2M"),
    "dpm++ 2m sde heun": ("DPM++ SDE", "Heun", "DPM++ 2M"),
    "dpm++ 2m sde heun karras": ("DPM++ SDE", "Heun", "DPM++ 2M Karras"),
    "dpm++ 3m sde": ("DPM++ SDE", "DPM++ 2M"),
    "dpm++ 3m sde karras": ("DPM++ SDE", "DPM++ 2M Karras"),
    "dpm fast": ("DPM++ 2M", "UniPC"),
    "dpm adaptive": ("DPM++ 2M", "UniPC"),
    "restart": ("Heun", "DPM++ 2M"),
    "ddim": ("DDIM", "Euler", "Flow Match Euler"),
    "ddim cfg++": ("DDIM", "Euler", "Flow Match Euler"),
    "plms": ("PNDM", "DPM++ 2M", "UniPC"),
    "unipc": ("UniPC", "DPM++ 2M", "DEIS"),
    "lcm": (),
    "ddpm": ("DDPM", "Euler a", "DPM++ SDE"),
}


@dataclass(frozen=True)
class SamplerChoice:
    """What runs for a request's sampler: `scheduler` is the model's ("" for its default); `exact` when
    the model offers the requested name itself."""

    requested: str = ""
    scheduler: str = ""
    exact: bool = True

    def notice(self, ran: str) -> str | None:
        """What the client is told when its sampler could not run as named (`ran`: what did)."""
        if self.exact:
            return None
        ran = ran or "the model's default"
        if self.scheduler:
            return f"Sampler {self.requested!r} is not available for this model; {ran}, the closest, ran instead."
        return f"Sampler {self.requested!r} is not available for this model; its default, {ran}, ran instead."


def pick_sampler(
    name: str | None, scheduler: str | None, offered: tuple[str, ...], strict: bool = True
) -> SamplerChoice:
    """The model's scheduler for an A1111 sampler name (any case; scheduler "Karras" adds " Karras").

    A name the model offers runs as it is; another A1111 name runs as the closest scheduler the model
    offers, or as its default when none is close. An unknown name is an InvalidParams listing the offered
    ones (with strict=False: the default, as for the deprecated sampler_index).
    """
    if not name or name.lower() in ("automatic", "default"):
        return SamplerChoice()
    wanted = [name]
    if scheduler and scheduler.lower() == "karras" and not name.lower().endswith("karras"):
        wanted.insert(0, f"{name} Karras")
    by_lower = {s.lower(): s for s in offered}
    for candidate in wanted:
        if candidate.lower() in by_lower:
            return SamplerChoice(name, by_lower[candidate.lower()])
    for candidate in wanted:
        if candidate.lower() in A1111_SAMPLERS:
            close = (by_lower[c.lower()] for c in A1111_SAMPLERS[candidate.lower()] if c.lower() in by_lower)
            return SamplerChoice(name, next(close, ""), exact=False)
    if not strict:
        return SamplerChoice()
    raise InvalidParams(
        f"Sampler {name!r} is not available for this model; choose one of {', '.join(offered)}."
    )


def _submit_txt2img(state: ApiState, request: Txt2ImgRequest) -> tuple[JobHandle, SamplerChoice]:
    model_id = _model_override(state, request)
    params, sampler = _common_params(state, request, model_id)
    params |= {"prompt": request.prompt} | _size(request)
    state.interrupted = False
    return state.submit("t2i", model_id, params), sampler


def _submit_img2img(state: ApiState, request: Img2ImgRequest) -> tuple[JobHandle, SamplerChoice]:
    if not request.init_images:
        raise InvalidParams("init_images is empty: send at least one base64 image.")
    model_id = _model_override(state, request)
    params, sampler = _common_params(state, request, model_id)
    params |= {"prompt": request.prompt, "init_image": request.init_images[0]}
    if request.mask:
        task = "inpaint"
        params |= {"mask": request.mask, "invert_mask": bool(request.inpainting_mask_invert)}
        if request.mask_blur is not None:
            params["mask_blur"] = request.mask_blur
    else:
        task = "i2i"
        params |= _size(request)
        if request.denoising_strength is not None:
            params["strength"] = request.denoising_strength
    state.interrupted = False
    return state.submit(task, model_id, params), sampler


def _timestamp(handle: JobHandle) -> str:
    created = handle.results[0].meta.get("created") if handle.results else None
    when = _dt.datetime.fromisoformat(created) if created else _dt.datetime.now()
    return when.strftime("%Y%m%d%H%M%S")


def _b64(path) -> str:
    with open(path, "rb") as fh:
        return base64.b64encode(fh.read()).decode("ascii")


def _response(
    state: ApiState, handle: JobHandle, request: _Request, echo: dict[str, Any], sampler: SamplerChoice
) -> dict[str, Any]:
    """The A1111 answer for a finished job: a failed one raises its error, an interrupted one answers
    with the images saved so far; `sampler_name` in info is the scheduler that ran."""
    if handle.state == FAILED and handle.error is not None:
        raise handle.error
    params = handle.params
    results = handle.results
    infotexts = []
    for result in results:
        with Image.open(result.path) as image:
            infotexts.append((getattr(image, "text", None) or {}).get("parameters", ""))
    seeds = [r.seed for r in results] or handle.seeds()
    count = len(seeds)
    prompt = getattr(params, "prompt", "")
    negative = getattr(params, "negative_prompt", "")
    # Each image's own prompts: a template's expansion (see kubin.prompts), else the request's.
    indices = [r.index for r in results] or range(count)
    all_prompts = [handle.expanded(i).get("prompt", prompt) for i in indices]
    all_negative = [handle.expanded(i).get("negative_prompt", negative) for i in indices]
    labels = {"prompt": "Template", "negative_prompt": "Negative Template"}  # as A1111's Dynamic Prompts
    templates = {labels[k]: v for k, v in handle.prompts.templates.items() if k in labels}
    ignored = sorted(n for n in request.model_fields_set if n not in MAPPED)
    ran = results[0].meta.get("scheduler") if results else getattr(params, "scheduler", "")
    sampler_notice = sampler.notice(ran)
    info = {
        "prompt": prompt,
        "all_prompts": all_prompts,
        "negative_prompt": negative,
        "all_negative_prompts": all_negative,
        "seed": handle.seed,
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * count,
        "subseed_strength": 0,
        "width": results[0].width if results else getattr(params, "width", 0),
        "height": results[0].height if results else getattr(params, "height", 0),
        "sampler_name": ran,
        "cfg_scale": params.guidance_scale,
        "steps": params.steps,
        "batch_size": params.batch_size,
        "n_iter": params.batch_count,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": handle.job.model_id,
        "sd_model_hash": None,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": getattr(params, "strength", None),
        "extra_generation_params": templates,
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": request.styles or [],
        "job_timestamp": _timestamp(handle),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": handle.job.task == "inpaint",
        "version": f"kubin {__version__}",
        # Kubin's additions
        "task": handle.job.task,
        "job_id": handle.id,
        "files": [str(r.path) for r in results],
        "notices": ([sampler_notice] if sampler_notice else []) + list(handle.notices),
        "ignored_fields": ignored,
        "interrupted": handle.state == CANCELLED,
    }
    images = [_b64(r.path) for r in results] if request.send_images else []
    return {"images": images, "parameters": echo, "info": json.dumps(info, ensure_ascii=False)}


_PAIR_RE = re.compile(r'\s*([\w ./-]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_infotext(text: str) -> dict[str, Any]:
    """An A1111 `parameters` text as a dict: Prompt, Negative prompt, then each "Key: value" pair
    (quoted values unquoted; "Size" also as Size-1 and Size-2, as A1111 does)."""
    lines = text.strip().split("\n")
    last = lines[-1] if len(_PAIR_RE.findall(lines[-1])) >= 3 else ""
    if last:
        lines = lines[:-1]
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line.removeprefix("Negative prompt:").strip()
        (negative if in_negative else prompt).append(line)
    out: dict[str, Any] = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PAIR_RE.findall(last):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key.strip()] = value
        size = re.fullmatch(r"(\d+)x(\d+)", value) if key.strip() == "Size" else None
        if size:
            out["Size-1"], out["Size-2"] = size.group(1), size.group(2)
    return out
