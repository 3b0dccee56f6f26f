"""The job history on tiny-kd22: every job with its state and saved outputs, newest first, filtered and
paged; what a stopped server left unfinished is marked at the next start; an output folder is indexed again
from its files; concurrent clients leave a sound database."""

import sqlite3
import threading

import pytest
from job_helpers import CancelAtStep, StepGate

from kubin.engine import Engine, Job
from kubin.errors import InvalidParams
from kubin.history import FILE_NAME, History

SMALL = {"width": 64, "height": 64, "steps": 2, "prior_steps": 2}


def t2i(prompt: str, owner: str = "", **values) -> Job:
    return Job("t2i", "tiny-kd22", {**SMALL, "prompt": prompt, **values}, owner=owner)


@pytest.fixture
def recorded(manager, output_dir):
    """An engine that records into the output folder's history, and that history."""
    history = History(output_dir)
    engine = Engine(manager, output_dir, history=history)
    yield engine, history
    engine.close(wait=True)
    history.close()


def test_every_job_is_listed_newest_first_with_its_state_owner_and_saved_files(recorded):
    engine, history = recorded
    engine.run(t2i("a red fox", owner="ui", batch_size=2))
    with pytest.raises(InvalidParams):
        engine.submit(t2i("refused", width=63))  # refused at submit: never queued, never listed
    cancelled = engine.submit(t2i("a blue bird", owner="api", steps=6), subscriber=CancelAtStep(engine, 2))
    cancelled.wait()

    entries, total = history.query()
    assert total == 2
    assert [(e.prompt, e.state, e.owner, e.model, e.task) for e in entries] == [
        ("a blue bird", "cancelled", "api", "tiny-kd22", "t2i"),
        ("a red fox", "done", "ui", "tiny-kd22", "t2i"),
    ]
    fox = entries[1]
    assert len(fox.files) == 2 and all(f.is_file() for f in fox.files) and fox.missing == 0
    assert fox.params["prompt"] == "a red fox" and fox.params["seed"] >= 0  # enough to run it again
    assert "Cancelled" in entries[0].error

    fox.files[0].unlink()  # the files are the truth: the entry says one is gone
    assert history.entry(fox.id).missing == 1


def test_the_history_is_filtered_by_state_and_text_and_paged(recorded):
    engine, history = recorded
    for prompt in ("a cat", "a dog", "a cat in a hat"):
        engine.run(t2i(prompt))
    assert [e.prompt for e in history.query(q="cat")[0]] == ["a cat in a hat", "a cat"]
    page, total = history.query(limit=2, offset=2)
    assert total == 3 and [e.prompt for e in page] == ["a cat"]
    assert history.query(state="failed") == ([], 0)
    with pytest.raises(Exception, match="Unknown state"):
        history.query(state="nonsense")


def test_a_restart_marks_the_unfinished_jobs_interrupted_and_offers_the_queued_ones_again(
    manager, output_dir
):
    history = History(output_dir)
    engine = Engine(manager, output_dir, history=history)
    with StepGate(step=1) as gate:
        running = engine.submit(t2i("running when it stopped"), subscriber=gate)
        gate.wait_reached()
        engine.submit(t2i("still queued"))
        # The process dies here: nothing more reaches the database (a new History opens it, as a restart).
        again = History(output_dir)
        assert again.recovered == 2
        entries = {e.prompt: e for e in again.query()[0]}
        assert entries["running when it stopped"].state == "interrupted"
        assert not entries["running when it stopped"].offered
        assert entries["still queued"].state == "interrupted" and entries["still queued"].offered
        assert [e.prompt for e in again.query(state="offered")[0]] == ["still queued"]
        again.mark_requeued(entries["still queued"].id)
        assert again.query(state="offered")[1] == 0
        engine.history = None  # the old run's engine is gone
    running.wait()
    engine.close(wait=True)


def test_a_clean_shutdown_offers_the_queued_jobs_again(manager, output_dir):
    history = History(output_dir)
    engine = Engine(manager, output_dir, history=history)
    with StepGate(step=1) as gate:
        engine.submit(t2i("running"), subscriber=gate)
        gate.wait_reached()
        engine.submit(t2i("queued"))
        engine.close()
    engine.close(wait=True)
    entries = {e.prompt: e for e in History(output_dir).query()[0]}
    assert entries["queued"].offered and entries["queued"].state == "interrupted"
    assert entries["running"].state == "cancelled"


def test_rebuild_indexes_the_output_files_from_their_metadata(manager, output_dir):
    engine = Engine(manager, output_dir)  # no history: files only
    engine.run(t2i("made without a history", batch_size=2))
    engine.close(wait=True)
    (output_dir / "t2i" / "notes.png").write_bytes(b"not a kubin image")

    history = History(output_dir)
    assert history.query()[1] == 0
    assert history.rebuild() == 2
    entries, total = history.query()
    assert total == 2
    assert {(e.prompt, e.state, e.model, e.source) for e in entries} == {
        ("made without a history", "done", "tiny-kd22", "files")
    }
    assert all(e.files[0].is_file() for e in entries)
    assert history.rebuild() == 0  # what is listed is not added twice


def test_twenty_jobs_from_four_clients_leave_a_sound_database(recorded, output_dir):
    engine, history = recorded
    reader = History(output_dir)  # a second connection reading while the engine writes

    def client(n: int) -> None:
        handles = [engine.submit(t2i(f"client {n} job {i}", owner=f"c{n}")) for i in range(5)]
        for handle in handles:
            reader.query(q=f"client {n}")
            handle.wait()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    entries, total = history.query(limit=100)
    assert total == 20
    assert all(e.state == "done" and len(e.files) == 1 and e.missing == 0 for e in entries)
    with sqlite3.connect(output_dir / FILE_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
