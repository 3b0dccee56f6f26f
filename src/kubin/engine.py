"""The engine: one queue and one worker that run jobs in arrival order.

It validates parameters, picks seeds, asks the ModelManager for the pipeline, runs it with a
progress/cancel hook, saves every finished image at once (so cancel keeps them), and turns failures
into errors with a message for the user. The UI, the CLI and the tests are all clients of it: each holds
a JobHandle and subscribes to its events (started, progress, notice, result, finished) instead of polling.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import itertools
import logging
import queue
import secrets
import statistics
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kubin import __version__
from kubin.errors import InvalidParams, JobCancelled, KubinError, OutOfMemory, UnsupportedTask, without_paths
from kubin.extensions.loader import run_hooks
from kubin.images import DEFAULT_MAX_PIXELS
from kubin.models.base import Phase
from kubin.models.lora import ActiveLora, LoraLibrary, take_prompt_tags
from kubin.models.manager import ModelManager
from kubin.models.registry import family_of, list_models
from kubin.outputs import Mesh, OutputName, Video, save_image, save_mesh, save_video
from kubin.params import SEED_MAX, ImageTaskParams, params_class
from kubin.progress import Stage, StepTracker, TimeLeft
from kubin.prompts import PromptPlan, Wildcards, plan_prompts
from kubin.runtime.memory import MemoryOptions
from kubin.runtime.placement import free_memory
from kubin.tasks import Prepared, prepare, with_prompts
from kubin.tools.models import ToolModels, estimate_hint_depth

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"
DEFAULT_MAX_PROMPT_CHARS = 10_000  # config max_prompt_chars
MAX_OWNER_ALIASES = 10_000  # page loads remembered by adopt_owner (a few dozen bytes each)


@dataclass
class Job:
    task: str
    model_id: str
    params: ImageTaskParams | dict[str, Any]
    owner: str = ""  # who may cancel it without knowing its id (a browser session)
    # Values of the extensions' own widgets in the tab, by extension folder: passed to their before_job.
    extension_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Where its outputs go when they keep a name (a folder batch's); the day's <counter>-<seed> otherwise.
    output_name: OutputName | None = None
    # What the client did before submitting that the outputs' metadata should tell (the prompt expansion used).
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """One saved output: an image, or a video (frames > 0) with its preview."""

    path: Path
    seed: int
    width: int
    height: int
    index: int  # position in the whole job (batch_count x batch_size)
    meta: dict[str, Any]
    frames: int = 0  # videos only
    fps: float = 0
    preview: Path | None = None  # an animated WebP of a video, a turntable GIF of a 3D object
    files: dict[str, Path] = field(default_factory=dict)  # 3D only: "glb" (= path), "ply", "obj"
    depth_map: Path | None = None  # the depth map estimated from a photo hint (its ControlNet input)
    audio: Path | None = None  # a video's soundtrack as a WAV beside it (the mp4 carries it too)

    @property
    def is_video(self) -> bool:
        return self.frames > 0

    @property
    def is_mesh(self) -> bool:
        return bool(self.files)

    def as_json(self) -> dict[str, Any]:
        out = {
            "path": str(self.path),
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "index": self.index,
            "model": self.meta["model"],
            "task": self.meta["task"],
        }
        if "prompt_template" in self.meta:  # the prompt this output was made with, and its template
            out.update(prompt=self.meta["prompt"], prompt_template=self.meta["prompt_template"])
        if (
            self.depth_map is not None
        ):  # the depth map estimated from a photo hint, saved under <output>/depth/
            out.update(depth_map=str(self.depth_map), depth_model=self.meta["depth_model"])
        if self.is_video:
            out.update(frames=self.frames, fps=self.fps, preview=str(self.preview) if self.preview else None,
                       audio=str(self.audio) if self.audio else None)  # fmt: skip
            if "expanded_prompt" in self.meta:
                out["expanded_prompt"] = self.meta["expanded_prompt"]
        if self.is_mesh:
            out.update(preview=str(self.preview) if self.preview else None,
                       files={kind: str(p) for kind, p in self.files.items()},
                       vertices=self.meta.get("vertices"), faces=self.meta.get("faces"))  # fmt: skip
        return out


ImageResult = Result  # the name clients used before videos


# --- job events ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartedEvent:
    """The worker took the job from the queue."""

    job_id: int
    kind: str = field(default="started", init=False)


@dataclass(frozen=True)
class ProgressEvent:
    """One step done: `step` of `total` for the whole job, in `phase` ("prior", "decoder", "render", ...).
    `stage` is what the job does now, as a user reads it: the phase under way and how far it is ("Prior
    25/25" is followed by "Decoder 0/50"; after Shap-E's last step, "Rendering the turntable…")."""

    job_id: int
    step: int
    total: int
    phase: str
    stage: Stage | None = None
    kind: str = field(default="progress", init=False)


@dataclass(frozen=True)
class NoticeEvent:
    """Something the user should know: an adjusted input, a model load, torch.compile's warm-up."""

    job_id: int
    text: str
    kind: str = field(default="notice", init=False)


@dataclass(frozen=True)
class ResultEvent:
    """One output, saved to disk (complete, with its parameters) before this event is sent."""

    job_id: int
    result: Result
    kind: str = field(default="result", init=False)


@dataclass(frozen=True)
class FinishedEvent:
    """The last event of every job: its final state (done, cancelled or failed) and the error, if any."""

    job_id: int
    state: str
    error: KubinError | None
    kind: str = field(default="finished", init=False)


JobEvent = StartedEvent | ProgressEvent | NoticeEvent | ResultEvent | FinishedEvent
Subscriber = Callable[[JobEvent], None]


class _Waitable:
    """Done and cancel flags of a queued job (the dataclasses below hold the two events)."""

    _done: threading.Event
    _cancel: threading.Event

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


@dataclass
class JobHandle(_Waitable):
    """What a client holds while its job is queued or running, and after."""

    id: int
    job: Job
    params: ImageTaskParams
    seed: int  # the base seed actually used
    total_steps: int
    state: str = QUEUED
    step: int = 0
    phase: str = ""
    results: list[Result] = field(default_factory=list)
    error: KubinError | None = None
    started_at: float | None = None
    step_marks: list[tuple[str, float]] = field(default_factory=list, repr=False)  # (phase, time) per step
    prepared: Prepared = field(default_factory=Prepared, repr=False)
    # Counts the steps against the phases the model declared, and times them (see kubin.progress).
    tracker: StepTracker = field(default_factory=StepTracker, repr=False)
    prompts: PromptPlan = None  # type: ignore[assignment]  # each output's expanded prompts; see __post_init__
    loras: list[ActiveLora] = field(default_factory=list)  # the adapters it runs with
    worker: dict[str, Any] = field(
        default_factory=dict
    )  # on a cluster: the replica running it (id, pid, ...)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _events: list[JobEvent] = field(default_factory=list, repr=False)
    _subscribers: list[Subscriber] = field(default_factory=list, repr=False)
    # Held while events are delivered, so every subscriber sees them once each and in order, a late one
    # its replay before anything newer.
    _delivery: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` for every event of this job, in order; returns a function that ends the
        subscription. Events already sent are replayed first (on the caller's thread), so a late
        subscriber misses nothing; later ones come from the engine's worker thread as they happen, so a
        callback must be quick and must not wait for the job. One that raises is logged and skipped."""
        with self._delivery:
            for event in list(self._events):
                _deliver(callback, event)
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._delivery:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def events(self, timeout: float | None = None) -> Iterator[JobEvent]:
        """The job's events as an iterator, from the first (replayed) to FinishedEvent, which ends it.
        Raises TimeoutError when no event comes within `timeout` seconds."""
        inbox: queue.Queue[JobEvent] = queue.Queue()
        unsubscribe = self.subscribe(inbox.put)
        try:
            while True:
                try:
                    event = inbox.get(timeout=timeout)
                except queue.Empty:
                    raise TimeoutError(f"Job {self.id} sent no event in {timeout} s.") from None
                yield event
                if isinstance(event, FinishedEvent):
                    return
        finally:
            unsubscribe()

    def emit(self, event: JobEvent) -> None:
        """Record `event` and deliver it to every subscriber (the engine calls this)."""
        with self._delivery:
            self._events.append(event)
            for callback in list(self._subscribers):
                _deliver(callback, event)

    def add_notices(self, notices: list[str]) -> None:
        """Tell the user something about this job: kept in `notices` and sent as NoticeEvents."""
        self.notices.extend(notices)
        for text in notices:
            self.emit(NoticeEvent(self.id, text))

    @property
    def notices(self) -> list[str]:
        """What was adjusted in the user's input (resized mask, flattened transparency, ...)."""
        return self.prepared.notices

    def __post_init__(self) -> None:
        if self.prompts is None:  # no prompt templates: every output has the params' own prompts
            self.prompts = PromptPlan([{} for _ in range(self.params.image_count)])

    @property
    def image_count(self) -> int:
        """How many outputs the job makes: batch_count x batch_size, times the combinations of a prompt
        template in combinatorial mode."""
        return self.prompts.count

    def expanded(self, index: int) -> dict[str, Any]:
        """Output `index`'s prompt fields expanded from their templates ({} when none is a template)."""
        return self.prompts.expanded[index]

    def seeds(self) -> list[int]:
        return [image_seed(self.seed, i) for i in range(self.image_count)]

    @property
    def stage(self) -> Stage | None:
        """What the job does now ("Prior 20/25", "Decoder 3/500", "Rendering the turntable…"); None until
        its first step."""
        return self.tracker.stage() if self.step else None

    def time_left(self) -> TimeLeft | None:
        """The time left, from this job's own timed steps; None until the stage under way has one."""
        return self.tracker.time_left(time.monotonic()) if self.state == RUNNING else None

    def eta_seconds(self) -> float | None:
        """Seconds left for the whole job; None while that cannot be measured yet."""
        left = self.time_left()
        return left.seconds if left is not None and left.whole_job else None


@dataclass
class ToolJob:
    """Work of a tool model (an upscaler, a segmenter, a background remover, ...) that runs in the engine's
    queue, so it never shares the device with a generation. `run(tool)` gets a ToolContext."""

    title: str
    run: Callable[[ToolContext], Any]
    owner: str = ""


class ToolContext:
    """What a tool job sees while it runs: the device to use, the tool models the manager keeps (freed
    when a generation model needs the memory), and progress that stops the job when it is cancelled."""

    def __init__(self, engine: Engine, handle: ToolHandle):
        self._engine, self._handle = engine, handle
        self.device = engine.manager.placement().device

    @property
    def engine(self) -> Engine:
        return self._engine

    def model(self, key: str, load: Callable[[str], Any]) -> Any:
        """The tool model `key`, loaded with `load(device)` on first use and kept by the model manager."""
        return self._engine.manager.tool_model(key, lambda: load(self.device))

    def generation_model(self, model_id: str) -> Any:
        """The loaded generation model `model_id` (a LoadedModel), loaded as a generation job would load it
        when another one is in memory: a tool that reuses its parts (Kandinsky 5's Qwen2.5-VL captioning)."""
        return self._engine.manager.get(model_id)

    def progress(self, done: int, total: int) -> None:
        self.report(done, total)
        if self._handle.cancel_requested:
            raise JobCancelled(f"{self._handle.job.title} was cancelled.")

    def report(self, done: int, total: int) -> None:
        """Progress of a job that stops by itself when `cancel_requested` (a training run checkpoints first)."""
        self._handle.step, self._handle.total_steps = done, total

    @property
    def cancel_requested(self) -> bool:
        return self._handle.cancel_requested

    def free_models(self) -> None:
        """Let go of the generation model and the tool models: a job that loads its own (training) needs
        the device's memory to itself. The next generation loads its model again."""
        self._engine.manager.unload()
        self._engine.manager.free_tool_models()


@dataclass
class ToolHandle(_Waitable):
    """A queued or running tool job: its state, and when it is done its value or error."""

    id: int
    job: ToolJob
    state: str = QUEUED
    step: int = 0
    total_steps: int = 0
    value: Any = None
    error: KubinError | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)


def _deliver(callback: Subscriber, event: JobEvent) -> None:
    try:
        callback(event)
    except Exception:
        log.exception(
            "A subscriber of job %s failed on its %s event; the job goes on", event.job_id, event.kind
        )


def step_phases(module: str, task: str, params: ImageTaskParams) -> list[Phase]:
    """What one batch reports, phase by phase: the family module's `step_phases`; a module that only counts
    its steps (`steps_per_batch`), or neither (the params' count), reports one phase, "denoise"."""
    family = importlib.import_module(module)
    phases = getattr(family, "step_phases", None)
    if phases is not None:
        return list(phases(task, params))
    count = getattr(family, "steps_per_batch", None)
    return [Phase("denoise", count(task, params) if count is not None else params.steps_per_batch())]


def image_seed(base: int, index: int) -> int:
    return (base + index) % (SEED_MAX + 1)


def pick_seed(requested: int) -> int:
    return secrets.randbelow(SEED_MAX + 1) if requested == -1 else requested


class Engine:
    def __init__(
        self,
        manager: ModelManager,
        output_dir: str | Path,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
        wildcards: Wildcards | None = None,
        grid_max_cells: int = 100,
        loras: LoraLibrary | None = None,
        history=None,
        tool_models: ToolModels | None = None,
        cluster=None,
    ):
        self.manager = manager
        self.history = history  # a kubin.history.History that records every job, or None
        self.output_dir = Path(output_dir)
        self.max_pixels = max_pixels  # input images above this are downscaled, outputs refused
        self.max_prompt_chars = max_prompt_chars  # longer prompts are refused at submit
        self.wildcards = wildcards or Wildcards(Path("wildcards"))  # where __name__ in a prompt is looked up
        self.grid_max_cells = grid_max_cells  # the most cells an X/Y/Z grid may queue (kubin.grid)
        self.loras = loras or LoraLibrary()  # where LoRA names are looked up
        self.trainings: Any = None  # kubin.training.runs.Trainings, set by kubin.app.make_engine
        self.tool_models = (
            tool_models or ToolModels()
        )  # depth, caption and prompt expansion models (kubin.tools)
        self.extensions: list = []  # loaded extensions whose hooks run around jobs and model loads
        manager.listeners.append(lambda event, model_id: run_hooks(self.extensions, event, model_id))
        # A kubin.cluster.client.Cluster: generation jobs run on its Ray Serve replicas, as many at once as
        # it has slots (one job per client at a time, so each client's outputs come in its order).
        self.cluster = cluster
        self._queue: deque[JobHandle] = deque()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._workers: list[threading.Thread] = []
        self._running: list[JobHandle | ToolHandle] = []
        self._closed = False
        self._owner_aliases: OrderedDict[str, str] = OrderedDict()  # see adopt_owner

    # --- client side -----------------------------------------------------------------------------
    def submit(self, job: Job, subscriber: Subscriber | None = None) -> JobHandle:
        """Validate now (bad input fails here, before queueing) and queue the job. A `subscriber` is
        subscribed before the job is queued, so it sees every event as it happens (see JobHandle.subscribe)."""
        if self.cluster is not None:
            self.cluster.check()  # the cluster is gone: say so now rather than queue a job that cannot run
        spec = self.manager.spec(job.model_id)
        if not spec.supports(job.task):
            raise UnsupportedTask(f"{spec.title} cannot do {job.task}; it supports: {', '.join(spec.tasks)}.")
        job = self._before_job(job)
        cls = params_class(job.task)
        # A dict fills what it leaves out from the model's recommended defaults for the task.
        if isinstance(job.params, cls):
            params = job.params
        else:
            params = cls.from_dict({**spec.defaults.get(job.task, {}), **dict(job.params)})
        if "strength" in spec.unused_params and hasattr(params, "strength"):
            params.strength = 1.0  # the model follows the prompt over the whole image: nothing to check
        params.validate().check_prompt_lengths(self.max_prompt_chars)
        scheduler = getattr(params, "scheduler", "")
        if scheduler and spec.schedulers and scheduler not in spec.schedulers:
            raise InvalidParams(
                f"Scheduler {scheduler!r} is not available for {spec.title}; choose one of {', '.join(spec.schedulers)}."
            )
        if getattr(params, "hint_image", "") and "controlnet" not in spec.features:
            raise InvalidParams(
                f"{spec.title} has no ControlNet, so it cannot use a hint image; remove the hint or pick a "
                f"model with ControlNet ({', '.join(m.id for m in list_models() if 'controlnet' in m.features)})."
            )
        _check_limits(spec, params)
        params, loras = self._take_loras(spec, params)
        prepared = prepare(params, self.max_pixels, spec)
        seed = pick_seed(params.seed)
        prompts = plan_prompts(params, lambda i: image_seed(seed, i), self.wildcards)
        for values in prompts.expanded:  # a wildcard file's line may be long
            replace(params, **values).check_prompt_lengths(self.max_prompt_chars)
        # One pipeline call per batch, or more where a batch's prompts differ: the tracker counts calls.
        calls = len(prompts.calls(params.batch_size))
        tracker = StepTracker(step_phases(spec.module, job.task, params), calls)
        handle = JobHandle(
            next(self._ids),
            job,
            params,
            seed,
            tracker.total,
            prepared=prepared,
            tracker=tracker,
            prompts=prompts,
            loras=loras,
        )
        prepared.notices.extend(prompts.notices)
        if subscriber is not None:
            handle.subscribe(subscriber)
        for text in prepared.notices:  # told at once, and replayed to whoever subscribes later
            handle.emit(NoticeEvent(handle.id, text))
        with self._cond:
            if self._closed:
                raise KubinError("The engine is shutting down; no new jobs are accepted.")
            if self.history is not None:  # recorded before the worker can start it
                try:
                    self.history.track(handle)
                except Exception:  # a history that cannot be written never stops a job
                    log.exception("Job %s could not be recorded in the history", handle.id)
            self._queue.append(handle)
            self._ensure_worker()
            self._cond.notify_all()
        return handle

    def _take_loras(self, spec, params: ImageTaskParams) -> tuple[ImageTaskParams, list[ActiveLora]]:
        """The job's adapters: its `loras` and the <lora:name:weight> tags of its prompts (taken out of the
        text the encoder reads), each found and checked against the model's family now."""
        if "loras" not in params.field_specs():
            return params, []
        entries, changed = list(params.loras), {}
        for name in ("prompt", "prompts"):
            if name not in params.field_specs():
                continue
            value = getattr(params, name)
            texts = value if isinstance(value, list) else [value]
            taken = [take_prompt_tags(text) for text in texts]
            if any(tags for _, tags in taken):
                entries += [tag for _, tags in taken for tag in tags]
                changed[name] = [text for text, _ in taken] if isinstance(value, list) else taken[0][0]
        if not entries:
            return params, []
        loras = self.loras.resolve(entries, family_of(spec), spec.title)
        params = replace(params, **changed, loras=[f"{a.file.name}:{a.weight:g}" for a in loras])
        return params, loras

    def submit_tool(self, job: ToolJob) -> ToolHandle:
        """Queue a tool job behind the jobs already queued: it runs when the device is free."""
        handle = ToolHandle(next(self._ids), job)
        with self._cond:
            if self._closed:
                raise KubinError("The engine is shutting down; no new jobs are accepted.")
            self._queue.append(handle)
            self._ensure_worker()
            self._cond.notify_all()
        return handle

    def run_tool(self, title: str, run: Callable[[ToolContext], Any], owner: str = "") -> Any:
        """Run a tool job in the queue and wait for it: returns what `run` returned, raises its error."""
        handle = self.submit_tool(ToolJob(title, run, owner))
        handle.wait()
        if handle.error is not None:
            raise handle.error
        return handle.value

    def _before_job(self, job: Job) -> Job:
        """Extensions may rewrite the parameters (prompt styles, ...): each before_job hook gets the task
        and a dict of the parameters as the extensions before it left them, and may return a changed one.
        Typed parameters go to the hooks as their dict too, and come back typed."""
        if not self.extensions:
            return job
        typed = isinstance(job.params, ImageTaskParams)
        values = job.params.to_dict() if typed else dict(job.params)
        changed_any = False
        for ext in self.extensions:
            for changed in run_hooks(
                [ext], "before_job", job.task, dict(values), values=job.extension_values
            ):
                if isinstance(changed, dict):
                    values, changed_any = changed, True
        if not changed_any:
            return job
        return replace(job, params=type(job.params).from_dict(values) if typed else values)

    def run(self, job: Job) -> JobHandle:
        """Submit and wait. Raises the job's error if it failed; a cancelled job returns its handle."""
        handle = self.submit(job)
        handle.wait()
        if handle.state == FAILED and handle.error is not None:
            raise handle.error
        return handle

    def cancel(self, handle: JobHandle) -> None:
        """Stop a running job within one step, or drop a queued one."""
        handle.cancel()
        with self._cond:
            if handle in self._queue:
                self._queue.remove(handle)
                self._finish(handle, CANCELLED, JobCancelled("Cancelled before it started."))

    def adopt_owner(self, old: str, new: str) -> None:
        """From now on `new` also cancels the jobs of `old`, those running or queued and those still on their
        way (a browser page that clicked Generate before it learnt its lasting owner id)."""
        if old and new and old != new:
            with self._cond:
                self._owner_aliases[old] = new
                while len(self._owner_aliases) > MAX_OWNER_ALIASES:
                    self._owner_aliases.popitem(last=False)

    def jobs_of(self, owner: str) -> list[JobHandle]:
        """The queued or running jobs of one owner (or of an owner it adopted)."""
        with self._cond:
            mine = lambda h: owner in (h.job.owner, self._owner_aliases.get(h.job.owner))  # noqa: E731
            handles = [h for h in self._queue if mine(h)]
            handles += [h for h in self._running if mine(h)]
        return handles

    def cancel_owner(self, owner: str) -> int:
        """Cancel every queued or running job of one owner; returns how many were asked to stop."""
        handles = self.jobs_of(owner)
        for h in handles:
            self.cancel(h)
        return len(handles)

    def position(self, handle: JobHandle) -> int:
        """0 while running or finished, else 1 + the number of jobs ahead of it."""
        with self._cond:
            try:
                return self._queue.index(handle) + 1
            except ValueError:
                return 0

    def busy_with(self) -> str:
        """What a running tool job (a training run, an upscale) is doing, as a queued job's status says it
        ("Training squares, step 3/40"); "" when none runs."""
        with self._cond:
            tools = [h for h in self._running if isinstance(h, ToolHandle) and h.state == RUNNING]
        if not tools:
            return ""
        current = tools[0]
        steps = f", step {current.step}/{current.total_steps}" if current.total_steps else ""
        return f"{current.job.title}{steps}"

    def current(self) -> JobHandle | None:
        """The running generation job, if any (a running tool job is not one)."""
        with self._cond:
            running = [h for h in self._running if isinstance(h, JobHandle) and h.state == RUNNING]
        return running[0] if running else None

    def pending(self) -> list[JobHandle]:
        """The running job (if any) followed by the queued ones, in the order they will run."""
        with self._cond:
            queued = list(self._running) + list(self._queue)
        # Tool jobs are not listed; nor is a job that has just ended while the worker lets go of it.
        return [h for h in queued if isinstance(h, JobHandle) and h.state in (QUEUED, RUNNING)]

    def close(self, wait: bool = False, timeout: float | None = 30) -> None:
        """Refuse new jobs, drop queued ones, stop the running one; with wait, until the worker has ended."""
        with self._cond:
            self._closed = True
            while self._queue:
                handle = self._queue.popleft()
                if self.history is not None and isinstance(handle, JobHandle):
                    self.history.interrupt(handle)  # offered again at the next start
                self._finish(handle, CANCELLED, JobCancelled("Kubin is shutting down."))
            self._cond.notify_all()
            running = list(self._running)
        for handle in running:
            handle.cancel()
        if wait:
            for worker in self._workers:
                worker.join(timeout)
        if self.cluster is not None:
            self.cluster.close()

    # --- worker side -----------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        self._workers = [w for w in self._workers if w.is_alive()]
        slots = self.cluster.slots if self.cluster is not None else 1
        while len(self._workers) < slots:
            name = f"kubin-engine-{len(self._workers)}" if self._workers else "kubin-engine"
            worker = threading.Thread(target=self._work, name=name, daemon=True)
            self._workers.append(worker)
            worker.start()

    def _next(self) -> JobHandle | ToolHandle | None:
        """The first queued job whose owner has none running (so a client's jobs run in its order)."""
        busy = {h.job.owner for h in self._running}
        for handle in self._queue:
            if handle.job.owner not in busy:
                return handle
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                while (handle := self._next()) is None and not self._closed:
                    self._cond.wait()
                if handle is None:
                    return
                self._queue.remove(handle)
                self._running.append(handle)
            try:
                if isinstance(handle, ToolHandle):
                    self._execute_tool(handle)
                elif self.cluster is not None:
                    self._execute_remote(handle)
                else:
                    self._execute(handle)
            finally:
                with self._cond:
                    self._running.remove(handle)
                    self._cond.notify_all()

    def _execute_tool(self, handle: ToolHandle) -> None:
        handle.state = RUNNING
        try:
            handle.value = handle.job.run(ToolContext(self, handle))
            self._finish(handle, DONE, None)
        except JobCancelled as exc:
            self._finish(handle, CANCELLED, exc)
        except KubinError as exc:
            self._finish(handle, FAILED, exc)
        except Exception as exc:
            if _is_out_of_memory(exc):
                traceback.clear_frames(exc.__traceback__)
                self.manager.free_tool_models()
                free_memory()
                self._finish(
                    handle, FAILED, OutOfMemory(f"{handle.job.title} ran out of memory; try a smaller image.")
                )
            else:
                log.exception("Tool job %s (%s) failed", handle.id, handle.job.title)
                self._finish(handle, FAILED, KubinError(f"{handle.job.title} failed: {_said(exc)}."))

    def _execute(self, handle: JobHandle) -> None:
        handle.state = RUNNING
        handle.started_at = time.monotonic()
        handle.emit(StartedEvent(handle.id))
        job, params = handle.job, handle.params
        try:
            model = self.manager.get(job.model_id, job.task)
            loaded = self.manager.take_load_notices()  # a list when this job loaded the model
            handle.add_notices(loaded or [])
            set_loras = getattr(model, "set_loras", None)
            if set_loras is not None:  # every job: one without adapters switches the last job's off
                handle.add_notices(set_loras(handle.loras, fuse=self.loras.fuse) or [])
            if (
                handle.prepared.depth_from is not None
            ):  # a photo hint: its depth map first, on the same worker
                handle.add_notices([estimate_hint_depth(self, handle.prepared)])

            def on_step(phase: str, step: int) -> None:
                now = time.monotonic()
                handle.phase = phase
                handle.step += 1
                handle.step_marks.append((phase, now))
                stage = handle.tracker.step(phase, now)
                # A subscriber may cancel on this event: the check below then stops the job at this step.
                handle.emit(ProgressEvent(handle.id, handle.step, handle.total_steps, phase, stage))
                if handle.cancel_requested:
                    raise JobCancelled("cancelled")

            inputs = handle.prepared.store_sources(self.output_dir)
            # One pipeline call per batch, or more where a batch's prompts differ (expanded templates).
            for call, indices in enumerate(handle.prompts.calls(params.batch_size)):
                if handle.cancel_requested:
                    raise JobCancelled("cancelled")
                handle.tracker.start_batch(call)
                seeds = [image_seed(handle.seed, i) for i in indices]
                expanded = handle.expanded(indices[0])
                call_params = replace(params, **expanded) if expanded else params
                prepared = with_prompts(handle.prepared, call_params) if expanded else handle.prepared
                outputs, scheduler = model.generate(job.task, call_params, prepared, seeds, on_step)
                if call == 0 and loaded is not None and model.placement.memory.compile and _compiled(model):
                    handle.add_notices(compile_warmup_notice(handle))
                for index, raw, seed in zip(indices, outputs, seeds, strict=True):
                    runtime = runtime_metadata(model.placement)
                    result = self._save(handle, model.spec, runtime, scheduler, seed, index, raw, inputs)
                    handle.results.append(result)
                    handle.emit(ResultEvent(handle.id, result))
            run_hooks(self.extensions, "after_job", job.task, list(handle.results))
            self._finish(handle, DONE, None)
        except Exception as exc:
            self._end_failed(handle, exc)

    def _end_failed(self, handle: JobHandle, exc: Exception) -> None:
        """End a generation job that raised (here or on a replica): a cancel keeps what was saved, a user's
        error says itself, running out of memory says what to change, anything else is logged in full."""
        params = handle.params
        if isinstance(exc, JobCancelled):
            n = len(handle.results)
            self._finish(
                handle,
                CANCELLED,
                JobCancelled(
                    f"Cancelled after {n} of {handle.image_count} {params.output_kind}(s); "
                    "the finished ones are saved."
                ),
            )
        elif isinstance(exc, KubinError):
            self._finish(handle, FAILED, exc)
        elif _is_out_of_memory(exc):
            # The traceback's frames hold the job's tensors: clear them, so that they are freed now.
            traceback.clear_frames(exc.__traceback__)
            free_memory()
            self._finish(
                handle, FAILED, OutOfMemory(_out_of_memory_message(self.manager, handle.job, params))
            )
        else:
            log.error("Job %s failed", handle.id, exc_info=exc)
            self._finish(
                handle,
                FAILED,
                KubinError(f"Generation failed: {_said(exc)}. The full traceback is in the console log."),
            )

    def _execute_remote(self, handle: JobHandle) -> None:
        """Run the job on a replica of the cluster: the replica streams its steps and each call's outputs,
        which are saved here as they come, as a local job saves them. A replica that dies mid-job gets the
        outputs not saved yet run again once, on another replica."""
        from kubin.cluster import ClusterCall, ClusterJob, ClusterLora
        from kubin.cluster.client import ReplicaLost

        handle.state = RUNNING
        handle.started_at = time.monotonic()
        handle.emit(StartedEvent(handle.id))
        job, params = handle.job, handle.params
        try:
            spec = self.manager.spec(job.model_id)
            shared = self.cluster.settings.shared_loras
            loras = [ClusterLora(replace(a, file=replace(a.file, path=a.file.path.resolve())), shared)
                     for a in handle.loras]  # fmt: skip
            if handle.prepared.depth_from is not None:  # a photo hint: its depth map here first (a tool job)
                handle.add_notices([estimate_hint_depth(self, handle.prepared)])
            inputs = handle.prepared.store_sources(self.output_dir)
            shipped = replace(handle.prepared, sources={}, notices=[], depth_from=None)  # no copies to ship
            calls = handle.prompts.calls(params.batch_size)
            saved: set[int] = set()
            for attempt in (1, 2):
                todo = []
                for call, indices in enumerate(calls):
                    left = [i for i in indices if i not in saved]
                    if left:
                        expanded = handle.expanded(left[0])
                        call_params = replace(params, **expanded) if expanded else params
                        prepared = with_prompts(shipped, call_params) if expanded else shipped
                        seeds = [image_seed(handle.seed, i) for i in left]
                        todo.append(ClusterCall(call, call_params, prepared, seeds))
                key = f"{handle.id}-{attempt}-{secrets.token_hex(4)}"
                remote = ClusterJob(key, job.task, spec.id, todo, loras)
                try:
                    self._follow_remote(handle, remote, spec, inputs, saved)
                    break
                except ReplicaLost as exc:
                    if attempt == 2:
                        raise KubinError(
                            f"The job failed: the replica running it was lost twice ({without_paths(str(exc))})."
                            f" {len(saved)} of {handle.image_count} output(s) were saved."
                        ) from None
                    log.warning("Job %s: its replica was lost (%s); running it again", handle.id, exc)
                    handle.add_notices(
                        [
                            f"The replica running this job was lost; the {handle.image_count - len(saved)} output(s) "
                            "not saved yet run again on another replica."
                        ]  # fmt: skip
                    )
            run_hooks(self.extensions, "after_job", job.task, list(handle.results))
            self._finish(handle, DONE, None)
        except Exception as exc:
            self._end_failed(handle, exc)

    def _follow_remote(self, handle: JobHandle, remote, spec, inputs, saved: set[int]) -> None:
        """Follow one attempt of a job on the cluster: its events become the handle's, its outputs files."""
        calls = {call.index: call for call in remote.calls}
        for event in self.cluster.run(remote, lambda: handle.cancel_requested):
            kind = event["kind"]
            if kind == "replica":
                handle.worker = {k: event[k] for k in ("replica", "pid", "device", "loaded")}
                handle.add_notices(event["notices"])
                if calls:
                    handle.tracker.start_batch(remote.calls[0].index)
            elif kind == "step":
                now = time.monotonic()
                handle.phase = event["phase"]
                handle.step += 1
                handle.step_marks.append((handle.phase, now))
                stage = handle.tracker.step(handle.phase, now)
                handle.emit(ProgressEvent(handle.id, handle.step, handle.total_steps, handle.phase, stage))
                if handle.cancel_requested:
                    raise JobCancelled("cancelled")
            elif kind == "outputs":
                call = calls[event["call"]]
                indices = [
                    i for i in handle.prompts.calls(handle.params.batch_size)[call.index] if i not in saved
                ]
                for index, raw, seed in zip(indices, event["outputs"], call.seeds, strict=True):
                    result = self._save(
                        handle, spec, event["runtime"], event["scheduler"], seed, index, raw, inputs
                    )
                    saved.add(index)
                    handle.results.append(result)
                    handle.emit(ResultEvent(handle.id, result))
                later = [c.index for c in remote.calls if c.index > call.index]
                if later:
                    handle.tracker.start_batch(later[0])
            elif kind == "failed":
                raise event["error"]

    def _save(self, handle, spec, runtime, scheduler, seed, index, output, inputs) -> Result:
        """Save one output with its metadata at once, as what it is: a Mesh (with its turntable frames), a
        Video, or an image."""
        task = handle.job.task
        name = handle.job.output_name.indexed(index, handle.image_count) if handle.job.output_name else None
        if isinstance(output, Mesh):
            size = handle.prepared.size  # the preview's
            meta = self._metadata(
                handle,
                spec,
                runtime,
                scheduler,
                seed,
                index,
                SimpleNamespace(width=size[0], height=size[1]),
                inputs,
            )
            meta["frames"] = len(output.turntable)
            paths = save_mesh(output, self.output_dir, task, meta, name)
            meta.update(vertices=len(output.vertices), faces=len(output.faces))
            files = {kind: paths[kind] for kind in ("glb", "ply", "obj")}
            return Result(
                paths["glb"], seed, size[0], size[1], index, meta, preview=paths.get("preview"), files=files
            )
        if isinstance(output, Video):
            frames, fps = list(output.frames), output.fps or handle.params.fps
            first = frames[0]
            meta = self._metadata(handle, spec, runtime, scheduler, seed, index, first, inputs)
            meta.update(frames=len(frames), fps=fps)
            if output.audio is not None:
                samples, rate = output.audio
                meta["audio"] = {"sample_rate": int(rate), "seconds": round(samples.shape[-1] / rate, 3)}
            if output.expanded_prompt:  # what the model rewrote the prompt into, and ran with
                meta["expanded_prompt"] = output.expanded_prompt
            path, preview = save_video(
                frames, fps, self.output_dir, task, meta, name=name, audio=output.audio
            )
            audio = path.with_suffix(".wav") if output.audio is not None else None
            return Result(path, seed, first.width, first.height, index, meta, len(frames), fps, preview,
                          audio=audio)  # fmt: skip
        image = handle.prepared.finish(output)
        meta = self._metadata(handle, spec, runtime, scheduler, seed, index, image, inputs)
        path = save_image(image, self.output_dir, task, meta, name)
        return Result(path, seed, image.width, image.height, index, meta, depth_map=handle.prepared.depth_map)

    def _metadata(self, handle, spec, runtime, scheduler, seed, index, image, inputs) -> dict[str, Any]:
        unused = set(spec.unused_params)
        if "hint_image" in unused:
            unused.add("estimate_depth")
        params = {k: v for k, v in handle.params.to_dict().items() if k not in unused} | {"seed": handle.seed}
        extra = {"inputs": inputs} if inputs else {}
        if handle.notices:
            extra["notices"] = handle.notices
        if handle.job.extension_values:
            extra["extensions"] = handle.job.extension_values
        for name, value in handle.expanded(index).items():  # what it was made with, beside the template
            extra[name], extra[f"{name}_template"] = value, handle.prompts.templates[name]
        if handle.loras:
            extra["loras"] = [lora.as_json() for lora in handle.loras]
        if handle.prepared.depth_map is not None:
            extra["depth_model"] = handle.prepared.depth_model
            extra["depth_map"] = handle.prepared.depth_map.relative_to(self.output_dir).as_posix()
        extra.update(handle.job.meta)
        extra["runtime"] = runtime
        return extra | {
            "kubin_version": __version__,
            "task": handle.job.task,
            "model": spec.id,
            "family": spec.family,
            "implementation": spec.implementation,
            "scheduler": scheduler,
            "seed": seed,
            "batch_index": index,
            "width": image.width,
            "height": image.height,
            "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "params": params,
        }

    def _finish(self, handle: JobHandle | ToolHandle, state: str, error: KubinError | None) -> None:
        if isinstance(handle, ToolHandle):
            handle.state, handle.error = state, error
            handle._done.set()
            return
        with handle._delivery:  # whoever sees the job finished and then subscribes gets FinishedEvent too
            handle.state = state
            handle.error = error
            # Delivered before the job counts as done: a client woken by wait() has had it already.
            handle.emit(FinishedEvent(handle.id, state, error))
            handle._done.set()


def runtime_metadata(placement) -> dict[str, Any]:
    """Where and how the model ran: the device, the precision and every memory or speed option not at
    its default (quantisation and step caches change pixels; the rest says how it was run)."""
    defaults = MemoryOptions().to_dict()
    changed = {k: v for k, v in placement.memory.to_dict().items() if v != defaults[k]}
    return {"device": placement.device, "dtype": placement.dtype} | changed


def _compiled(model) -> bool:
    """Whether a loaded model holds a compiled denoiser (compile can be refused: no C compiler, ...)."""
    from kubin.runtime.speed import is_compiled

    for value in vars(model).values():
        components = getattr(value, "components", None)  # a diffusers pipeline
        parts = components.values() if isinstance(components, dict) else [value]
        if any(is_compiled(part) for part in parts):
            return True
    return False


def compile_warmup_notice(handle: JobHandle) -> list[str]:
    """torch.compile's warm-up, from the step times of the first batch after a load: the first step
    of the denoising phase (it compiled the denoiser) against the median of the steps after it."""
    marks = handle.step_marks
    if not marks:
        return []
    phase = marks[-1][0]  # the denoiser's phase runs last (a 2.x prior runs before it)
    first = next(i for i, (p, _) in enumerate(marks) if p == phase)
    start = marks[first - 1][1] if first else handle.started_at or marks[0][1]
    warmup = marks[first][1] - start
    later = [b[1] - a[1] for a, b in zip(marks[first:], marks[first + 1 :], strict=False)]
    if not later:
        return [f"torch.compile warm-up: the first step took {warmup:.1f} s (compiling the denoiser)."]
    step = statistics.median(later)
    return [
        f"torch.compile warm-up: the first step took {warmup:.1f} s (compiling the denoiser), the next ones "
        f"{step:.2f} s each. A new size or batch compiles again once."
    ]


def _check_limits(spec, params) -> None:
    """The model's own limits, beyond the params' ranges (e.g. how long a video it can make)."""
    frames = getattr(params, "frames", None)
    if frames is None:
        return
    most, least = spec.limits.get("frames"), spec.limits.get("min_frames")
    fps = getattr(params, "fps", 24) or 24
    if most and frames > most:
        raise InvalidParams(
            f"{spec.title} makes at most {most} frames ({most / fps:.1f} s at {fps} fps); got {frames}. "
            "Ask for fewer frames or pick a longer model."
        )
    if least and frames < least:
        raise InvalidParams(f"{spec.title} needs at least {least} frames; got {frames}.")


def _out_of_memory_message(manager: ModelManager, job: Job, params: ImageTaskParams) -> str:
    """What to try next, given the model's family and the memory options it ran with."""
    from kubin.runtime.presets import apply_preset, out_of_memory_advice

    family = family_of(manager.spec(job.model_id))
    options = apply_preset(manager.memory, family)
    advice = out_of_memory_advice(family, options, video=params.output_kind == "video")
    return f"Out of memory: try {advice}. The memory it held is freed; the next job can run."


def _said(exc: BaseException) -> str:
    """An unexpected exception for the user: its type and message, without the server's paths (the log has
    them, with the traceback)."""
    return f"{type(exc).__name__}: {without_paths(str(exc))}"


def _is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()
