"""Error bodies in the shape Google APIs (and so Vertex AI) use, for the server and the router."""

from __future__ import annotations

import json

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
