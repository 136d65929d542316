"""Local stand-ins for Google REST APIs: a loopback HTTP server that hands each request to a function.

Only the server side of an API that cannot be reached from here is stood in for;
the client under test (aiplatform, google-cloud-storage, our triggers) is real.
Each server is given the discovery documents of the APIs it stands in for
(fidelity/discovery.py): a request that names no method of them, or carries a field or
parameter they do not define, gets Google's 400 before the stand-in sees it, and a reply
the stand-in makes that strays from the response schema is a 500 naming the stray field
(recorded in `reply_problems`), so a stand-in can neither accept nor invent a shape.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from fidelity import discovery

# (method, path with query, body, headers) -> (status, JSON-able reply or raw bytes)
Answer = Callable[[str, str, bytes, dict[str, str]], tuple[int, dict | bytes]]


def google_error(status: int, code: str, message: str) -> dict:
    """The error body Google APIs answer with."""
    return {"error": {"code": status, "status": code, "message": message}}


def message_json(message: Any) -> dict:
    """A message of an official type (proto-plus, as in `google.cloud.aiplatform_v1.types`, or protobuf) as the
    REST JSON Google sends: lowerCamelCase names, enums by name, int64 as text, default values left out
    (the proto3 JSON mapping, https://protobuf.dev/programming-guides/json/)."""
    from google.protobuf import json_format

    pb = type(message).pb(message) if hasattr(type(message), "pb") else message
    return json.loads(json.dumps(json_format.MessageToDict(pb)))


def operation_json(name: str, response: Any = None) -> dict:
    """A `google.longrunning.Operation`: not done without a response, done with it (packed as an `Any` whose
    `@type` names the response's official type)."""
    from google.longrunning import operations_pb2

    operation = operations_pb2.Operation(name=name, done=response is not None)
    if response is not None:
        operation.response.Pack(type(response).pb(response) if hasattr(type(response), "pb") else response)
    return message_json(operation)


class StandInServer:
    """Serves `answer` on 127.0.0.1 (a free port) in a background thread until `close()`.

    `apis`: the discovery documents (`aiplatform.v1`, `monitoring.v3`, ...) every request and reply is
    checked against; empty only for an endpoint Google publishes no discovery document for (say why)."""

    def __init__(self, answer: Answer, apis: Sequence[str], poll_interval: float = 0.5) -> None:
        documents = tuple(discovery.load(api) for api in apis)
        self.reply_problems: list[str] = []
        self.methods: list[str] = []  # the discovery id of every request that named a method
        server = self

        def checked(method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict | bytes]:
            if not documents:
                return answer(method, path, body, headers)
            try:
                found = discovery.route(documents, method, path)
                api = discovery.api_of(documents, found)
                api.check_request(found, urlsplit(path).query, body)
            except discovery.Invalid as error:
                return error.status, error.body()
            server.methods.append(found.id)
            status, reply = answer(method, path, body, headers)
            if 200 <= status < 300 and not isinstance(reply, bytes):
                problems = api.reply_problems(found, reply)
                if problems:
                    server.reply_problems.extend(f"{found.id}: {problem}" for problem in problems)
                    return 500, google_error(500, "INTERNAL", f"stand-in reply to {found.id} strays from "
                                                              f"{api.name}'s discovery document: {problems[0]}")
            return status, reply

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, reply = checked(self.command, self.path, body, dict(self.headers))
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
