"""Where a running job stands, in words a user reads: the stage it is in ("Prior 20/25", "Decoder 3/500",
"Rendering the turntable…") and the time left, estimated from the job's own timed steps.

A job's first step is never timed: it also holds whatever came before it (loading the model, encoding the
prompt, compiling), so the time left is unknown until a later step has been timed, instead of a guess made
from the load. Each phase is timed on its own (a prior step and a decoder step cost differently); while a
later phase has not run yet, only the stage under way has a time left.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from kubin.models.base import Phase


@dataclass(frozen=True)
class Stage:
    """What a job does now: a phase's title, how many of its steps are done, in which batch (from 1)."""

    title: str
    done: int
    steps: int
    counted: bool = True
    batch: int = 1
    batches: int = 1

    def __str__(self) -> str:
        text = f"{self.title} {min(self.done, self.steps)}/{self.steps}" if self.counted else f"{self.title}…"
        return f"Batch {self.batch}/{self.batches} · {text}" if self.batches > 1 else text


@dataclass(frozen=True)
class TimeLeft:
    seconds: float
    whole_job: bool  # False: a later phase has not run yet, so this is the stage under way only


@dataclass
class StepTracker:
    """Counts a job's steps against its phases (the same list for each of `batches` batches) and times them.

    The engine calls `start_batch` before each batch and `step` for every step a model reports. A step
    whose phase is not the one under way moves on to the next phase of that name, so a model that reports a
    phase fewer times than declared still shows the right one.
    """

    phases: list[Phase] = field(default_factory=list)
    batches: int = 1
    batch: int = 0
    index: int = 0  # the phase under way, in `phases`
    done: int = 0  # its steps done
    last_step_at: float | None = None
    durations: dict[str, list[float]] = field(default_factory=dict)  # phase name -> timed steps (s)

    def __post_init__(self) -> None:
        self.phases = [p for p in self.phases if p.steps > 0] or [Phase("denoise", 0)]

    @property
    def total(self) -> int:
        return self.batches * sum(p.steps for p in self.phases)

    def start_batch(self, batch: int) -> None:
        self.batch, self.index, self.done = batch, 0, 0

    def step(self, name: str, at: float) -> Stage:
        """Record one finished step of phase `name` at time `at` (monotonic); returns the stage now."""
        if self.last_step_at is not None:
            self.durations.setdefault(name, []).append(at - self.last_step_at)
        self.last_step_at = at
        current = self.phases[self.index]
        if current.name != name or self.done >= current.steps:
            later = (i for i in range(self.index + 1, len(self.phases)) if self.phases[i].name == name)
            index = next(later, None)
            if index is not None:
                self.index, self.done = index, 0
        self.done += 1
        return self.stage()

    def _position(self) -> tuple[int, int, int]:
        """(phase index, steps done in it, batch) of the work under way: once a phase has all its steps,
        the next one (or the next batch's first) is under way."""
        index, done, batch = self.index, self.done, self.batch
        if done >= self.phases[index].steps:
            if index + 1 < len(self.phases):
                index, done = index + 1, 0
            elif batch + 1 < self.batches:
                index, done, batch = 0, 0, batch + 1
        return index, done, batch

    def stage(self) -> Stage:
        index, done, batch = self._position()
        phase = self.phases[index]
        return Stage(phase.title, done, phase.steps, phase.counted, batch + 1, self.batches)

    def time_left(self, now: float) -> TimeLeft | None:
        """The time left from the steps timed so far (median per phase); None while the stage under way has
        no timed step."""
        if self.last_step_at is None:
            return None
        index, done, batch = self._position()
        rate = {name: statistics.median(times) for name, times in self.durations.items()}
        current = self.phases[index]
        if current.name not in rate:
            return None
        later = [(p.name, p.steps) for p in self.phases[index + 1 :]]
        later += [(p.name, p.steps) for p in self.phases] * (self.batches - batch - 1)
        # The step under way has been running since the last one ended.
        stage_left = max(0.0, (current.steps - done) * rate[current.name] - (now - self.last_step_at))
        if all(name in rate for name, _ in later):
            return TimeLeft(stage_left + sum(steps * rate[name] for name, steps in later), True)
        return TimeLeft(stage_left, False)
