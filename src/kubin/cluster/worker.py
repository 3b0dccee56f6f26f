"""The Ray Serve deployment that runs generation jobs: each replica is an engine worker with its own models.

Serve's model multiplexing keeps an LRU of loaded models per replica (`max_models_per_replica`) and routes
a job to a replica that already holds its model. A job's events stream back as they happen (which replica
took it, progress per step, each call's outputs); the front end saves the outputs. When the caller cancels
the stream, Serve cancels the request here and the running step is the last. Each replica reports its
state to a small status board actor, for `kubin cluster status`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray import serve

from kubin.cluster import NAMESPACE, ClusterJob
from kubin.errors import JobCancelled

log = logging.getLogger(__name__)
BOARD = "kubin-cluster-board"
REPORT_TTL_S = 10.0  # a replica that has not reported for this long is gone from the status


@ray.remote(num_cpus=0)
class StatusBoard:
    """Each replica's latest report (its device, loaded models, the job it runs), and the options the
    worker deployment was last deployed with."""

    def __init__(self):
        self.reports: dict[str, dict[str, Any]] = {}
        self.deployed: dict[str, Any] | None = None

    def report(self, replica: str, info: dict[str, Any]) -> None:
        self.reports[replica] = info | {"reported": time.time()}

    def forget(self, replica: str) -> None:
        self.reports.pop(replica, None)

    def replicas(self) -> list[dict[str, Any]]:
        now = time.time()
        return [r for r in self.reports.values() if now - r["reported"] < REPORT_TTL_S]

    def set_deployed(self, options: dict[str, Any]) -> None:
        self.deployed = options

    def get_deployed(self) -> dict[str, Any] | None:
        return self.deployed


class _LoadedModel:
    """A model in a replica's LRU: its own ModelManager, so that evicting it frees exactly its memory."""

    def __init__(self, manager, model, notices: list[str]):
        self.manager, self.model, self.notices = manager, model, notices

    def __del__(self):  # Serve calls it when the LRU evicts the model
        self.manager.unload()


