"""The job history over the REST API (/kubin/api/v1/history): every job the server queued (from the UI,
this API or the command line), paged and filtered, with its outputs' URLs; a job offered again after a
restart, or any earlier one, can be queued again. A thin layer over kubin.history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from kubin.api.jobs import ApiState
from kubin.engine import Job, JobHandle
from kubin.history import History, HistoryEntry

PREFIX = "/kubin/api/v1"


def entry_json(state: ApiState, entry: HistoryEntry) -> dict[str, Any]:
    """An entry with its outputs' URLs (null for a file deleted since) and, while it runs, its progress."""
    out = entry.as_json()
    out["urls"] = [state.output_url(f) if f.is_file() else None for f in entry.files]
    out["thumbnail_urls"] = [state.output_url(t) if t.is_file() else None for t in entry.thumbs]
    live = live_handle(state.engine, entry)
    out["progress"] = (
        {
            "step": live.step,
            "total_steps": live.total_steps,
            "stage": str(live.stage) if live.stage is not None else None,
        }  # fmt: skip
        if live is not None
        else None
    )
    return out


def live_handle(engine, entry: HistoryEntry) -> JobHandle | None:
    """The engine's handle of an entry still queued or running in this server run."""
    if entry.state not in ("queued", "running"):
        return None
    return next((h for h in engine.pending() if getattr(h, "history_id", None) == entry.id), None)


def requeue(engine, history: History, entry: HistoryEntry, owner: str) -> JobHandle:
    """Queue an entry's job again with the parameters (and seed) it had; an offered entry is no longer."""
    handle = engine.submit(Job(entry.task, entry.model, dict(entry.params), owner=owner))
    history.mark_requeued(entry.id)
    return handle


def build_router(state: ApiState, route_class) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["Kubin"], route_class=route_class)

    def history() -> History:
        if state.engine.history is None:
            raise HTTPException(status_code=404, detail="This server keeps no job history.")
        return state.engine.history

    @router.get("/history")
    def list_history(
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0),
        state_: str = Query(
            "",
            alias="state",
            description="queued, running, done, failed, cancelled, "
            "interrupted, or offered (queued when the server stopped)",
        ),  # fmt: skip
        q: str = Query("", description="text in the prompt, model, task or owner"),
    ) -> dict[str, Any]:
        """Every job the server queued, newest first, paged: its state, owner, model, prompt, parameters,
        outputs (a deleted file's URL is null and counted in missing_outputs) and, while it runs, progress."""
        entries, total = history().query(limit, offset, state_, q)
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [entry_json(state, e) for e in entries],
        }

    @router.post("/history/{entry_id}/requeue")
    async def requeue_entry(entry_id: int) -> dict[str, Any]:
        """Queue a listed job again with its parameters and seed; answers with the new job (see /jobs/{id})."""
        found = history().entry(entry_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"No history entry {entry_id}.")
        handle = await run_in_threadpool(requeue, state.engine, history(), found, "api")
        return state.job_json(state.keep(handle))

    @router.post("/history/rebuild")
    async def rebuild() -> dict[str, Any]:
        """Index the output files that no entry lists, from the metadata saved in them."""
        return {"added": await run_in_threadpool(history().rebuild)}

    return router
