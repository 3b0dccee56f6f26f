"""The job history: every generation job the engine queued (from the UI, the REST API or the command line
talking to a server), its state, owner, model, prompt, parameters and saved outputs, kept in one SQLite
file in the output folder, so it survives a restart.

The output files stay the source of truth: an entry lists only outputs that were saved whole (the engine
writes each under a temp name and renames it before it tells anyone), says when they were deleted since,
and `rebuild` indexes an output folder again from the metadata in its files. Jobs left queued or running by
a server that stopped become "interrupted" at the next start; the queued ones are offered for re-queueing.
No Gradio here: the UI and the API read it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams

FILE_NAME = "kubin-history.sqlite3"
INTERRUPTED = "interrupted"  # queued or running when the server stopped
STATES = ("queued", "running", "done", "failed", "cancelled", INTERRUPTED)
OUTPUT_SUFFIXES = (".png", ".mp4", ".glb")  # one per output; previews and a mesh's other files go with them
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER,            -- the engine's id in the run that queued it (ids restart with the server)
    created REAL NOT NULL,     -- seconds since the epoch
    finished REAL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '{}',   -- JSON: what a re-run submits
    error TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',  -- JSON: [{"path": relative, "thumb": relative}], saved whole
    offered INTEGER NOT NULL DEFAULT 0,  -- queued when the server stopped: offered for re-queueing
    source TEXT NOT NULL DEFAULT 'engine'  -- 'engine', or 'files' for an entry rebuilt from an output file
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""


@dataclass
class HistoryEntry:
    id: int
    job_id: int | None
    created: float
    finished: float | None
    state: str
    owner: str
    task: str
    model: str
    prompt: str
    params: dict[str, Any]
    error: str | None
    outputs: list[dict[str, str]]  # relative "path" and "thumb" of each saved output
    offered: bool
    source: str
    missing: int = 0  # outputs whose file is gone since
    files: list[Path] = field(default_factory=list)  # the outputs' absolute paths
    thumbs: list[Path] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "created": self.created,
            "finished": self.finished,
            "state": self.state,
            "owner": self.owner,
            "task": self.task,
            "model": self.model,
            "prompt": self.prompt,
            "params": self.params,
            "error": self.error,
            "outputs": [o["path"] for o in self.outputs],
            "missing_outputs": self.missing,
            "offered_for_requeue": self.offered,
            "source": self.source,
        }


class History:
    """The history in `<output_dir>/kubin-history.sqlite3` (WAL mode). Writes go through one connection
    under a lock; each read opens its own connection, so readers never wait for the writer. Opening it
    marks what a previous run left queued or running as interrupted (see the module's doc)."""

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir / FILE_NAME
        self._lock = threading.Lock()
        self._db = self._connect()
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        self.recovered = self._recover()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint, never corrupt
        db.row_factory = sqlite3.Row
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _recover(self) -> int:
        """Jobs a previous run left queued (offered again) or running: interrupted. Returns how many."""
        with self._write() as db:
            db.execute("UPDATE jobs SET offered = 1 WHERE state = 'queued'")
            cursor = db.execute(
                "UPDATE jobs SET state = ?, finished = COALESCE(finished, ?), "
                "error = COALESCE(error, 'Kubin stopped before this job finished.') "
                "WHERE state IN ('queued', 'running')",
                (INTERRUPTED, time.time()),
            )
            return cursor.rowcount

    # --- recording (the engine calls these) --------------------------------------------------------
    def track(self, handle) -> int:
        """Record a job the engine is about to queue and follow its events until it finishes; returns the
        entry's id (also kept as `handle.history_id`)."""
        params = handle.params.to_dict() | {"seed": handle.seed}
        prompt = params.get("prompt") or " | ".join(params.get("prompts") or [])
        with self._write() as db:
            entry_id = db.execute(
                "INSERT INTO jobs (job_id, created, state, owner, task, model, prompt, params) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (handle.id, time.time(), handle.job.owner, handle.job.task, handle.job.model_id, prompt,
                 json.dumps(params, ensure_ascii=False, default=str)),
            ).lastrowid  # fmt: skip
        handle.history_id = entry_id
        outputs: list[dict[str, str]] = []

        def on_event(event) -> None:  # on the engine's worker thread: one quick write per state or output
            if event.kind == "started":
                self._update(entry_id, state="running")
            elif event.kind == "result":
                result = event.result
                outputs.append({"path": self._relative(result.path),
                                "thumb": self._relative(result.preview or result.path)})  # fmt: skip
                self._update(entry_id, outputs=json.dumps(outputs))
            elif event.kind == "finished":
                error = str(event.error) if event.error is not None else None
                self._update(entry_id, state=event.state, error=error, finished=time.time())

        handle.history_unsubscribe = handle.subscribe(on_event)
        return entry_id

    def interrupt(self, handle) -> None:
        """A queued job the engine drops as it shuts down: offered again at the next start."""
        entry_id = getattr(handle, "history_id", None)
        if entry_id is None:
            return
        handle.history_unsubscribe()
        self._update(entry_id, state=INTERRUPTED, offered=1, finished=time.time(),
                     error="Kubin stopped before this job started.")  # fmt: skip

    def mark_requeued(self, entry_id: int) -> None:
        """The entry's job was queued again: no longer offered."""
        self._update(entry_id, offered=0)

    def _update(self, entry_id: int, **values: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in values)
        with self._write() as db:
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values.values(), entry_id))

    def _relative(self, path: str | Path) -> str:
        try:
            return Path(path).resolve().relative_to(self.output_dir.resolve()).as_posix()
        except ValueError:
            return str(path)

    # --- reading ----------------------------------------------------------------------------------
    def query(
        self, limit: int = 50, offset: int = 0, state: str = "", q: str = ""
    ) -> tuple[list[HistoryEntry], int]:
        """A page of entries, newest first, and how many match in all: of one `state` ("offered": those
        offered for re-queueing), and with `q` in the prompt, model, task or owner."""
        where, args = [], []
        if state == "offered":
            where.append("offered = 1")
        elif state:
            if state not in STATES:
                raise InvalidParams(f"Unknown state {state!r}; use one of {', '.join(STATES)} or offered.")
            where.append("state = ?")
            args.append(state)
        if q:
            where.append("(prompt LIKE ? OR model LIKE ? OR task LIKE ? OR owner LIKE ?)")
            args += [f"%{q}%"] * 4
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with closing(self._connect()) as db:
            total = db.execute(f"SELECT COUNT(*) FROM jobs{clause}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT * FROM jobs{clause} ORDER BY created DESC, id DESC LIMIT ? OFFSET ?",
                [*args, max(0, int(limit)), max(0, int(offset))],
            ).fetchall()
        return [self._entry(row) for row in rows], total

    def entry(self, entry_id: int) -> HistoryEntry | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (entry_id,)).fetchone()
        return self._entry(row) if row is not None else None

    def _entry(self, row: sqlite3.Row) -> HistoryEntry:
        outputs = json.loads(row["outputs"])
        files = [self.output_dir / o["path"] for o in outputs]
        thumbs = [self.output_dir / o["thumb"] for o in outputs]
        return HistoryEntry(
            row["id"], row["job_id"], row["created"], row["finished"], row["state"], row["owner"], row["task"],
            row["model"], row["prompt"], json.loads(row["params"]), row["error"], outputs, bool(row["offered"]),
            row["source"], sum(not f.is_file() for f in files), files, thumbs,
        )  # fmt: skip

    # --- rebuilding from the files ----------------------------------------------------------------
    def rebuild(self) -> int:
        """Index the output files no entry lists, from the metadata saved in them (one entry per output, done);
        returns how many were added. Files without Kubin metadata are skipped."""
        from kubin.outputs import read_output_metadata

        with closing(self._connect()) as db:
            known = {
                o["path"] for (text,) in db.execute("SELECT outputs FROM jobs") for o in json.loads(text)
            }
        added = []
        for path in sorted(self.output_dir.rglob("*")):
            if path.suffix.lower() not in OUTPUT_SUFFIXES or path.name.startswith(".") or not path.is_file():
                continue
            relative = self._relative(path)
            if relative in known:
                continue
            try:
                meta = read_output_metadata(path)
            except Exception:
                continue
            if not isinstance(meta, dict) or "task" not in meta:
                continue
            params = meta.get("params") or {}
            prompt = meta.get("prompt") or params.get("prompt") or " | ".join(params.get("prompts") or [])
            preview = next(
                (p for p in (path.with_suffix(".webp"), path.with_suffix(".gif")) if p.is_file()), path
            )
            created = _timestamp(meta.get("created")) or path.stat().st_mtime
            outputs = [{"path": relative, "thumb": self._relative(preview)}]
            added.append((created, created, meta["task"], str(meta.get("model", "")), prompt,
                          json.dumps(params, ensure_ascii=False, default=str), json.dumps(outputs)))  # fmt: skip
        with self._write() as db:
            db.executemany(
                "INSERT INTO jobs (created, finished, state, task, model, prompt, params, outputs, source) "
                "VALUES (?, ?, 'done', ?, ?, ?, ?, ?, 'files')",
                added,
            )
        return len(added)


def _timestamp(text: Any) -> float | None:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None
