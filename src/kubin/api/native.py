"""Kubin's own API (/kubin/api/v1/...): every task with exactly the engine's parameters, jobs that a
client can follow, wait for and cancel, and the saved outputs.

One POST route per task in TASK_PARAMS, its body built from the task's field specs, so a new task
appears here (and in /docs) without touching this file. Image fields take a base64 image, a data:
URL, or the `url` of an earlier output; never a path on the server.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from kubin.api.jobs import ApiState, wait_for
from kubin.api.security import safe_output_path
from kubin.cluster.status import engine_status
from kubin.engine import FAILED, JobHandle
from kubin.errors import KubinError
from kubin.models.registry import list_models
from kubin.params import TASK_LABELS, TASK_PARAMS, FieldSpec

PREFIX = "/kubin/api/v1"


class JobView(BaseModel):
    id: int
    task: str
    model: str
    state: str = Field(description="queued, running, done, cancelled or failed")
    position: int = Field(description="1 + jobs ahead while queued; 0 once running or finished")
    step: int
    total_steps: int
    eta_seconds: float | None = Field(
        description="seconds left for the whole job; null until it can be measured"
    )
    stage: str | None = Field(None, description='what the job does now, e.g. "Prior 20/25", "Decoder 3/50"')
    seed: int
    seeds: list[int]
    notices: list[str]
    results: list[dict[str, Any]] = Field(description="saved outputs: path, url, seed, width, height, ...")
    error: str | None


def _field_type(fs: FieldSpec) -> Any:
    if fs.kind == "lora":  # "name:weight" or {"name": ..., "weight": ...}
        return list[str | dict[str, Any]]
    if fs.type is list:
        return list[str] if fs.kind == "image" else list[fs.item_type or str]
    return str if fs.kind == "image" else fs.type


def _describe(fs: FieldSpec) -> str:
    parts = [fs.label]
    if fs.minimum is not None or fs.maximum is not None:
        parts.append(f"{fs.minimum}..{fs.maximum}")
    if fs.kind == "image":
        parts.append("base64 image, data: URL or an output url")
    if fs.choices:
        parts.append(" or ".join(fs.choices))
    if fs.help:
        parts.append(fs.help)
    return "; ".join(str(p) for p in parts)


def task_body_model(task: str) -> type[BaseModel]:
    """The request body of a task: `model` plus each parameter, all optional (missing = defaults)."""
    cls = TASK_PARAMS[task]
    fields: dict[str, Any] = {
        "model": (str | None, Field(None, description="model id; default: the API's current model"))
    }
    for name, fs in cls.field_specs().items():
        fields[name] = (_field_type(fs) | None, Field(None, description=_describe(fs)))
    return create_model(
        f"{cls.__name__}Request", __config__=ConfigDict(extra="forbid"), __doc__=cls.__doc__, **fields
    )


def prompts_file_model(task: str) -> type[BaseModel]:
    """The request body of a prompts file: its text, its format, and the parameters every line starts from."""
    cls = TASK_PARAMS[task]
    return create_model(
        f"{cls.__name__}PromptsFileRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__="A prompts file: one job per line, each line's values over `params`.",
        model=(str | None, Field(None, description="model id; default: the API's current model")),
        text=(str, Field(description="the file's content")),
        format=(
            Literal["text", "csv"],
            Field(
                "text",
                description="text: one prompt per line (blank and # lines skipped); csv: the "
                "first row names parameters, each later row sets them for one job",
            ),
        ),  # fmt: skip
        params=(
            task_body_model(task) | None,
            Field(None, description="parameters of every line, under the line's own (no model here)"),
        ),
    )


class GridAxis(BaseModel):
    name: str = Field(
        description='a parameter (steps, seed, guidance_scale, ...), "scheduler", "size", "model" or "prompt S/R"'
    )
    values: str = Field(
        description='A1111-style: "20,30,40", "1-5", "1-10 (+2)", "0.5-1 [3]", "512x512,768x512"'
    )


def grid_model(task: str) -> type[BaseModel]:
    """The request body of an X/Y/Z grid: the parameters every cell starts from and up to three axes."""
    cls = TASK_PARAMS[task]
    return create_model(
        f"{cls.__name__}GridRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__="An X/Y/Z grid: one job per combination of the axes' values, over `params`.",
        model=(str | None, Field(None, description="model id; default: the API's current model")),
        params=(
            task_body_model(task) | None,
            Field(None, description="parameters of every cell (no model here)"),
        ),
        axes=(list[GridAxis], Field(description="X, then Y, then Z (one to three)")),
    )


class GridAnswer(BaseModel):
    jobs: list[JobView] = Field(description="one job per cell, X fastest, then Y, then Z")
    cells: list[str | None] = Field(description="each cell's image url (null for a cell not made)")
    grid: str | None = Field(description="the grid image's url; null when no cell was made")
    plan: dict[str, Any] = Field(
        description="task, model, axes and base parameters, as the grid's PNG keeps them"
    )


def folder_model(task: str) -> type[BaseModel]:
    """The request body of a folder batch: the server folder of images (and of masks) and the parameters
    every image's job starts from."""
    cls = TASK_PARAMS[task]
    return create_model(
        f"{cls.__name__}FolderRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__="A folder batch: one job per image of `input_dir`, each image as the task's input image.",
        model=(str | None, Field(None, description="model id; default: the API's current model")),
        input_dir=(str, Field(description="a folder on the server (its images, not its subfolders)")),
        mask_dir=(
            str | None,
            Field(None, description="inpaint: the folder of masks, each named as its image"),
        ),
        params=(
            task_body_model(task) | None,
            Field(
                None, description="parameters of every image's job (no model; the input image is the file)"
            ),
        ),
    )


