"""The REST routes extensions add (ExtensionAPI.add_route): /kubin/api/v1/ext/NAME/PATH, behind the same
credentials and error answers as Kubin's own routes. An extension whose route cannot be made is logged and
left out; the rest of the API runs."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from kubin.api.jobs import ApiState
from kubin.api.native import client_owner
from kubin.extensions.api import RouteContext

PREFIX = "/kubin/api/v1/ext"
log = logging.getLogger(__name__)


def build_router(state: ApiState, route_class) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["extensions"], route_class=route_class)
    context = RouteContext(state.engine, state.check_folder, client_owner)
    for extension in state.engine.extensions:
        for route in extension.api.routes if extension.api else ():
            path = f"/{extension.name}/{route.path}"
            try:
                endpoint = route.make(context)
                router.add_api_route(
                    path, endpoint, methods=list(route.methods), summary=route.summary or None,
                    name=f"ext_{extension.name}_{route.path.replace('/', '_')}",
                )  # fmt: skip
            except Exception:
                log.exception("Extension %s: its route %s could not be added; the API runs without it",
                              extension.name, PREFIX + path)  # fmt: skip
    return router
