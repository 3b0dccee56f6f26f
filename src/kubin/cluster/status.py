"""`kubin cluster status`: the cluster's replicas, their devices and loaded models, as a running Kubin
(GET /kubin/api/v1/cluster) or the cluster itself tells them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from kubin.errors import ClusterUnavailable

API_PATH = "/kubin/api/v1/cluster"


def fetch_status(settings, server: str | None = None) -> dict[str, Any]:
    if server:
        try:
            with urllib.request.urlopen(server.rstrip("/") + API_PATH, timeout=30) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as exc:  # 503: the front end is there, the cluster is not
            body = json.loads(exc.read() or b"{}")
            detail = body.get("detail", body)
            return detail if isinstance(detail, dict) else {"available": False, "problem": str(detail)}
        except OSError as exc:
            raise ClusterUnavailable(f"No Kubin answers at {server} ({exc}).") from None
    from kubin.cluster import ClusterSettings
    from kubin.cluster.client import Cluster

    cluster_settings = ClusterSettings.from_config(settings.get("cluster"))
    if cluster_settings is None:
        raise ClusterUnavailable("No cluster is configured: pass --cluster ADDRESS (or set cluster.address).")
    if cluster_settings.address == "local":
        raise ClusterUnavailable(
            "A local cluster lives inside the Kubin that started it: ask it with --server http://HOST:PORT."
        )
    cluster = Cluster(cluster_settings, {}, deploy=False).start()
    try:
        return cluster.status()
    finally:
        cluster.close()


def engine_status(engine) -> dict[str, Any] | None:
    """The status of the cluster an engine runs its jobs on, with the queue depth here; None without one."""
    if engine.cluster is None:
        return None
    pending = engine.pending()
    running = sum(1 for h in pending if h.state == "running")
    return engine.cluster.status() | {"queue": {"queued": len(pending) - running, "running": running}}


def format_status(status: dict[str, Any], queue: int | None = None) -> str:
    """The status as lines for a person: where, whether it answers, then one line per replica."""
    lines = [f"Cluster {status.get('address', '?')}: " + ("available" if status.get("available") else
             f"NOT AVAILABLE — {status.get('problem')}")]  # fmt: skip
    resources = status.get("resources") or {}
    if resources:
        lines.append("Resources: " + ", ".join(f"{int(v)} {k}" for k, v in sorted(resources.items())))
    if "queue" in status:
        lines.append(f"Queue: {status['queue']['queued']} queued, {status['queue']['running']} running")
    replicas = status.get("replicas") or []
    lines.append(f"Replicas: {len(replicas)}")
    for r in replicas:
        busy = f"running job {r['busy']} (step {r['steps']})" if r.get("busy") else "idle"
        models = ", ".join(r.get("models") or []) or "no model loaded"
        lines.append(f"  {r['replica']}  {r.get('device', '?')}  pid {r.get('pid')}  {models}  {busy}  "
                     f"jobs {r.get('jobs', 0)}")  # fmt: skip
    return "\n".join(lines)
