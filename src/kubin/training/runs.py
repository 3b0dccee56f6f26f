"""Training runs as jobs of the engine's queue: a run takes the device when its turn comes (the generation
model is let go first) and generations submitted meanwhile wait behind it. `Trainings` starts, resumes,
finds and cancels runs; a `TrainingRun` keeps what its watchers show (state, step, loss history, sample
images, notices) and hands its events to followers as they come."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams, KubinError
from kubin.training.dataset import DatasetReport
from kubin.training.loop import (
    Trainer,
    TrainingEvent,
    TrainingResult,
    latest_checkpoint,
    run_folder,
    saved_options,
)
from kubin.training.options import TrainingOptions

DEFAULT_FOLDER = "training"  # runs' checkpoints, caches and samples, under the Kubin folder


class TrainingRun:
    """One queued, running or finished run. Its `state` is the engine job's (queued, running, done,
    cancelled, failed)."""

    def __init__(
        self, run_id: int, options: TrainingOptions, resume: bool, dataset: DatasetReport, engine=None
    ):
        self.id, self.options, self.resume, self.dataset = run_id, options, resume, dataset
        self._engine = engine
        self.handle: Any = None  # the engine's ToolHandle
        self.step = 0
        self.losses: list[tuple[int, float]] = []  # (step, loss)
        self.samples: list[tuple[int, str]] = []  # (step, image path)
        self.notices: list[str] = []
        self.eta: float | None = None
        self.started_at: float | None = None  # time.monotonic() when it took the device, and when it let go
        self.ended_at: float | None = None
        self.result: TrainingResult | None = None
        self._events: list[TrainingEvent] = []
        self._changed = threading.Condition()
        self._subscribers: list = []

    @property
    def state(self) -> str:
        return self.handle.state if self.handle is not None else "queued"

    @property
    def error(self) -> KubinError | None:
        return self.handle.error if self.handle is not None else None

    @property
    def finished(self) -> bool:
        return self.handle is not None and self.handle.finished

    def record(self, event: TrainingEvent) -> None:
        """Keep what the event says and wake the followers (called from the engine's worker)."""
        with self._changed:
            if event.kind == "step":
                self.step, self.eta = event.step, event.eta
                self.losses.append((event.step, float(event.loss)))
            elif event.kind == "sample":
                self.samples += [(event.step, path) for path in event.paths]
            elif event.kind == "notice":
                self.notices.append(event.text)
            self._events.append(event)
            self._changed.notify_all()
            for callback in list(self._subscribers):
                callback(event)

    def wake(self) -> None:
        """The run has finished: wake the followers, and tell subscribers with None."""
        with self._changed:
            self._changed.notify_all()
            for callback in list(self._subscribers):
                callback(None)

    def subscribe(self, callback) -> Callable[[], None]:
        """Call `callback(event)` for every event (those so far first), then `callback(None)` once the run
        has finished; returns the function that ends the subscription. Callbacks must be quick."""
        with self._changed:
            for event in self._events:
                callback(event)
            if self.finished:
                callback(None)
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._changed:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def follow(self, timeout: float | None = None) -> Iterator[TrainingEvent]:
        """Every event from the first, as it comes, until the run has finished. TimeoutError when nothing
        happens for `timeout` seconds."""
        seen = 0
        while True:
            with self._changed:
                if seen == len(self._events) and not self.finished:
                    if not self._changed.wait(timeout) and seen == len(self._events) and not self.finished:
                        raise TimeoutError(f"Training run {self.id} sent nothing in {timeout} s.")
                fresh, done = self._events[seen:], self.finished
            seen += len(fresh)
            yield from fresh
            if done and seen == len(self._events):
                return

    def wait(self, timeout: float | None = None) -> bool:
        return self.handle.wait(timeout)

    def cancel(self) -> None:
        """Stop at the next step (with a checkpoint there), or drop the run while it is queued."""
        self.handle.cancel()
        if self._engine is not None:
            self._engine.cancel(self.handle)  # drops it from the queue if it has not started

    def as_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "state": self.state,
            "name": self.options.output,
            "model": self.options.model,
            "target": self.options.target,
            "step": self.step,
            "steps": self.options.steps,
            "eta_seconds": self.eta,
            "losses": [{"step": s, "loss": v} for s, v in self.losses],
            "samples": [{"step": s, "path": p} for s, p in self.samples],
            "notices": list(self.notices),
            "dataset": self.dataset.as_json(),
            "error": str(self.error) if self.error else None,
        }
        if self.result is not None:
            out["path"] = str(self.result.path)
        return out


