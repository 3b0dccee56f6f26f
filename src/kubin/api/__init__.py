"""The REST API: an AUTOMATIC1111-compatible subset (/sdapi/v1) and Kubin's own (/kubin/api/v1),
both thin clients of the same engine queue as the UI, mounted on Gradio's FastAPI app.

`mount_api` adds the routes (behind the same credentials as the UI) and their docs at /docs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse

from kubin import __version__
from kubin.api import a1111, native, training
from kubin.api import extensions as extension_routes
from kubin.api import history as history_api
from kubin.api import tools as tool_routes
from kubin.api.docs import docs_page
from kubin.api.jobs import ApiState
from kubin.api.security import Credentials, auth_dependency, limited_route
from kubin.engine import Engine

DOCS_URL = "/docs"
OPENAPI_URL = "/kubin/api/openapi.json"
DEFAULT_MAX_UPLOAD_MB = 50
DEFAULT_MAX_UPLOAD_PIXELS = 8192 * 8192


def mount_api(
    app: FastAPI,
    engine: Engine,
    model_id: str,
    credentials: Credentials | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
    folder_roots: list[Path] | None = None,
) -> ApiState:
    """Add the API routes and /docs to `app` (Gradio's, as its server starts: see ui.app.api_lifespan);
    returns the API's state. `folder_roots`: the server folders a folder batch may read (None: any)."""
    uploads = Path(tempfile.mkdtemp(prefix="kubin-uploads-"))
    state = ApiState(engine, model_id, uploads, max_upload_pixels, folder_roots=folder_roots)
    route_class = limited_route(int(max_upload_mb * 1024 * 1024))
    guard = [Depends(auth_dependency(credentials or []))]
    routers = [
        a1111.build_router(state, route_class),
        native.build_router(state, route_class),
        history_api.build_router(state, route_class),
        training.build_router(state, route_class),
        *tool_routes.build_routers(state, route_class),
        extension_routes.build_router(state, route_class),
    ]
    for router in routers:
        app.include_router(router, dependencies=guard)

    schema: dict = {}

    def openapi() -> dict:
        if not schema:
            schema.update(
                get_openapi(
                    title="Kubin REST API",
                    version=__version__,
                    description="AUTOMATIC1111-compatible routes under /sdapi/v1 and Kubin's own under "
                    "/kubin/api/v1. With --auth, send HTTP Basic credentials.",
                    routes=[route for router in routers for route in router.routes],
                )
            )
        return schema

    app.add_api_route(OPENAPI_URL, openapi, include_in_schema=False, dependencies=guard)
    app.add_api_route(
        DOCS_URL,
        lambda: HTMLResponse(docs_page(openapi(), OPENAPI_URL)),
        include_in_schema=False,
        dependencies=guard,
    )
    return state


def remove_uploads(state: ApiState) -> None:
    shutil.rmtree(state.uploads, ignore_errors=True)