@serve.deployment(max_ongoing_requests=1, health_check_period_s=2, graceful_shutdown_timeout_s=5)
class KubinWorker:
    def __init__(self, device: str, dtype: str, sources: dict, memory: dict, max_models: int):
        self.device, self.dtype, self.sources, self.memory = device, dtype, sources, memory
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.loads = 0  # models loaded by this replica so far
        self.jobs = 0
        self.busy: str | None = None  # the job key running now
        self.steps = 0  # steps of the running (or last) job
        self._board = None

        async def load(model_id: str) -> _LoadedModel:
            return await asyncio.to_thread(self._load, model_id)

        # An instance attribute, so the LRU's size comes from the config (Serve detects it at start).
        self._loader = load
        self.model = serve.multiplexed(max_num_models_per_replica=max_models)(load)
        self._report()

    def _load(self, model_id: str) -> _LoadedModel:
        from kubin.models.manager import ModelManager
        from kubin.runtime.memory import MemoryOptions

        manager = ModelManager(self.device, self.dtype, self.sources, MemoryOptions.from_dict(self.memory))
        model = manager.get(model_id)
        self.loads += 1
        return _LoadedModel(manager, model, manager.take_load_notices() or [])

    def _device(self) -> str:
        from kubin.runtime.device import resolve_placement
        from kubin.runtime.memory import MemoryOptions

        return resolve_placement(self.device, self.dtype, MemoryOptions.from_dict(self.memory)).device

    def _report(self) -> None:
        """Tell the status board how this replica stands (fire and forget)."""
        try:
            if self._board is None:
                self._board = ray.get_actor(BOARD, namespace=NAMESPACE)
            self._board.report.remote(self.replica, self.info())
        except Exception:  # no board (deployed by hand): nothing to report to
            self._board = None

    def info(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "device": self._device(),
            "models": self.resident(),
            "loads": self.loads,
            "jobs": self.jobs,
            "busy": self.busy,
            "steps": self.steps,
        }

    def resident(self) -> list[str]:
        """The model ids in this replica's LRU, least recently used first."""
        wrapper = getattr(self._loader, "__serve_multiplex_wrapper", None)  # Serve's, made on first load
        return list(wrapper.models) if wrapper is not None else []

    def adapters(self, job: ClusterJob) -> list:
        """The job's adapters (kubin.models.lora.ActiveLora) with their files on this node: a shared folder's
        path as it is, or the bytes the driver put in the object store, written once per file hash into this
        node's cache."""
        from kubin.errors import InvalidParams
        from kubin.models.lora import SUFFIX

        adapters = []
        for item in job.loras:
            file = item.lora.file
            if item.shared:
                path = Path(file.path)
                if not path.is_file():
                    raise InvalidParams(
                        f"The LoRA file {path} is not on the node of replica {self.replica}: with "
                        "cluster.shared_loras the LoRA folder must be at the same path on every node."
                    )
            else:
                path = lora_cache() / f"{item.lora.hash}{SUFFIX}"
                if not path.is_file():  # written under a temp name: replicas of one node may race
                    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
                    partial.write_bytes(ray.get(item.data))
                    os.replace(partial, path)
            adapters.append(replace(item.lora, file=replace(file, path=path)))
        return adapters

    def check_health(self) -> None:  # Serve calls it every health_check_period_s: a heartbeat to the board
        self._report()

    async def run(self, job: ClusterJob):
        """Run `job`'s calls, yielding its events: {"kind": "replica", ...} first, then "step" per step and
        "outputs" per call; a failure is yielded as {"kind": "failed", "error": exception}."""
        self.busy, self.steps, self.jobs = job.key, 0, self.jobs + 1
        before = self.loads
        try:
            loaded = await self.model(serve.get_multiplexed_model_id())
        except Exception as exc:
            self.busy = None
            yield {"kind": "failed", "error": _portable(exc)}
            return
        self._report()
        notices = loaded.notices if self.loads > before else []
        yield {"kind": "replica", "replica": self.replica, "pid": os.getpid(), "loaded": self.loads > before,
               "notices": notices, "device": self._device()}  # fmt: skip

        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        done = object()

        def put(item) -> None:
            loop.call_soon_threadsafe(inbox.put_nowait, item)

        def work() -> None:
            from kubin.engine import runtime_metadata

            model = loaded.model
            set_loras = getattr(model, "set_loras", None)

            def on_step(phase: str, step: int) -> None:
                self.steps += 1
                put({"kind": "step", "phase": phase})
                if cancel.is_set():
                    raise JobCancelled("cancelled")

            try:
                if set_loras is not None:  # every job, as in the local engine: none switches them off
                    set_loras(self.adapters(job))
                for call in job.calls:
                    if cancel.is_set():
                        raise JobCancelled("cancelled")
                    outputs, scheduler = model.generate(
                        job.task, call.params, call.prepared, call.seeds, on_step
                    )
                    put({"kind": "outputs", "call": call.index, "outputs": list(outputs), "scheduler": scheduler,
                         "runtime": runtime_metadata(model.placement)})  # fmt: skip
            except BaseException as exc:
                put({"kind": "failed", "error": _portable(exc)})
            put(done)

        running = loop.run_in_executor(None, work)
        try:
            while True:
                item = await inbox.get()
                if item is done:
                    break
                yield item
        finally:
            # Cancelled by the caller (or the stream ended): the running step is the last; this replica
            # takes no other job until it has stopped.
            cancel.set()
            await asyncio.shield(running)
            self.busy = None
            self._report()


def lora_cache() -> Path:
    """This node's cache of LoRA files sent with jobs: in the Ray session's folder, so that it goes with it."""
    try:
        session = Path(ray._private.worker._global_node.get_session_dir_path())  # no public API for it
    except AttributeError:
        session = Path(tempfile.gettempdir())
    folder = session / "kubin-lora"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _portable(exc: BaseException) -> BaseException:
    """An exception that unpickles on the front end: Kubin's own and the standard ones as they are, any
    other as a RuntimeError that keeps its type's name and message."""
    from kubin.errors import KubinError

    if isinstance(exc, KubinError) or type(exc).__module__ == "builtins":
        exc.__traceback__ = None
        return exc
    log.exception("A job failed on replica")
    return RuntimeError(f"{type(exc).__name__}: {exc}")


def app(args: dict[str, Any]):
    """The worker application for Serve's own config (`import_path: kubin.cluster.worker:app`, as in a KubeRay
    RayService): `args` are the replicas' device, dtype, model sources, memory options and LRU size."""
    return KubinWorker.bind(
        device=str(args.get("device", "auto")),
        dtype=str(args.get("dtype", "auto")),
        sources=dict(args.get("sources") or {}),
        memory=dict(args.get("memory") or {}),
        max_models=int(args.get("max_models", 1)),
    )