class Trainings:
    """The training runs of one engine; runs keep their files under `root`, adapters go to the engine's
    LoRA folder."""

    def __init__(self, engine, root: str | Path = DEFAULT_FOLDER):
        self.engine, self.root = engine, Path(root)
        self._runs: dict[int, TrainingRun] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(
        self, options: TrainingOptions | dict[str, Any], resume: bool = False, owner: str = ""
    ) -> TrainingRun:
        """Check the options, the model's target and the dataset now (what a user got wrong fails here, before
        the queue) and queue the run. With `resume`, the run goes on from its last checkpoint with the
        options it was started with (a larger `steps` lets it train longer)."""
        from kubin.engine import ToolJob

        if resume:  # the name and, optionally, more steps; the rest as the run was started
            values = (
                options if isinstance(options, dict) else {"output": options.output, "steps": options.steps}
            )
            options = self._resumed(str(values.get("output") or ""), values.get("steps"))
        elif isinstance(options, dict):
            options = TrainingOptions.from_dict(options)
        options.validate()
        spec = self.engine.manager.spec(options.model)
        device = self.engine.manager.placement().device  # where it will run: 8-bit Adam needs CUDA
        trainer = Trainer(options, spec, {}, self.run_dir(options), self.engine.loras.folder, device)
        dataset = trainer.check_dataset()
        options = replace(trainer.options, target=trainer.target_cls.part)
        with self._lock:
            run = TrainingRun(next(self._ids), options, resume, dataset, self.engine)
            self._runs[run.id] = run
        title = f"Training {options.output}"
        run.handle = self.engine.submit_tool(ToolJob(title, lambda ctx: self._train(run, spec, ctx), owner))
        threading.Thread(target=self._wake_when_done, args=(run,), daemon=True).start()
        return run

    def run_dir(self, options: TrainingOptions) -> Path:
        return run_folder(self.root, options.output)

    def _resumed(self, output: str, steps: int | None) -> TrainingOptions:
        run_dir = run_folder(self.root, output)
        saved = saved_options(run_dir)
        if not output.strip() or saved is None or latest_checkpoint(run_dir) is None:
            raise InvalidParams(f"There is no checkpoint of {output!r} to resume from; start a new run.")
        return replace(saved, steps=max(saved.steps, int(steps or 0)), epochs=0)  # the steps are set by now

    def _train(self, run: TrainingRun, spec, ctx) -> dict[str, Any]:
        from kubin.models.tiny import tiny_model_folder

        if run.options.caption_missing and not run.resume:
            self._caption_missing(run, ctx)
        ctx.free_models()  # training needs the device to itself
        sources = spec.sources
        if spec.tiny:
            sources = {sub.name: str(sub) for sub in tiny_model_folder(spec.id).iterdir() if sub.is_dir()}
        trainer = Trainer(run.options, spec, sources, self.run_dir(run.options), self.engine.loras.folder,
                          device=ctx.device)  # fmt: skip

        def on_event(event: TrainingEvent) -> None:
            run.record(event)
            if event.kind == "step":
                ctx.report(event.step, event.total)

        run.started_at = time.monotonic()
        try:
            run.result = trainer.run(on_event, should_stop=lambda: ctx.cancel_requested, resume=run.resume)
        finally:
            run.ended_at = time.monotonic()
        self.engine.loras.refresh()  # the picker lists it at once
        return run.result.as_json()

    def _caption_missing(self, run: TrainingRun, ctx) -> None:
        """Write a caption (.txt) for each picture that has none, with the caption model, on this job's worker:
        the captions the run then trains with. Cancel stops after the picture under way."""
        from kubin.errors import JobCancelled
        from kubin.tools.caption import caption, caption_files, image_files, load_captioner

        files = [f for f in image_files(Path(run.options.data)) if not f.with_suffix(".txt").exists()]
        if not files:
            return
        model_id = self.engine.tool_models.caption
        captioner = ctx.model(f"caption:{model_id}", lambda device: load_captioner(model_id, device))

        def follow(entry, done: int, total: int) -> None:
            ctx.report(done, total)
            if ctx.cancel_requested:
                raise JobCancelled(f"Training {run.options.output} was cancelled while captioning.")

        entries = caption_files(
            lambda image: caption(captioner, image), files, write_txt=True, on_entry=follow
        )
        made = sum(1 for e in entries if e.txt is not None and not e.skipped)
        failed = [f"{e.path.name} ({e.error})" for e in entries if e.error]
        text = f"Captioned {made} picture(s) without a .txt with {model_id}."
        run.record(
            TrainingEvent("notice", text=text + (f" Not captioned: {', '.join(failed)}." if failed else ""))
        )

    def _wake_when_done(self, run: TrainingRun) -> None:
        run.handle.wait()
        run.wake()

    def get(self, run_id: int) -> TrainingRun:
        with self._lock:
            if run_id not in self._runs:
                raise InvalidParams(f"No training run {run_id}.")
            return self._runs[run_id]

    def list(self) -> list[TrainingRun]:
        with self._lock:
            return list(self._runs.values())

    def resumable(self) -> list[str]:
        """The adapter names whose runs left a checkpoint (what Resume can go on with)."""
        if not self.root.is_dir():
            return []
        names = []
        for folder in sorted(self.root.iterdir()):
            options = saved_options(folder) if folder.is_dir() else None
            if options is not None and latest_checkpoint(folder) is not None:
                names.append(options.output)
        return names
