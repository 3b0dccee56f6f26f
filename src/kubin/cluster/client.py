"""The front end's side of the cluster: starts the Ray driver process (kubin.cluster.bridge), runs jobs
through it as streams of events, watches that the cluster is there, and reconnects when it comes back.

No Ray here: the front end keeps answering (a 503 with a message, a line on the page) whatever becomes
of the cluster.
"""

from __future__ import annotations

import itertools
import logging
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from kubin.cluster import ClusterJob, ClusterSettings
from kubin.cluster.local import LocalRay, start_local_ray
from kubin.errors import ClusterUnavailable, JobCancelled, KubinError

log = logging.getLogger(__name__)
WATCH_PERIOD_S = 2.0  # how often the front end asks whether the cluster is there
STATUS_TIMEOUT_S = 10.0  # a status without an answer within this is one strike against the cluster
STRIKES = 2  # strikes in a row (no answer, or an error) before the cluster counts as gone
RECONNECT_PERIOD_S = 5.0


class ReplicaLost(Exception):
    """The replica running a job died (killed, out of memory, node lost): the job may run again."""


class Cluster:
    def __init__(self, settings: ClusterSettings, worker: dict[str, Any], deploy: bool = True):
        """`worker`: what each replica's model manager is made with (device, dtype, sources, memory);
        without `deploy`, only to look at the cluster (kubin cluster status)."""
        self.deploy = deploy
        self.settings = settings
        self.worker = worker
        self.address = settings.address
        self.local: LocalRay | None = None
        self.problem: str | None = None  # why jobs cannot run now (None: they can)
        self.info: dict[str, Any] = {}  # what the driver said when it connected
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._inboxes: dict[str, queue.Queue] = {}
        self._lock = threading.Condition()  # guards the connection and `problem`; notified when they change
        self._reconnecting = False  # the head answers again and a new driver is being set up
        self._heard = 0.0  # monotonic time of the driver's last message (a job's event, a status)
        self._shipped: set[str] = set()  # hashes of the LoRA files the driver holds
        self._send_lock = threading.Lock()
        self._keys = itertools.count(1)
        self._closed = threading.Event()
        self._wake = threading.Event()  # the watchdog's next round now (a job waits for the reconnect)
        self._watcher: threading.Thread | None = None

    @property
    def slots(self) -> int:
        return self.settings.slots

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Cluster:
        """Connect (starting a local Ray instance for `local`) and deploy the workers; a cluster that cannot
        be reached or set up raises ClusterUnavailable with what to check."""
        if self.address == "local":
            self.local = start_local_ray(self.settings.local_cpus)
            self.address = self.local.address
        try:
            self._connect()
        except BaseException:
            self.close()
            raise
        self._watcher = threading.Thread(target=self._watch, name="kubin-cluster-watch", daemon=True)
        self._watcher.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._disconnect("Kubin is shutting down.")
        if self.local is not None:
            self.local.stop()

    def _options(self) -> dict[str, Any]:
        s = self.settings
        deployment: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": s.replica_cpus, "num_gpus": s.replica_gpus},
        }
        if s.max_replicas and s.max_replicas > (s.replicas or 1):
            deployment["autoscaling_config"] = {
                "min_replicas": s.replicas or 1,
                "max_replicas": s.max_replicas,
                "target_ongoing_requests": 1,
            }
        else:
            deployment["num_replicas"] = s.replicas
        worker = dict(self.worker, max_models=s.max_models_per_replica)
        return {"address": self.address, "deployment": deployment, "worker": worker, "deploy": self.deploy}

    def _connect(self) -> None:
        reachable(self.address)
        with self._lock:
            self._reconnecting = self.problem is not None
        try:
            self._start_driver()
        finally:
            with self._lock:
                self._reconnecting = False
                self._lock.notify_all()

    def _start_driver(self) -> None:
        ours, theirs = socket.socketpair()
        process = subprocess.Popen(
            [sys.executable, "-m", "kubin.cluster.bridge", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            start_new_session=True,
        )
        theirs.close()
        conn = Connection(ours.detach())
        conn.send(self._options())
        timeout = self.settings.connect_timeout_s
        try:
            answer = conn.recv() if conn.poll(timeout) else None
        except (EOFError, OSError):
            answer = ("failed", "the Ray driver process ended")
        if answer is None or answer[0] != "ready":
            _kill(process)
            conn.close()
            why = answer[1] if answer else f"no answer within {timeout:.0f} s"
            raise ClusterUnavailable(
                f"Could not set up the Ray cluster at {self.settings.address} ({why}). Check the address, that "
                "Ray runs there with Kubin installed, and that it has the CPUs/GPUs the replicas ask for "
                "(cluster.replicas x cluster.replica_cpus / replica_gpus)."
            )
        with self._lock:
            self._process, self._conn, self.info, self.problem = process, conn, answer[1], None
            self._shipped = set()
            self._heard = time.monotonic()
        threading.Thread(target=self._read, args=(conn,), name="kubin-cluster-read", daemon=True).start()
        log.info("Connected to the Ray cluster at %s: %s", self.address, answer[1])

    def _disconnect(self, why: str) -> None:
        with self._lock:
            process, conn, self._process, self._conn = self._process, self._conn, None, None
        if conn is not None:
            try:
                with self._send_lock:
                    conn.send(("stop",))
            except OSError:
                pass
            conn.close()
        if process is not None:
            _kill(process)
        for inbox in list(self._inboxes.values()):
            inbox.put(("end", None, ("gone", why)))

    def _read(self, conn: Connection) -> None:
        """Hand each message from the driver to the one waiting for it."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            self._heard = time.monotonic()
            inbox = self._inboxes.get(message[1])
            if inbox is not None:
                inbox.put(message)
        if self._conn is conn:  # not a disconnect of ours: the driver ended
            self._lost(f"The Ray cluster at {self.settings.address} is not reachable (its driver ended).")

    def _lost(self, why: str) -> None:
        if self._closed.is_set():
            return
        with self._lock:
            if self.problem is None:
                log.error("%s New jobs are refused until it is back.", why)
            self.problem = why
        self._disconnect(why)

    def _watch(self) -> None:
        """Ask every WATCH_PERIOD_S whether the cluster answers; when it does not, say so and reconnect.

        A head that refuses connections (Ray stopped) or a driver that ended is a lost cluster at once. No
        answer in time, or an error, is only a strike: on a busy machine a live cluster can be slow to
        answer, and declaring it lost would stop its running jobs. STRIKES in a row, with nothing heard from
        the cluster meanwhile, and it is lost."""
        strikes = 0
        while not self._closed.is_set():
            self._wake.wait(WATCH_PERIOD_S if self.problem is None else RECONNECT_PERIOD_S)
            self._wake.clear()
            if self._closed.is_set():
                return
            if self.problem is None:
                asked = time.monotonic()
                refused = knock(self._head()) == "refuses"
                answer = None if refused else self._ask_status(STATUS_TIMEOUT_S)
                if answer is not None and "error" not in answer:
                    strikes = 0
                    continue
                if not refused and answer is None and self._heard > asked:
                    continue  # a job's events came meanwhile: slow, but there
                strikes += 1
                if refused:
                    why = "its head refuses connections"
                else:
                    why = answer["error"] if answer else f"no answer within {STATUS_TIMEOUT_S:.0f} s"
                if refused or strikes >= STRIKES:
                    strikes = 0
                    self._lost(f"The Ray cluster at {self.settings.address} is not reachable ({why}).")
                else:
                    log.warning(
                        "The Ray cluster at %s did not answer (%s); asking again.", self.settings.address, why
                    )
            else:
                try:
                    self._connect()
                    log.info("The Ray cluster at %s is back.", self.settings.address)
                except ClusterUnavailable as exc:
                    log.debug("Still no cluster: %s", exc)

    # --- jobs and status ---------------------------------------------------------------------------
    def _send(self, message: tuple) -> None:
        conn = self._conn
        if conn is None:
            raise ClusterUnavailable(self.problem or "The cluster is not connected.")
        try:
            with self._send_lock:
                conn.send(message)
        except OSError:
            raise ClusterUnavailable(self.problem or "The cluster is not connected.") from None

    def _head(self) -> str:
        """HOST:PORT of the cluster's head ("" for `auto` before the driver said where it is)."""
        return self.info.get("gcs", "") if self.address == "auto" else self.address

    def check(self) -> None:
        """Raise ClusterUnavailable when jobs cannot run now. A job that comes while the cluster's head accepts
        connections again waits (as long as connecting may take at start) for the front end to reconnect
        rather than being refused: the cluster is back, only its driver is still being set up."""
        deadline = time.monotonic() + self.settings.connect_timeout_s
        while self.problem is not None and not self._closed.is_set() and time.monotonic() < deadline:
            if not self._reconnecting and knock(self._head(), timeout=1.0) != "accepts":
                break  # still gone: say so now
            self._wake.set()  # reconnect now rather than at the watchdog's next round
            with self._lock:
                self._lock.wait_for(
                    lambda: self.problem is None, timeout=min(2.0, deadline - time.monotonic())
                )
        problem = self.problem
        if problem is not None:
            raise ClusterUnavailable(problem + " Jobs can run again once it is back.")

    def run(self, job: ClusterJob, cancelled: Callable[[], bool]) -> Iterator[dict[str, Any]]:
        """The events of `job` on a replica, as they come. Raises JobCancelled once `cancelled()` (the
        replica is told to stop at its next step), ReplicaLost when the replica died, ClusterUnavailable
        when the cluster went away, KubinError for anything else the cluster said."""
        self.check()
        inbox: queue.Queue = queue.Queue()
        self._inboxes[job.key] = inbox
        ended = False
        try:
            self._ship_loras(job)
            self._send(("run", job.key, job))
            while True:
                if cancelled():
                    raise JobCancelled("cancelled")
                try:
                    message = inbox.get(timeout=0.05)
                except queue.Empty:
                    continue
                if message[0] == "event":
                    yield message[2]
                    continue
                ended = True
                outcome = message[2]
                if outcome is None:
                    return
                kind, text = outcome
                if kind == "cancelled":
                    raise JobCancelled("cancelled")
                if kind == "lost":
                    raise ReplicaLost(text)
                if kind == "gone":
                    raise ClusterUnavailable(f"{text} The job stopped there; what it saved is kept.")
                raise KubinError(f"The cluster could not run the job: {text}")
        finally:
            self._inboxes.pop(job.key, None)
            if not ended:
                try:
                    self._send(("cancel", job.key))
                except ClusterUnavailable:
                    pass

    def _ship_loras(self, job: ClusterJob) -> None:
        """Send the driver each adapter file of `job` it does not hold yet (once per file and connection)."""
        for item in job.loras:
            if not item.shared and item.lora.hash not in self._shipped:
                self._send(("lora", item.lora.hash, item.lora.file.path.read_bytes()))
                self._shipped.add(item.lora.hash)

    def _ask_status(self, timeout: float) -> dict[str, Any] | None:
        key = f"status-{next(self._keys)}"
        inbox: queue.Queue = queue.Queue()
        self._inboxes[key] = inbox
        try:
            self._send(("status", key))
            message = inbox.get(timeout=timeout)
            if message[0] == "end":  # disconnected meanwhile
                return {"error": message[2][1]}
            return message[2]
        except (queue.Empty, ClusterUnavailable):
            return None
        finally:
            self._inboxes.pop(key, None)

    def status(self) -> dict[str, Any]:
        """The cluster as the front end sees it: reachable or why not, its replicas (device, loaded models,
        the job each runs), its CPUs and GPUs."""
        base = {"address": self.settings.address, "connected_to": self.address}
        if self.problem is None:
            answer = self._ask_status(STATUS_TIMEOUT_S)
            if answer is not None and "error" not in answer:
                return base | {"available": True, "problem": None} | answer
        return base | {"available": False, "problem": self.problem or "The cluster does not answer.",
                       "replicas": []}  # fmt: skip


def reachable(address: str, timeout: float = 3.0) -> None:
    """A HOST:PORT address where nothing listens is a clear error at once, rather than
    Ray's own retries for a minute."""
    if address in ("local", "auto"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as exc:
        raise ClusterUnavailable(
            f"Nothing answers at the Ray cluster address {address} ({exc.strerror or exc}). Start Ray there "
            "(ray start --head), or use --cluster local to start one on this machine."
        ) from None


def knock(address: str, timeout: float = 3.0) -> str:
    """Whether the cluster's head at HOST:PORT "accepts" a connection, "refuses" it (nothing listens there:
    Ray is stopped), or is "silent" (no answer in time, or no address yet): a busy head is not a gone one."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return "silent"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return "accepts"
    except ConnectionRefusedError:
        return "refuses"
    except OSError:
        return "silent"


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        pass