class SkippedFile(BaseModel):
    file: str = Field(description="the file's name in the input folder")
    why: str


class FolderJobs(BaseModel):
    jobs: list[JobView] = Field(description="one job per image, in the folder's name order")
    sources: list[str] = Field(description="each job's image file")
    skipped: list[SkippedFile] = Field(description="files not run: not images, damaged, or without a mask")
    output_dir: str = Field(description="the new folder the outputs go to, each named as its image")


class PromptsFileJobs(BaseModel):
    jobs: list[JobView] = Field(description="one job per line of the file, in order")
    lines: list[int] = Field(description="the file's line number of each job")


def build_router(state: ApiState, route_class) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["Kubin"], route_class=route_class)

    @router.get("/models")
    def models() -> list[dict[str, Any]]:
        """Every model: its tasks, schedulers, recommended defaults, features and limits."""
        return [
            {
                "id": spec.id,
                "title": spec.title,
                "family": spec.family,
                "implementation": spec.implementation,
                "tasks": list(spec.tasks),
                "schedulers": list(spec.schedulers),
                "defaults": spec.defaults,
                "features": list(spec.features),
                "limits": dict(getattr(spec, "limits", {}) or {}),
                "tiny": spec.tiny,
                "current": spec.id == state.model_id,
            }
            for spec in list_models()
        ]

    @router.get("/loras")
    def loras(refresh: bool = False) -> list[dict[str, Any]]:
        """The LoRA adapters in the LoRA folder: name, path, the family and part each fits (by its keys),
        rank, trigger words; a file that fits no family says why. `refresh=true` scans the folder again."""
        library = state.engine.loras
        return [f.as_json() for f in (library.refresh() if refresh else library.list())]

    @router.get("/tasks")
    def tasks() -> dict[str, Any]:
        """Every task and its parameters: type, default, range, label, help; image fields say so."""
        return {task: _task_info(task) for task in TASK_PARAMS}

    for task in TASK_PARAMS:
        _add_task_route(router, state, task)

    @router.get("/cluster")
    def cluster() -> dict[str, Any]:
        """The Ray Serve cluster that runs the jobs (with --cluster): whether it answers, its replicas
        (device, loaded models, the job each runs) and the queue here. 503 with the reason when it is gone,
        404 when this Kubin runs jobs in its own process."""
        status = engine_status(state.engine)
        if status is None:
            raise HTTPException(
                status_code=404, detail="This Kubin runs jobs in its own process (no --cluster)."
            )
        if not status["available"]:
            return JSONResponse({"detail": status["problem"]} | status, status_code=503)
        return status

    @router.get("/jobs", response_model=list[JobView])
    def jobs() -> list[dict[str, Any]]:
        """The queue: the running job, then the queued ones in the order they will run (UI jobs too)."""
        return [state.job_json(h) for h in state.engine.pending()]

    @router.get("/jobs/{job_id}", response_model=JobView)
    async def job(
        job_id: int, wait: float = Query(0, ge=0, le=600, description="seconds to wait for the end")
    ):
        """A job's state, position and results; with wait, answers as soon as it ends (or after wait s)."""
        handle = _find(state, job_id)
        await wait_for(handle, wait)
        return state.job_json(handle)

    @router.post("/jobs/{job_id}/cancel", response_model=JobView)
    async def cancel(job_id: int) -> dict[str, Any]:
        """Drop a queued job, or stop a running one within a step (finished outputs are kept)."""
        handle = _find(state, job_id)
        state.engine.cancel(handle)
        await wait_for(handle, 30)
        return state.job_json(handle)

    @router.delete("/jobs/{job_id}", response_model=JobView)
    async def delete(job_id: int) -> dict[str, Any]:
        """The same as POST /jobs/{id}/cancel."""
        return await cancel(job_id)

    @router.get("/outputs/{path:path}", response_class=FileResponse)
    def output(path: str) -> FileResponse:
        """A saved output file, by the path relative to the output folder (as in a result's url)."""
        return FileResponse(safe_output_path(state.output_dir, path))

    return router


