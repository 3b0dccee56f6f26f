"""The seam to Ray Serve: Kubin's front end (UI, APIs, queue, outputs) hands generation jobs to a Ray Serve
deployment whose replicas are engine workers, each with its own models.

`ClusterSettings` is what the config and the command line say; `ClusterJob` is what crosses to a replica.
The front end's side is `client.Cluster`, the Ray driver runs in a child process (`bridge`) so that the
front end outlives the cluster, and the deployment itself is `worker.KubinWorker`. Only `client` is
imported by the front end, and Ray only in the child process and on the replicas (`pip install -r
requirements-cluster.txt`, or `./install.sh --cluster`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubin.errors import ClusterUnavailable

APP_NAME = "kubin"  # the Serve application
NAMESPACE = "kubin"  # the Ray namespace of the driver and the status board


@dataclass(frozen=True)
class ClusterSettings:
    """Where the cluster is and how the worker deployment is sized (the config's `cluster` section)."""

    address: str  # "local", "auto" or "host:port" of the head's GCS (this machine must be a node of it)
    replicas: int | None = None  # None: one per GPU of the cluster (at least one)
    max_replicas: int | None = None  # above `replicas`: Serve autoscales between the two
    replica_cpus: float = 1.0
    replica_gpus: float | None = None  # None: 1 when the cluster has GPUs, else 0
    max_models_per_replica: int = 1  # each replica's LRU of loaded models (Serve model multiplexing)
    connect_timeout_s: float = 120.0  # to connect and deploy at start
    local_cpus: int | None = None  # `local` only: the CPUs of the Ray instance started here
    shared_loras: bool = False  # the LoRA folder is at the same path on every node: send paths, not files

    @classmethod
    def from_config(
        cls, section: dict[str, Any] | None, address: str | None = None
    ) -> ClusterSettings | None:
        """The settings of a config's `cluster` section (None when no address is set: no cluster)."""
        section = dict(section or {})
        address = address or section.get("address") or ""
        if not address:
            return None

        def number(key: str, kind=int):
            value = section.get(key)
            return None if value in (None, "", "auto") else kind(value)

        settings = cls(
            address=str(address),
            replicas=number("replicas"),
            max_replicas=number("max_replicas"),
            replica_cpus=float(section.get("replica_cpus") or 1.0),
            replica_gpus=number("replica_gpus", float),
            max_models_per_replica=int(section.get("max_models_per_replica") or 1),
            connect_timeout_s=float(section.get("connect_timeout_s") or 120.0),
            local_cpus=number("local_cpus"),
            shared_loras=str(section.get("shared_loras", False)).lower() in ("true", "1", "yes"),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse what cannot work, before anything starts."""
        if self.replicas is not None and self.replicas < 1:
            raise ClusterUnavailable(
                f"cluster.replicas is {self.replicas}: the cluster needs at least one replica to run jobs "
                "(leave it unset for one per GPU)."
            )
        if self.max_replicas is not None and self.max_replicas < (self.replicas or 1):
            raise ClusterUnavailable(
                f"cluster.max_replicas ({self.max_replicas}) is below cluster.replicas ({self.replicas or 1})."
            )
        if self.max_models_per_replica < 1:
            raise ClusterUnavailable("cluster.max_models_per_replica must be at least 1.")
        if self.address.startswith("ray://"):
            raise ClusterUnavailable(
                f"cluster.address {self.address}: Ray Client (ray://) cannot stream Serve responses, which Kubin's "
                "jobs need. Make this machine a node of the cluster instead (ray start --address HEAD:6379 "
                "--num-cpus 0 --num-gpus 0) and use --cluster auto, or run Kubin on the head with HEAD:6379."
            )
        if self.address not in ("local", "auto") and ":" not in self.address:
            raise ClusterUnavailable(f"cluster.address {self.address!r} is none of local, auto or HOST:PORT.")

    @property
    def slots(self) -> int:
        """How many jobs the front end hands to the cluster at once: the most replicas there may be."""
        return max(self.max_replicas or 0, self.replicas or 0, 1)


@dataclass
class ClusterCall:
    """One pipeline call of a job: its index in the job, its parameters, inputs and seeds."""

    index: int
    params: Any  # the task's params dataclass, prompts expanded
    prepared: Any  # kubin.tasks.Prepared without its source copies
    seeds: list[int]


@dataclass
class ClusterLora:
    """One adapter of a job as the front end resolved it, and how its weights reach the replica: by its path
    where the LoRA folder is shared with every node (`cluster.shared_loras`), else as its file's bytes, which
    the driver puts in Ray's object store once per file (`data`) and each node writes to its cache once."""

    lora: Any  # kubin.models.lora.ActiveLora (its file's path is the front end's)
    shared: bool = False
    data: Any = None  # a Ray ObjectRef of the file's bytes, set by the driver


@dataclass
class ClusterJob:
    """What a replica runs: the calls of one job (or those left of it, when it is re-run) and its adapters."""

    key: str  # unique per attempt, for cancel
    task: str
    model_id: str
    calls: list[ClusterCall] = field(default_factory=list)
    loras: list[ClusterLora] = field(default_factory=list)
