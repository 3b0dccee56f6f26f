"""The Ray driver of a Kubin front end, in a child process of its own (`python -m kubin.cluster.bridge FD`).

A Ray driver process ends itself when the cluster's GCS has been gone for a minute, and its calls hang
meanwhile; the front end must outlive that. So the front end runs this process and talks to it over a
socket (`multiprocessing.connection`, pickled tuples): it connects to the cluster, deploys the worker
deployment (or finds it deployed with the same options), then runs each job as a streaming call on a
Serve handle with the job's model as the multiplexed model id, and forwards the events.

Messages in:  ("run", key, ClusterJob) · ("cancel", key) · ("status", key) · ("stop",) ·
              ("lora", hash, bytes): a LoRA file, put in the object store for the jobs that name its hash
Messages out: ("ready", info) or ("failed", message) once, then ("event", key, dict) ·
              ("end", key, None | ("lost", message) | ("error", message)) · ("status", key, dict)
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from kubin.cluster import APP_NAME, NAMESPACE

log = logging.getLogger(__name__)


def connect(address: str) -> None:
    import ray

    ray.init(
        address=address,
        namespace=NAMESPACE,
        logging_level=logging.WARNING,
        log_to_driver=False,
        configure_logging=False,
    )


def deploy(options: dict[str, Any]):
    """The worker deployment's handle: deployed now, or the running one when it was deployed with these
    options (or not by Kubin)."""
    import ray
    from ray import serve

    from kubin.cluster.worker import KubinWorker

    board = _board()
    serve.start(proxy_location="Disabled")
    running = serve.status().applications.get(APP_NAME)
    deployed = ray.get(board.get_deployed.remote())
    # Running with these options, or deployed by someone else (a KubeRay RayService, `serve deploy`): use it.
    if running is not None and running.status == "RUNNING" and deployed in (None, options):
        return serve.get_app_handle(APP_NAME), board
    deployment = KubinWorker.options(**options["deployment"])
    handle = serve.run(deployment.bind(**options["worker"]), name=APP_NAME, route_prefix=None)
    ray.get(board.set_deployed.remote(options))
    return handle, board


def _board():
    from kubin.cluster.worker import BOARD, StatusBoard

    return StatusBoard.options(
        name=BOARD, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()


def gcs_address() -> str:
    """HOST:PORT of the cluster's head (what `auto` found), which the front end watches."""
    import ray

    return str(ray.get_runtime_context().gcs_address)


def cluster_resources() -> dict[str, float]:
    import ray

    return {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}


class Bridge:
    def __init__(self, conn: Connection, handle, board):
        self.conn, self.handle, self.board = conn, handle, board
        self.streams: dict[str, Any] = {}
        self.cancelled: set[str] = set()
        self.loras: dict[str, Any] = {}  # LoRA file hash -> ObjectRef of its bytes
        self._send_lock = threading.Lock()

    def send(self, message: tuple) -> None:
        with self._send_lock:
            self.conn.send(message)

    def serve_forever(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                return  # the front end has gone
            kind = message[0]
            if kind == "run":
                threading.Thread(target=self.run, args=message[1:], daemon=True).start()
            elif kind == "cancel":
                self.cancel(message[1])
            elif kind == "lora":
                import ray

                self.loras[message[1]] = ray.put(message[2])
            elif kind == "status":
                threading.Thread(target=self.status, args=message[1:], daemon=True).start()
            elif kind == "stop":
                return

    def run(self, key: str, job) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError
        from ray.serve.exceptions import RequestCancelledError

        try:
            for item in job.loras:
                if not item.shared:
                    item.data = self.loras[item.lora.hash]
            stream = self.handle.options(multiplexed_model_id=job.model_id, stream=True).run.remote(job)
            self.streams[key] = stream
            if key in self.cancelled:
                stream.cancel()
            for event in stream:
                self.send(("event", key, event))
            self.send(("end", key, None))
        except RequestCancelledError:
            self.send(("end", key, ("cancelled", "cancelled")))
        except (RayActorError, ActorUnavailableError) as exc:
            self.send(("end", key, ("lost", _first_line(exc))))
        except ray.exceptions.RayError as exc:
            self.send(("end", key, ("lost" if _replica_gone(exc) else "error", _first_line(exc))))
        except Exception as exc:
            log.exception("Job %s failed in the bridge", key)
            self.send(("end", key, ("error", f"{type(exc).__name__}: {_first_line(exc)}")))
        finally:
            self.streams.pop(key, None)
            self.cancelled.discard(key)

    def cancel(self, key: str) -> None:
        self.cancelled.add(key)
        stream = self.streams.get(key)
        if stream is not None:
            stream.cancel()

    def status(self, key: str) -> None:
        import ray
        from ray import serve

        try:
            app = serve.status().applications.get(APP_NAME)
            deployments = {}
            if app is not None:
                for name, dep in app.deployments.items():
                    deployments[name] = {
                        "status": str(dep.status.value if hasattr(dep.status, "value") else dep.status),
                        "replica_states": {str(k): v for k, v in dep.replica_states.items()},
                    }
            replicas = ray.get(self.board.replicas.remote(), timeout=10)
            answer = {
                "app": str(
                    app.status.value if app and hasattr(app.status, "value") else getattr(app, "status", "")
                ),
                "deployments": deployments,
                "replicas": sorted(replicas, key=lambda r: r["replica"]),
                "resources": cluster_resources(),
            }
            self.send(("status", key, answer))
        except Exception as exc:
            self.send(("status", key, {"error": _first_line(exc)}))


def _replica_gone(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(
        word in text for word in ("actor died", "actordied", "unavailable", "worker died", "node died")
    )


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def main(argv: list[str]) -> int:
    fd = int(argv[0])
    conn = Connection(socket.socket(fileno=fd).detach())
    options: dict[str, Any] = conn.recv()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.monotonic()
    try:
        connect(options["address"])
        resources = cluster_resources()
        if options.get("deploy", True):
            options = resolve_auto(options, resources)
            handle, board = deploy(options)
        else:  # only to look (kubin cluster status)
            handle, board = None, _board()
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {_first_line(exc)}"))
        return 1
    conn.send(("ready", {"resources": resources, "seconds": time.monotonic() - started,
                         "replicas": options.get("deployment", {}).get("num_replicas"), "pid": os.getpid(),
                         "gcs": gcs_address()}))  # fmt: skip
    Bridge(conn, handle, board).serve_forever()
    return 0


def resolve_auto(options: dict[str, Any], resources: dict[str, float]) -> dict[str, Any]:
    """Fill what the settings left to the cluster: one replica per GPU (at least one), and a GPU per replica
    where the cluster has GPUs."""
    deployment = dict(options["deployment"])
    actor = dict(deployment.get("ray_actor_options") or {})
    gpus = int(resources.get("GPU", 0))
    if actor.get("num_gpus") is None:
        actor["num_gpus"] = 1 if gpus else 0
    if deployment.get("num_replicas") is None and "autoscaling_config" not in deployment:
        deployment["num_replicas"] = max(gpus, 1)
    deployment["ray_actor_options"] = actor
    return options | {"deployment": deployment}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
