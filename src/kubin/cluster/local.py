"""A Ray instance on this machine (`--cluster local`): `ray start --head --block` in a process group of its
own, on free ports and in a temp folder of its own, so that several can run side by side and stopping one
stops exactly its processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kubin.errors import ClusterUnavailable


@dataclass
class LocalRay:
    address: str  # host:port of its GCS
    process: subprocess.Popen
    folder: Path  # its temp folder (sessions, logs, sockets)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5) -> None:
        """Stop the instance and every process it started (its replicas too), then remove its folder."""
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            except ProcessLookupError:
                pass
        _wait_for_group(self.process.pid)
        _wait_for_processes_naming(self.folder)  # workers of their own group, which end a moment later
        for _ in range(20):  # its last processes may still write their logs for a moment
            shutil.rmtree(self.folder, ignore_errors=True)
            if not self.folder.exists():
                return
            time.sleep(0.25)


def _wait_for_group(pgid: int, timeout: float = 10) -> None:
    """Wait until no process of the group is left (the workers end after the head), then kill what stays."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_for_processes_naming(folder: Path, timeout: float = 10) -> None:
    """Wait until no process names `folder` on its command line (Ray's workers name their session's
    sockets there), then kill what stays: only this instance's processes name its folder."""
    deadline = time.monotonic() + timeout
    while True:
        pids = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
        if not pids:
            return
        if time.monotonic() > deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_command() -> list[str]:
    script = Path(sys.executable).with_name("ray")
    if script.exists():
        return [str(script)]
    found = shutil.which("ray")
    if found is None:
        raise ClusterUnavailable(
            "Ray is not installed: run ./install.sh --cluster (or pip install -r requirements-cluster.txt)."
        )
    return [found]


def start_local_ray(
    num_cpus: int | None = None, num_gpus: int | None = None, timeout: float = 120, port: int | None = None
) -> LocalRay:
    """Start a Ray head here (its GCS on `port`, or a free one) and wait until it accepts connections."""
    folder = Path(tempfile.mkdtemp(prefix="kubin-ray-"))  # short: Ray's socket paths must stay < 108 chars
    port = port or free_port()
    command = ray_command() + [
        "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder}",
        f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}", f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
    ]  # fmt: skip
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        command.append(f"--num-gpus={num_gpus}")
    log = open(folder / "head.log", "wb")  # noqa: SIM115 (the process writes it while it lives)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    ray = LocalRay(f"127.0.0.1:{port}", process, folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not ray.alive():
            tail = (folder / "head.log").read_text(errors="replace").strip().splitlines()[-3:]
            ray.stop()
            raise ClusterUnavailable(f"Could not start a local Ray instance: {' / '.join(tail)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return ray
        except OSError:
            time.sleep(0.3)
    ray.stop()
    raise ClusterUnavailable(f"A local Ray instance did not start within {timeout:.0f} s.")
