"""Job events on tiny-kd22: a client subscribes to its job and hears every step, notice, saved result and
the end, in order, with nothing missed when it subscribes late; and extensions' before_job hooks see typed
parameters as well as dicts."""

import logging
import textwrap
import threading

import pytest
from job_helpers import CancelAtStep, StepGate

from kubin.engine import CANCELLED, DONE, RUNNING, FinishedEvent, Job, JobHandle, ProgressEvent
from kubin.extensions.loader import discover, load_all
from kubin.params import Text2ImageParams

SMALL = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2, "prior_steps": 2}


def t2i(**values) -> Job:
    return Job("t2i", "tiny-kd22", {**SMALL, **values})


def kinds(events) -> list[str]:
    return [e.kind for e in events]


def test_a_subscriber_hears_the_start_every_step_each_result_and_the_end_in_order(engine):
    heard = []
    handle = engine.submit(t2i(seed=1, batch_count=2), subscriber=heard.append)
    handle.wait(120)

    progress = [e for e in heard if isinstance(e, ProgressEvent)]
    assert heard[0].kind == "started" and heard[-1] == FinishedEvent(handle.id, DONE, None)
    assert [e.step for e in progress] == list(range(1, handle.total_steps + 1))
    assert {e.total for e in progress} == {handle.total_steps} == {8}
    assert [e.phase for e in progress[:4]] == ["prior", "prior", "decoder", "decoder"]
    results = [e.result for e in heard if e.kind == "result"]
    assert results == handle.results and len(results) == 2
    # each result comes right after the steps of its batch, before the next batch starts
    assert kinds(heard).index("result") == heard.index(progress[3]) + 1


def test_a_result_event_comes_once_its_file_is_complete_on_disk(engine):
    seen_on_disk = []
    handle = engine.submit(
        t2i(seed=2),
        subscriber=lambda e: e.kind == "result" and seen_on_disk.append(e.result.path.stat().st_size > 0),
    )
    handle.wait(120)

    assert seen_on_disk == [True]


def test_a_late_subscriber_gets_every_event_so_far_replayed_then_the_rest(engine):
    early = []
    handle = engine.submit(t2i(seed=3), subscriber=early.append)
    handle.wait(120)

    late = []
    handle.subscribe(late.append)

    assert late == early and late[-1].kind == "finished"
    assert list(handle.events(timeout=1)) == early  # the iterator replays too, and ends at "finished"


def test_events_can_be_read_as_an_iterator_that_ends_when_the_job_does(engine):
    handle = engine.submit(t2i(seed=4))

    events = list(handle.events(timeout=120))

    assert kinds(events)[0] == "started" and kinds(events)[-1] == "finished"
    assert handle.state == DONE and [e.result for e in events if e.kind == "result"] == handle.results


def test_an_iterator_on_a_silent_job_times_out():
    handle = JobHandle(1, t2i(), Text2ImageParams(**SMALL), seed=1, total_steps=4)  # never queued

    with pytest.raises(TimeoutError, match="sent no event in 0.01 s"):
        next(handle.events(timeout=0.01))


def test_a_failing_subscriber_is_logged_and_neither_the_job_nor_other_subscribers_notice(engine, caplog):
    def broken(event):
        raise RuntimeError("subscriber bug")

    heard = []
    with caplog.at_level(logging.ERROR, logger="kubin.engine"):
        handle = engine.submit(t2i(seed=5), subscriber=broken)
        handle.subscribe(heard.append)
        handle.wait(120)

    assert handle.state == DONE and len(handle.results) == 1
    assert heard[-1].kind == "finished"
    assert "subscriber bug" in caplog.text and "the job goes on" in caplog.text


def test_cancelling_from_a_progress_event_stops_the_job_at_that_step(engine):
    cancel = CancelAtStep(engine, step=1)
    handle = engine.submit(t2i(seed=6, steps=50), subscriber=cancel)

    events = list(handle.events(timeout=120))

    assert handle.state == CANCELLED and events[-1] == FinishedEvent(handle.id, CANCELLED, handle.error)
    assert cancel.requested_at == handle.step == 1
    assert [e.step for e in events if e.kind == "progress"] == [1]


def test_a_job_cancelled_in_the_queue_tells_its_subscribers_it_finished_cancelled(engine):
    with StepGate() as gate:
        running = engine.submit(t2i(seed=7), subscriber=gate)
        gate.wait_reached()
        queued = engine.submit(t2i(seed=8))
        engine.cancel(queued)

        assert running.state == RUNNING
        assert kinds(queued.events(timeout=1)) == ["finished"]
        assert "before it started" in str(queued.error)
    assert running.wait(120) and running.state == DONE


def test_input_notices_are_sent_as_events_to_every_subscriber(engine, photo):
    handle = engine.submit(
        Job("i2i", "tiny-kd22", {"prompt": "a red cat", "init_image": photo, "steps": 2, "seed": 1})
    )

    notices = [e.text for e in handle.events(timeout=120) if e.kind == "notice"]

    assert any("100x70" in text for text in notices)
    assert all(text in notices for text in handle.notices)


def test_live_events_come_from_the_engines_worker_thread(engine):
    threads = set()
    handle = engine.submit(t2i(seed=9), subscriber=lambda e: threads.add(threading.current_thread().name))
    handle.wait(120)

    assert threads == {"kubin-engine"}


# --- extensions' before_job sees typed parameters too ----------------------------------------------
def test_a_before_job_hook_rewrites_the_prompt_of_typed_parameters(engine, tmp_path):
    folder = tmp_path / "extensions" / "styles"
    folder.mkdir(parents=True)
    (folder / "extension.yaml").write_text("name: styles\nversion: 0.1.0\nkubin: '>=0.1'\n")
    (folder / "main.py").write_text(
        textwrap.dedent("""
        def setup(api):
            api.on("before_job", lambda task, params: {**params, "prompt": params["prompt"] + ", oil painting"})
        """)
    )
    engine.extensions = load_all(discover(tmp_path / "extensions"))

    handle = engine.run(Job("t2i", "tiny-kd22", Text2ImageParams(**SMALL, seed=3)))

    assert isinstance(handle.params, Text2ImageParams)
    assert handle.params.prompt == "a red cat, oil painting"
    assert handle.results[0].meta["params"]["prompt"] == "a red cat, oil painting"
    assert handle.params.steps == 2 and handle.results[0].seed == 3  # the rest as given


def test_progress_names_the_stage_under_way_and_times_only_steps_after_the_first(engine):
    heard = []

    def listen(event) -> None:
        if isinstance(event, ProgressEvent):
            heard.append((str(event.stage), handle.time_left(), handle.eta_seconds()))

    handle = engine.submit(t2i(seed=5, steps=3, batch_count=2), subscriber=listen)
    handle.wait(120)

    stages = [stage for stage, _, _ in heard]
    assert stages[:5] == ["Batch 1/2 · Prior 1/2", "Batch 1/2 · Decoder 0/3", "Batch 1/2 · Decoder 1/3",
                          "Batch 1/2 · Decoder 2/3", "Batch 2/2 · Prior 0/2"]  # fmt: skip
    assert stages[-1] == "Batch 2/2 · Decoder 3/3"
    assert not any("/10" in stage for stage in stages)  # never the sum of every step of the job
    # The first step also holds the model's load: nothing is timed from it.
    assert heard[0][1:] == (None, None)
    # By the second batch every phase has been timed: the time left covers the whole job.
    assert all(left is not None and left.whole_job and eta is not None for _, left, eta in heard[-4:])
