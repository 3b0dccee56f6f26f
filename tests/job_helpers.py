"""Step gates for tests: hold a job's worker inside a chosen step, or cancel the job there, through the
job's events instead of sleeping and polling, so that no test's outcome depends on how busy the machine is.

Pass them to `engine.submit(job, subscriber=...)`: subscribed before the job is queued, they see every step.
"""

from __future__ import annotations

import threading

from kubin.engine import JobEvent

GATE_TIMEOUT = 120  # seconds: only a hung worker ever waits this long


class StepGate:
    """Holds the worker inside step `step` until the `with` block ends (or `open()`):

    with StepGate() as gate:
        running = engine.submit(job, subscriber=gate)
        gate.wait_reached()
        ...  # the job is RUNNING, at step 1, and stays there
    """

    def __init__(self, step: int = 1):
        self.step = step
        self._reached, self._release = threading.Event(), threading.Event()

    def __call__(self, event: JobEvent) -> None:
        if event.kind == "progress" and event.step == self.step:
            self._reached.set()
            self._release.wait(GATE_TIMEOUT)

    def wait_reached(self) -> None:
        assert self._reached.wait(GATE_TIMEOUT), f"the job never reached step {self.step}"

    def open(self) -> None:
        self._release.set()

    def __enter__(self) -> StepGate:
        return self

    def __exit__(self, *exc) -> None:
        self.open()


class CancelAtStep:
    """Cancels the running job from inside step `step` (or at its first result with at="result") and
    records the step it asked at, so a test can check that the job stopped within one step of it."""

    def __init__(self, engine, step: int = 1, at: str = "progress"):
        self.engine, self.step, self.at = engine, step, at
        self.requested_at: int | None = None

    def __call__(self, event: JobEvent) -> None:
        if self.requested_at is not None or event.kind != self.at:
            return
        if event.kind == "progress" and event.step != self.step:
            return
        running = self.engine.current()  # called on the worker thread: the job this event belongs to
        self.requested_at = running.step
        self.engine.cancel(running)
