"""Error bodies in the shape Google APIs (and so Vertex AI) use, for the server and the router."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

# HTTP status -> the canonical status name Google APIs put next to it.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ABORTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}


def error_response(http_status: int, message: str, status_name: str | None = None) -> web.Response:
    """`{"error": {"code", "status", "message"}}` with that HTTP status."""
    body = {"error": {"code": http_status, "status": status_name or _STATUS_NAMES.get(http_status, "UNKNOWN"),
                      "message": message}}
    return web.Response(status=http_status, body=json.dumps(body).encode(), content_type="application/json")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_errors(route_hint: Callable[[], str], fault: str, log: logging.Logger,
                client_error: Callable[[Exception], web.Response | None] = lambda error: None):
    """Middleware that answers every failure as a Google-style JSON error.

    Unknown routes and methods say where to go instead (`route_hint`); the
    caller's own client errors become responses through `client_error`; anything
    left is a fault of ours: logged, and a 500 that points at the log (`fault`).
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return error_response(404, f"no route {request.method} {request.path}: {route_hint()}")
        except web.HTTPMethodNotAllowed as error:
            return error_response(405, f"{request.method} {request.path} is not allowed: "
                                       f"use {', '.join(sorted(error.allowed_methods))}")
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return error_response(error.status, error.reason)
        except Exception as error:
            response = client_error(error)
            if response is not None:
                return response
            log.exception("error while serving %s %s", request.method, request.path)
            return error_response(500, fault)

    return middleware
