"""What both REST APIs share: the engine, the model the API generates with, the jobs it submitted,
turning uploaded or referenced images into files for the engine, and a job's JSON view.
"""

from __future__ import annotations

import asyncio
import os
import threading
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from kubin.api.security import decode_image, safe_output_path
from kubin.engine import Engine, FinishedEvent, Job, JobHandle
from kubin.errors import InvalidParams
from kubin.models.registry import ModelSpec
from kubin.params import params_class

OUTPUTS_PREFIX = "/kubin/api/v1/outputs/"
KEEP_JOBS = 1000  # finished API jobs remembered for GET /jobs/{id}


async def wait_for(handle: JobHandle, timeout: float | None = None) -> None:
    """Wait until the job ends (or timeout seconds) without holding a thread, so that any number of
    waiting clients cannot use up the worker threads that the UI's events need too: the job's finished
    event wakes this coroutine (no polling)."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()

    def on_event(event) -> None:  # on the engine's worker thread (or here, for a replay)
        if isinstance(event, FinishedEvent):
            loop.call_soon_threadsafe(ended.set)

    unsubscribe = handle.subscribe(on_event)
    try:
        await asyncio.wait_for(ended.wait(), timeout)
    except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11 on
        pass
    finally:
        unsubscribe()


@dataclass
class ApiState:
    engine: Engine
    model_id: str  # what the API generates with unless a request names another (A1111 sd_model_checkpoint)
    uploads: Path  # decoded request images live here until the engine has read them (at submit)
    max_upload_pixels: int
    interrupted: bool = False  # the last A1111 /interrupt stopped a job (for /progress)
    # The server folders a folder batch may read: None = any (a server only this machine reaches).
    folder_roots: list[Path] | None = None
    _jobs: OrderedDict[int, JobHandle] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def output_dir(self) -> Path:
        return self.engine.output_dir

    def spec(self, model_id: str | None = None) -> ModelSpec:
        return self.engine.manager.spec(model_id or self.model_id)  # the lookup the engine and UI use

    def submit(
        self, task: str, model_id: str | None, params: dict[str, Any], owner: str = "api"
    ) -> JobHandle:
        """Turn the request's image fields into files, submit, and forget the files (the engine has
        read them by then)."""
        cls = params_class(task)
        created: list[Path] = []
        try:
            values = dict(params)
            for name in cls.image_fields():
                value = values.get(name)
                if isinstance(value, list):
                    values[name] = [self.image_file(v, f"{name}[{i}]", created) for i, v in enumerate(value)]
                elif value:
                    values[name] = self.image_file(value, name, created)
            for name in cls.video_fields():  # a video to upscale: base64, or the URL of an output
                if values.get(name):
                    values[name] = self.video_file(values[name], name, created)
            handle = self.engine.submit(Job(task, model_id or self.model_id, values, owner=owner))
        finally:
            for path in created:
                path.unlink(missing_ok=True)
        return self.keep(handle)

    def check_folder(self, folder: str, what: str) -> None:
        """Refuse a server folder outside `folder_roots` (403): a server others reach must not read any folder."""
        if self.folder_roots is None:
            return
        real = Path(os.path.realpath(Path(folder).expanduser()))
        if not any(real.is_relative_to(os.path.realpath(root)) for root in self.folder_roots):
            allowed = ", ".join(str(r) for r in self.folder_roots) or "none are set"
            raise HTTPException(
                403,
                f"{what}: this server reads folders only under api_folder_roots of its config ({allowed}), "
                "because other machines can reach it.",
            )

    def keep(self, handle: JobHandle) -> JobHandle:
        """Remember a job this API submitted, for GET /jobs/{id} after it ends."""
        with self._lock:
            self._jobs[handle.id] = handle
            while len(self._jobs) > KEEP_JOBS:
                oldest = next(iter(self._jobs))
                if not self._jobs[oldest].finished:
                    break
                self._jobs.pop(oldest)
        return handle

    def output_file(self, value: Any, what: str, kind: str) -> str | None:
        """The output file an output URL names; None for other text (the base64 data of an `kind`). Server
        paths and other URLs are refused: the API reads no file outside the output folder."""
        if not isinstance(value, str):
            raise InvalidParams(f"{what} must be a base64-encoded {kind} or an output URL.")
        path = urllib.parse.urlsplit(value).path if value.startswith(("http://", "https://", "/")) else ""
        if path.startswith(OUTPUTS_PREFIX):
            relative = urllib.parse.unquote(path.removeprefix(OUTPUTS_PREFIX))
            try:
                return str(safe_output_path(self.output_dir, relative))
            except Exception:
                raise InvalidParams(f"{what}: there is no output file {relative!r}.") from None
        if value.startswith("/") or value.startswith(("http://", "https://")):
            raise InvalidParams(
                f"{what} must be a base64-encoded {kind} or the URL of an output ({OUTPUTS_PREFIX}...); "
                "server paths and other URLs are not read."
            )
        return None

    def image_file(self, value: Any, what: str, created: list[Path]) -> str:
        """A file path for an image given as base64 (or a data: URL), or as the URL of an output."""
        output = self.output_file(value, what, "image")
        if output is not None:
            return output
        path = decode_image(value, what, self.uploads, self.max_upload_pixels)
        created.append(path)
        return str(path)

    def video_file(self, value: Any, what: str, created: list[Path]) -> str:
        """A file path for a video given as base64 (or a data: URL), or as the URL of an output; server
        paths are not read, as for images."""
        import base64
        import binascii
        import tempfile

        output = self.output_file(value, what, "video")
        if output is not None:
            return output
        text = value.strip().partition(",")[2] if value.strip().startswith("data:") else value.strip()
        try:
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParams(f"{what} is not a base64-encoded video.") from None
        self.uploads.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".mp4", dir=self.uploads)
        with open(fd, "wb") as fh:
            fh.write(data)
        created.append(Path(name))
        return name

    def job(self, job_id: int) -> JobHandle | None:
        with self._lock:
            handle = self._jobs.get(job_id)
        if handle is None:  # a UI job still queued or running
            handle = next((h for h in self.engine.pending() if h.id == job_id), None)
        return handle

    def output_url(self, path: Path) -> str | None:
        try:
            relative = Path(path).resolve().relative_to(self.output_dir.resolve())
        except ValueError:
            return None
        return OUTPUTS_PREFIX + urllib.parse.quote(relative.as_posix())

    def job_json(self, handle: JobHandle) -> dict[str, Any]:
        results = []
        for result in handle.results:
            item = result.as_json() | {"url": self.output_url(result.path)}
            preview = getattr(result, "preview", None)
            if preview:
                item["preview_url"] = self.output_url(preview)
            if getattr(result, "audio", None):  # a video's soundtrack, as a WAV beside it
                item["audio_url"] = self.output_url(result.audio)
            results.append(item)
        eta = handle.eta_seconds()
        return {
            "id": handle.id,
            "task": handle.job.task,
            "model": handle.job.model_id,
            "state": handle.state,
            "position": self.engine.position(handle),
            "step": handle.step,
            "total_steps": handle.total_steps,
            "eta_seconds": round(eta, 2) if eta is not None else None,
            "stage": str(handle.stage) if handle.stage is not None else None,
            "seed": handle.seed,
            "seeds": handle.seeds(),
            "notices": list(handle.notices),
            "results": results,
            "error": str(handle.error) if handle.error else None,
        }