def _task_info(task: str) -> dict[str, Any]:
    specs = TASK_PARAMS[task].field_specs()
    return {
        "label": TASK_LABELS.get(task, task),
        "description": (TASK_PARAMS[task].__doc__ or "").strip(),
        "params": {
            name: {
                "type": "list" if fs.type is list else fs.type.__name__,
                "item_type": fs.item_type.__name__ if fs.item_type else None,
                "default": fs.default,
                "label": fs.label,
                "minimum": fs.minimum,
                "maximum": fs.maximum,
                "step": fs.step,
                "help": fs.help,
                "kind": fs.kind,
                "choices": list(fs.choices) or None,
            }
            for name, fs in specs.items()
        },
    }


def _add_task_route(router: APIRouter, state: ApiState, task: str) -> None:
    body_model = task_body_model(task)

    async def run(
        body,
        request: Request,
        wait: bool = Query(True, description="wait for the job to end; false answers at once (202)"),  # noqa: B008
    ):
        values = body.model_dump(exclude_none=True)
        model_id = values.pop("model", None)
        # reads the input images
        handle = await run_in_threadpool(state.submit, task, model_id, values, client_owner(request))
        if not wait:
            return JSONResponse(state.job_json(handle), status_code=202)
        # Waiting holds no worker thread; a client that disconnects loses nothing: the job finishes
        # and saves its outputs.
        await wait_for(handle)
        if handle.state == FAILED and handle.error is not None:
            raise handle.error
        return state.job_json(handle)

    run.__annotations__["body"] = body_model  # a class made at run time: no string annotation for it
    router.add_api_route(
        f"/tasks/{task}",
        run,
        methods=["POST"],
        response_model=JobView,
        summary=TASK_LABELS.get(task, task),
        description=(TASK_PARAMS[task].__doc__ or "").strip()
        + "\n\nAnswers when the job ends (cancelled jobs too, with what was saved); with ?wait=false at once.",
        name=f"kubin_{task}",
    )
    if "prompt" in TASK_PARAMS[task].field_specs():
        _add_prompts_file_route(router, state, task)
    if TASK_PARAMS[task].output_kind == "image":
        _add_grid_route(router, state, task)
    if "init_image" in TASK_PARAMS[task].field_specs():
        _add_folder_route(router, state, task)
    router.add_api_route(
        f"/tasks/{task}",
        lambda: _task_info(task),
        methods=["GET"],
        summary=f"{TASK_LABELS.get(task, task)}: parameters",
        name=f"kubin_{task}_params",
    )


def _base_params(body) -> dict[str, Any]:
    """A prompts-file, grid or folder body's `params`: the values every job starts from, less the model (the
    body's own `model` names it)."""
    base = body.params.model_dump(exclude_none=True) if body.params else {}
    base.pop("model", None)
    return base


def _add_prompts_file_route(router: APIRouter, state: ApiState, task: str) -> None:
    body_model = prompts_file_model(task)

    async def run(
        body,
        request: Request,
        wait: bool = Query(True, description="wait for every job to end; false answers at once (202)"),  # noqa: B008
    ):
        from kubin.prompts import parse_prompts

        base = _base_params(body)
        lines = parse_prompts(body.text, task, as_csv=body.format == "csv", base=base)
        handles: list[JobHandle] = []
        for line in lines:
            try:
                handle = await run_in_threadpool(
                    state.submit, task, body.model, base | line.params, client_owner(request)
                )
            except KubinError as exc:  # nothing of a file half queued
                for queued in handles:
                    state.engine.cancel(queued)
                raise type(exc)(f"Line {line.line}: {exc}") from None
            handles.append(handle)
        return await _jobs_answer(state, handles, {"lines": [line.line for line in lines]}, wait)

    run.__annotations__["body"] = body_model
    router.add_api_route(
        f"/tasks/{task}/prompts-file",
        run,
        methods=["POST"],
        response_model=PromptsFileJobs,
        summary=f"{TASK_LABELS.get(task, task)}: prompts file",
        description="One job per line of a prompts file (text or CSV), every line checked before any job is "
        "queued. Answers when every job has ended; with ?wait=false at once.",
        name=f"kubin_{task}_prompts_file",
    )


