"""A local stand-in for the Vertex AI Model Registry REST API, for the real google-cloud-aiplatform
client (REST transport). Mocked, because no Google Cloud is reachable here: only the server side
of the API. Like Vertex, it keeps each version's `artifactUri` exactly as the upload gave it (a
gs:// URI: Vertex refuses anything else), so `Model.uri` hands back gs://.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from google.auth.credentials import AnonymousCredentials

PROJECT, LOCATION, NAME = "test-project", "us-central1", "chicago-taxi-big-tipper"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


class FakeModelRegistry:
    """models.list, models.listVersions, models.upload (a finished long-running operation), models.get by
    version or alias."""

    def __init__(self) -> None:
        self.uploads: list[dict] = []
        self.versions: list[dict] = []  # one dict per version of the single model, REST JSON shape
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._reply(*registry.get(urlsplit(self.path)))

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._reply(*registry.upload(urlsplit(self.path).path, body))

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def model(self, version: dict) -> dict:
        return {"name": f"{PARENT}/models/1", "displayName": NAME, "versionId": version["versionId"],
                "versionAliases": version["versionAliases"], "artifactUri": version["artifactUri"],
                "labels": version.get("labels", {})}

    def get(self, url) -> tuple[int, dict]:
        path = unquote(url.path)
        if path == f"/v1/{PARENT}/models/1:listVersions":
            return 200, {"models": [self.model(version) for version in self.versions]}
        if path == f"/v1/{PARENT}/models":
            wanted = parse_qs(url.query).get("filter", [""])[0]
            found = self.versions and f'display_name="{NAME}"' == wanted
            return 200, {"models": [self.model(self.versions[0])]} if found else {}
        if path.startswith(f"/v1/{PARENT}/models/1@"):
            key = path.rsplit("@", 1)[1]
            for version in self.versions:
                if key == version["versionId"] or key in version["versionAliases"]:
                    return 200, self.model(version)
        return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"{path} not found"}}

    def upload(self, path: str, body: dict) -> tuple[int, dict]:
        assert unquote(path) == f"/v1/{PARENT}/models:upload", path
        self.uploads.append(body)
        if body.get("parentModel") and not self.versions:
            return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "no such parent"}}
        if not body["model"].get("artifactUri", "").startswith("gs://"):
            return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                   "message": f"artifactUri {body['model'].get('artifactUri')!r} is not gs://"}}
        aliases = body["model"].get("versionAliases", [])
        for version in self.versions:  # an alias names one version: setting it moves it
            version["versionAliases"] = [a for a in version["versionAliases"] if a not in aliases]
        version_id = str(len(self.versions) + 1)
        self.versions.append({"versionId": version_id, "versionAliases": aliases,
                              "artifactUri": body["model"]["artifactUri"], "labels": body["model"].get("labels", {})})
        return 200, {"name": f"{PARENT}/models/1/operations/{version_id}", "done": True,
                     "response": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
                                  "model": f"{PARENT}/models/1", "modelVersionId": version_id}}


@contextlib.contextmanager
def stand_in_model_registry() -> Iterator[FakeModelRegistry]:
    """aiplatform pointed at a fresh stand-in for the duration; its global config restored after."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))  # init() cannot unset an endpoint: restore by hand
    fake = FakeModelRegistry()
    aiplatform.init(project=PROJECT, location=LOCATION, api_endpoint=fake.endpoint, api_transport="rest",
                    credentials=AnonymousCredentials())
    try:
        yield fake
    finally:
        fake.server.shutdown()
        vars(initializer.global_config).clear()
        vars(initializer.global_config).update(saved)
