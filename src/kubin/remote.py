"""`kubin generate --server URL`: the command line as a client of a running Kubin, through its native REST
API. The job joins the server's one queue (behind the UI's and the API's jobs, on the model the server
already holds: no second copy of the weights in memory) and its history, as a CLI job; local input images
travel as base64; the outputs stay in the server's output folder unless --download fetches them.
"""

from __future__ import annotations

import base64
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams, KubinError

API = "/kubin/api/v1"
CLIENT_HEADER = "X-Kubin-Client"  # "cli": the server records the job's owner as the command line
POLL_S = 0.5


class ServerError(KubinError):
    """The server could not be reached or refused the request; the message says which and why."""


class RemoteServer:
    def __init__(self, url: str, auth: str | None = None, timeout: float = 60):
        import httpx

        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.url = url
        credentials = None
        if auth:
            user, sep, password = auth.partition(":")
            if not sep:
                raise InvalidParams("--server-auth takes USER:PASSWORD.")
            credentials = (user, password)
        self._http = httpx.Client(
            base_url=url, auth=credentials, timeout=timeout, headers={CLIENT_HEADER: "cli"}
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs) -> Any:
        import httpx

        try:
            reply = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerError(
                f"Could not reach the Kubin server at {self.url} ({type(exc).__name__}: {exc}); start it "
                "(./start.sh) or check --server."
            ) from None
        if reply.status_code == 401:
            raise ServerError(
                f"The Kubin server at {self.url} wants a user and password: give --server-auth."
            )
        if reply.status_code >= 400:
            raise ServerError(f"The Kubin server said: {_detail(reply)}")
        return reply.json() if reply.content else None

    def submit(self, task: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"{API}/tasks/{task}", params={"wait": "false"}, json=params)

    def submit_file(self, task: str, text: str, as_csv: bool, params: dict[str, Any]) -> dict[str, Any]:
        model = params.pop("model", None)
        body = {"text": text, "format": "csv" if as_csv else "text", "params": params, "model": model}
        return self._call("POST", f"{API}/tasks/{task}/prompts-file", params={"wait": "false"}, json=body)

    def submit_folder(
        self, task: str, input_dir: Path, mask_dir: Path | None, params: dict[str, Any]
    ) -> dict:
        """A folder on the server's machine (the same one, for a local server) through the task."""
        model = params.pop("model", None)
        body = {"input_dir": str(input_dir), "mask_dir": str(mask_dir) if mask_dir else None, "params": params,
                "model": model}  # fmt: skip
        return self._call("POST", f"{API}/tasks/{task}/folder", params={"wait": "false"}, json=body)

    def job(self, job_id: int, wait: float = 0) -> dict[str, Any]:
        return self._call("GET", f"{API}/jobs/{job_id}", params={"wait": wait})

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"{API}/jobs/{job_id}/cancel")

    def download(self, url: str, folder: Path) -> Path:
        """Fetch an output into `folder` under its own name (never over an existing file)."""
        import httpx

        name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
        folder.mkdir(parents=True, exist_ok=True)
        target, n = folder / name, 1
        while target.exists():
            n += 1
            target = folder / f"{Path(name).stem} ({n}){Path(name).suffix}"
        try:
            with self._http.stream("GET", url) as reply:
                if reply.status_code >= 400:
                    raise ServerError(f"Could not download {name}: HTTP {reply.status_code}.")
                tmp = target.with_name(f".{target.name}.part")
                with open(tmp, "wb") as fh:
                    for chunk in reply.iter_bytes():
                        fh.write(chunk)
                os.replace(tmp, target)
        except httpx.TransportError as exc:
            raise ServerError(f"Could not download {name} from {self.url} ({exc}).") from None
        return target


def _detail(reply) -> str:
    try:
        detail = reply.json().get("detail")
    except ValueError:
        return f"HTTP {reply.status_code}"
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return str(detail or f"HTTP {reply.status_code}")


def encode_images(task: str, params: dict[str, Any]) -> dict[str, Any]:
    """The task's image parameters, given as local files, as base64 data the server decodes."""
    from kubin.params import params_class

    out = dict(params)
    for name in params_class(task).image_fields():
        value = out.get(name)
        if isinstance(value, list):
            out[name] = [_encode(v, name) for v in value]
        elif value:
            out[name] = _encode(value, name)
    return out


def _encode(path: str, what: str) -> str:
    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidParams(f"--{what.replace('_', '-')}: {file} does not exist.")
    return base64.b64encode(file.read_bytes()).decode("ascii")


def follow(
    server: RemoteServer, job_ids: list[int], extras: list[dict[str, Any]], download: Path | None
) -> int:
    """Print each job's outputs as JSON lines in order (their server path, or with `download` the local
    copy), its stage changes and notices on stderr; Ctrl+C cancels the jobs left. Returns the exit code."""
    from kubin.app import EXIT_CANCELLED, EXIT_USER_ERROR

    code = 0
    for n, (job_id, extra) in enumerate(zip(job_ids, extras, strict=True)):
        printed, said, stage = 0, 0, None
        try:
            while True:
                job = server.job(job_id, wait=POLL_S * 4)
                for notice in job["notices"][said:]:
                    print(f"notice: {notice}", file=sys.stderr, flush=True)
                said = len(job["notices"])
                if job["stage"] and job["stage"] != stage and job["state"] == "running":
                    stage = job["stage"]
                    print(f"progress: {stage}", file=sys.stderr, flush=True)
                printed = _print_new(server, job, printed, extra, download)
                if job["state"] not in ("queued", "running"):
                    break
                time.sleep(POLL_S if job["state"] == "running" else 0)
        except KeyboardInterrupt:
            for other in job_ids[n:]:
                job = server.cancel(other)
            job = server.job(job_id, wait=30)
            _print_new(server, job, printed, extra, download)
            print("cancelled: the finished outputs are saved on the server.", file=sys.stderr)
            return EXIT_CANCELLED
        where = f"line {extra['line']}: " if "line" in extra else ""
        if job["state"] == "failed":
            print(f"error: {where}{job['error']}", file=sys.stderr)
            code = code or EXIT_USER_ERROR
        elif job["state"] == "cancelled":
            print(f"cancelled: {where}{job['error']}", file=sys.stderr)
            code = EXIT_CANCELLED
    return code


def _print_new(
    server: RemoteServer, job: dict[str, Any], printed: int, extra: dict, download: Path | None
) -> int:
    import json

    for result in job["results"][printed:]:
        line = dict(result) | extra
        if result.get("url"):
            line["url"] = server.url + result["url"]
        if download is not None and result.get("url"):
            line["server_path"] = result["path"]
            line["path"] = str(server.download(result["url"], download))
        print(json.dumps(line), flush=True)
    return len(job["results"])
