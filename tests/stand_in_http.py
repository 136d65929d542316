"""Local stand-ins for Google REST APIs: a loopback HTTP server that hands each request to a function.

Only the server side of an API that cannot be reached from here is stood in for;
the client under test (aiplatform, google-cloud-storage, our triggers) is real.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (method, path with query, body, headers) -> (status, JSON-able reply or raw bytes)
Answer = Callable[[str, str, bytes, dict[str, str]], tuple[int, dict | bytes]]


def google_error(status: int, code: str, message: str) -> dict:
    """The error body Google APIs answer with."""
    return {"error": {"code": status, "status": code, "message": message}}


class StandInServer:
    """Serves `answer` on 127.0.0.1 (a free port) in a background thread until `close()`."""

    def __init__(self, answer: Answer, poll_interval: float = 0.5) -> None:
        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, reply = answer(self.command, self.path, body, dict(self.headers))
                payload = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815 (http.server's naming)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": poll_interval},
                         daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def aiplatform_config_restored() -> Iterator[None]:
    """aiplatform's global config put back as it was after the block: `init()` cannot unset an endpoint or
    credentials, so a test that points the client at a stand-in would leak them into the next test."""
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))
    try:
        yield
    finally:
        vars(initializer.global_config).clear()
        vars(initializer.global_config).update(saved)


@contextlib.contextmanager
def aiplatform_pointed_at(api_endpoint: str, project: str, location: str) -> Iterator[None]:
    """The real aiplatform client talking REST, without credentials, to a stand-in for the block."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    with aiplatform_config_restored():
        aiplatform.init(project=project, location=location, api_endpoint=api_endpoint, api_transport="rest",
                        credentials=AnonymousCredentials())
        yield
