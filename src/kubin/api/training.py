"""Training runs through Kubin's API (/kubin/api/v1/training): start (or resume) a run, watch it (its
state, loss history and samples, or a stream of its events as they come) and cancel it. The body's
fields are TrainingOptions', so the API, the CLI and the Training tab take the same options.

`data` is a folder on the server: training reads a folder of pictures (or clips) where Kubin runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from kubin.api.jobs import ApiState
from kubin.errors import InvalidParams
from kubin.training.options import option_fields
from kubin.training.runs import TrainingRun

PREFIX = "/kubin/api/v1/training"
_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list[str]": list[str]}


def options_body_model() -> type[BaseModel]:
    """The body of POST /training: every training option, optional (missing = its default)."""
    fields: dict[str, Any] = {}
    for f in option_fields():
        meta = f.metadata
        text = meta["help"] + (f"; {meta['min']}..{meta['max']}" if meta["min"] is not None else "")
        text += f"; one of {', '.join(meta['choices'])}" if meta["choices"] else ""
        fields[f.name] = (_TYPES[str(f.type)] | None, Field(None, description=text))
    fields["resume"] = (bool, Field(False, description="go on from the last checkpoint of `output`"))
    return create_model("TrainingRequest", __config__=ConfigDict(extra="forbid"), **fields)


async def wait_for_run(run: TrainingRun, timeout: float) -> None:
    """Wait until the run ends (or timeout seconds), woken by its end, holding no thread."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    unsubscribe = run.subscribe(lambda event: event is None and loop.call_soon_threadsafe(ended.set))
    try:
        await asyncio.wait_for(ended.wait(), timeout)
    except TimeoutError:
        pass
    finally:
        unsubscribe()


def build_router(state: ApiState, route_class) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["Training"], route_class=route_class)
    body_model = options_body_model()

    def trainings():
        if state.engine.trainings is None:
            raise InvalidParams("Training is not set up in this Kubin.")
        return state.engine.trainings

    def find(run_id: int) -> TrainingRun:
        return trainings().get(run_id)

    async def start(body):
        values = body.model_dump(exclude_none=True)
        resume = values.pop("resume", False)
        run = await run_in_threadpool(trainings().start, values, resume, "api")  # checks the pictures
        return JSONResponse(run.as_json(), status_code=202)

    start.__annotations__["body"] = body_model
    router.add_api_route(
        "", start, methods=["POST"], status_code=202, summary="Start or resume a training run",
        description="Checks the options, the model's part and the pictures at once (a mistake answers 400), "
        "then queues the run behind the jobs already queued and answers 202 with its id.",
    )  # fmt: skip

    @router.get("")
    def runs() -> list[dict[str, Any]]:
        """Every run since Kubin started, with its state and loss history."""
        return [run.as_json() for run in trainings().list()]

    @router.get("/resumable")
    def resumable() -> list[str]:
        """The adapter names whose runs left a checkpoint to resume from."""
        return trainings().resumable()

    @router.get("/{run_id}")
    async def watch(
        run_id: int, wait: float = Query(0, ge=0, le=600, description="seconds to wait for the end")
    ):
        """A run's state, step, loss history, samples and, when done, the adapter's `path`."""
        run = find(run_id)
        await wait_for_run(run, wait)
        return run.as_json()

    @router.get("/{run_id}/events")
    async def events(run_id: int) -> StreamingResponse:
        """The run's events as lines of JSON (notice, step, sample, checkpoint), from the first, as they
        come; the last line is the run's final state."""
        run = find(run_id)
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        unsubscribe = run.subscribe(lambda event: loop.call_soon_threadsafe(inbox.put_nowait, event))

        async def lines():
            try:
                while (event := await inbox.get()) is not None:
                    yield json.dumps(dataclasses.asdict(event)) + "\n"
                yield json.dumps({"kind": "finished", **run.as_json()}) + "\n"
            finally:
                unsubscribe()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @router.post("/{run_id}/cancel")
    async def cancel(run_id: int) -> dict[str, Any]:
        """Stop the run at its next step, with a checkpoint there (resume goes on from it)."""
        run = find(run_id)
        run.cancel()
        await wait_for_run(run, 60)
        return run.as_json()

    @router.get("/{run_id}/samples/{index}", response_class=FileResponse)
    def sample(run_id: int, index: int) -> FileResponse:
        """Sample image `index` of the run (in the order of `samples`)."""
        run = find(run_id)
        if not 0 <= index < len(run.samples):
            raise InvalidParams(f"Run {run_id} has {len(run.samples)} sample image(s).")
        return FileResponse(run.samples[index][1])

    return router
