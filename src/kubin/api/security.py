"""What keeps the REST API safe to expose: credentials (HTTP Basic or a logged-in Gradio session),
files served only from inside the output folder, and caps on request bodies and uploaded images.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import secrets
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from PIL import Image, UnidentifiedImageError

from kubin.errors import ConfigError, InvalidParams, KubinError

Credentials = list[tuple[str, str]]


class TooLarge(InvalidParams):
    """A request body or an uploaded image is over the configured limit (HTTP 413)."""


# --- credentials ---------------------------------------------------------------------------------
def parse_credentials(text: str, where: str) -> Credentials:
    """`user:pass` pairs separated by commas or new lines (the A1111 --gradio-auth format)."""
    pairs = []
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ConfigError(
                f"{where}: credentials must look like user:password (got {item.split(':')[0]!r}…)."
            )
        pairs.append((user, password))
    return pairs


def load_credentials(auth: str | None, auth_file: str | None) -> Credentials:
    """All credentials from --auth and --auth-file; empty means no authentication."""
    pairs = parse_credentials(auth, "--auth") if auth else []
    if auth_file:
        path = Path(auth_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"Could not read the auth file {path} ({exc.strerror or exc}).") from None
        found = parse_credentials(text, f"auth file {path}")
        if not found:
            raise ConfigError(f"The auth file {path} holds no user:password line.")
        pairs += found
    return pairs


def credentials_match(credentials: Credentials, user: str, password: str) -> bool:
    """Constant-time comparison against every known pair."""
    ok = False
    for known_user, known_password in credentials:
        same_user = secrets.compare_digest(user.encode(), known_user.encode())
        same_password = secrets.compare_digest(password.encode(), known_password.encode())
        ok |= same_user and same_password
    return ok


def auth_dependency(credentials: Credentials) -> Callable[[Request], None]:
    """A FastAPI dependency: with credentials set, a request needs HTTP Basic or a Gradio login cookie."""

    def require_login(request: Request) -> None:
        if not credentials:
            return
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            if credentials_match(credentials, user, password):
                return
        # A browser already logged in to the UI: Gradio's session cookie.
        app = request.app
        cookie_id = getattr(app, "cookie_id", None)
        tokens = getattr(app, "tokens", None) or {}
        if cookie_id:
            token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
                f"access-token-unsecure-{cookie_id}"
            )
            if token and token in tokens:
                return
        raise HTTPException(
            status_code=401,
            detail="Authentication required: send HTTP Basic credentials (user:password as given to --auth).",
            headers={"WWW-Authenticate": 'Basic realm="Kubin"'},
        )

    return require_login


# --- files ---------------------------------------------------------------------------------------
def safe_output_path(root: Path, relative: str) -> Path:
    """The regular file `relative` names inside `root`, or 404: no `..`, no absolute paths, no hidden
    or temp files, and no symlink that leads out of the folder."""
    not_found = HTTPException(status_code=404, detail="No such output file.")
    if not relative or "\x00" in relative or "\\" in relative or ":" in relative or "%" in relative:
        raise not_found
    pure = PurePosixPath(relative)
    if pure.is_absolute() or any(part in ("", ".", "..") or part.startswith(".") for part in pure.parts):
        raise not_found
    real_root = Path(os.path.realpath(root))
    path = Path(os.path.realpath(real_root / pure))
    if not path.is_relative_to(real_root) or not path.is_file():
        raise not_found
    return path


# --- uploads -------------------------------------------------------------------------------------
def decode_image(value: str, what: str, folder: Path, max_pixels: int) -> Path:
    """Write a base64 image (plain or a data: URL) to a new file in `folder` and return its path.

    Refuses what is not base64, not an image, or has more than `max_pixels` pixels (413), before
    the pixels are decoded.
    """
    text = value.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParams(f"{what} is not a base64-encoded image.") from None
    if not data:
        raise InvalidParams(f"{what} is empty.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise InvalidParams(f"{what} could not be read: it is not an image or it is damaged.") from None
    if width * height > max_pixels:
        raise TooLarge(
            f"{what} is {width}x{height} = {width * height} pixels, more than the limit of {max_pixels} "
            "pixels; send a smaller image."
        )
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".img", dir=folder)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


def error_status(exc: KubinError) -> int:
    """The HTTP status of an error a user can cause."""
    from kubin.errors import (
        ClusterUnavailable,
        JobCancelled,
        OutOfMemory,
        UnknownModel,
        UnsupportedTask,
        WeightsMissing,
    )

    for cls, status in (
        (TooLarge, 413),
        (InvalidParams, 422),
        (UnsupportedTask, 422),
        (UnknownModel, 422),
        (WeightsMissing, 503),
        (ClusterUnavailable, 503),
        (OutOfMemory, 507),
        (JobCancelled, 409),
        (ConfigError, 400),
    ):
        if isinstance(exc, cls):
            return status
    return 503 if "shutting down" in str(exc) else 500


def same_origin(request: Request) -> bool:
    """False for a request that a web page on another site made (its Origin names another host), so
    that no page the user visits can make the local Kubin generate, interrupt or change its model.
    Scripts and A1111 clients send no Origin."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urllib.parse.urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


def limited_route(max_body_bytes: int) -> type[APIRoute]:
    """A route class that refuses cross-origin requests (403) and bodies over `max_body_bytes` (413),
    and turns KubinErrors into JSON {"detail": message} with the status of error_status()."""

    class LimitedRoute(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def guarded(request: Request):
                if not same_origin(request):
                    return JSONResponse(
                        {
                            "detail": "Cross-origin requests are refused: call the API from a script or from Kubin's own page."
                        },
                        status_code=403,
                    )
                too_large = JSONResponse(
                    {
                        "detail": f"The request is larger than the limit of {max_body_bytes // (1024 * 1024)} MB."
                    },
                    status_code=413,
                )
                length = request.headers.get("content-length")
                if length is not None:
                    if not length.isdigit():
                        return JSONResponse({"detail": "Bad Content-Length header."}, status_code=400)
                    if int(length) > max_body_bytes:
                        return too_large
                elif request.method in ("POST", "PUT", "PATCH"):  # chunked: count while reading
                    body = bytearray()
                    async for chunk in request.stream():
                        body += chunk
                        if len(body) > max_body_bytes:
                            return too_large
                    request._body = bytes(body)  # what Request.body() returns from now on
                try:
                    return await handler(request)
                except KubinError as exc:
                    return JSONResponse({"detail": str(exc)}, status_code=error_status(exc))

            return guarded

    return LimitedRoute


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def listen_warning(host: str, has_auth: bool, share: bool = False) -> str | None:
    """A warning when the server is reachable from other machines without a password."""
    if has_auth:
        return None
    if share:
        return (
            "warning: --share without a password: anyone with the public link can use the UI and the API "
            "and read your outputs. Set --auth user:password (or --auth-file FILE)."
        )
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    where = "all network interfaces" if host in ("0.0.0.0", "::") else host
    return (
        f"warning: Kubin listens on {where} without a password: anyone who can reach this machine can use "
        "the UI and the API and read your outputs. Set --auth user:password (or --auth-file FILE), "
        "or drop --listen to stay on this machine."
    )