def _add_folder_route(router: APIRouter, state: ApiState, task: str) -> None:
    body_model = folder_model(task)

    async def run(
        body,
        request: Request,
        wait: bool = Query(True, description="wait for every job to end; false answers at once (202)"),  # noqa: B008
    ):
        from kubin.batch import queue_folder

        base = _base_params(body)
        for what, folder in (("input_dir", body.input_dir), ("mask_dir", body.mask_dir)):
            if folder:
                state.check_folder(folder, what)
        plan, queued = await run_in_threadpool(
            queue_folder, state.engine, task, body.model or state.model_id, base, body.input_dir, body.mask_dir,
            client_owner(request),
        )  # fmt: skip
        handles = [state.keep(handle) for _, handle in queued]
        answer = {
            "sources": [str(item.source) for item, _ in queued],
            "skipped": [{"file": name, "why": why} for name, why in plan.skipped],
            "output_dir": str(plan.output),
        }
        return await _jobs_answer(state, handles, answer, wait)

    run.__annotations__["body"] = body_model
    router.add_api_route(
        f"/tasks/{task}/folder",
        run,
        methods=["POST"],
        response_model=FolderJobs,
        summary=f"{TASK_LABELS.get(task, task)}: every image of a folder",
        description="One job per image of a server folder, the outputs keeping the images' names in a new "
        "folder; files that are not readable images are skipped and listed. A server reachable from other "
        "machines (--listen, --share) reads only folders under `api_folder_roots` of its config. Answers when "
        "every job has ended; with ?wait=false at once.",
        name=f"kubin_{task}_folder",
    )


def _add_grid_route(router: APIRouter, state: ApiState, task: str) -> None:
    body_model = grid_model(task)

    async def run(body):
        from kubin.grid import engine_plan, save_grid, start_grid

        base = _base_params(body)
        model_id = body.model or state.model_id
        plan = engine_plan(state.engine, task, model_id, base, [(a.name, a.values) for a in body.axes])
        grid = await run_in_threadpool(
            start_grid, state.engine, plan, "api", lambda cell: state.submit(task, cell.model_id, cell.params)
        )
        for handle in grid.handles:
            await wait_for(handle)
        path = await run_in_threadpool(save_grid, grid, state.output_dir)
        return {
            "jobs": [state.job_json(h) for h in grid.handles],
            "cells": [state.output_url(p) if p else None for p in grid.cell_paths()],
            "grid": state.output_url(path) if path else None,
            "plan": plan.as_json(),
        }

    run.__annotations__["body"] = body_model
    router.add_api_route(
        f"/tasks/{task}/grid",
        run,
        methods=["POST"],
        response_model=GridAnswer,
        summary=f"{TASK_LABELS.get(task, task)}: X/Y/Z grid",
        description="One job per combination of up to three axes' values (every value checked before any job "
        "is queued), then one labelled grid image holding the plan in its metadata. Answers when every "
        "cell has ended; cancelling the cells' jobs saves a grid of the cells made (none if none was).",
        name=f"kubin_{task}_grid",
    )


async def _jobs_answer(state: ApiState, handles: list[JobHandle], answer: dict[str, Any], wait: bool):
    """The answer of a route that queued several jobs, with each job's view: at once (202), or once every
    job has ended."""
    if not wait:
        return JSONResponse(answer | {"jobs": [state.job_json(h) for h in handles]}, status_code=202)
    for handle in handles:
        await wait_for(handle)
    return answer | {"jobs": [state.job_json(h) for h in handles]}


def client_owner(request: Request) -> str:
    """Who a job is for the history: "cli" when `kubin generate --server` sent it, else "api"."""
    return "cli" if request.headers.get("x-kubin-client", "").lower() == "cli" else "api"


def _find(state: ApiState, job_id: int) -> JobHandle:
    handle = state.job(job_id)
    if handle is None:
        raise HTTPException(status_code=404, detail=f"No job {job_id} (finished jobs are kept for a while).")
    return handle
