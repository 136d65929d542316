"""A local stand-in for the Vertex AI Model Registry REST API, for the real google-cloud-aiplatform
client (REST transport). Mocked, because no Google Cloud is reachable here: only the server side
of the API. Like Vertex, it keeps each version's `artifactUri` exactly as the upload gave it (a
gs:// URI: Vertex refuses anything else), so `Model.uri` hands back gs://.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

from tests.stand_in_http import StandInServer, aiplatform_pointed_at, google_error

PROJECT, LOCATION, NAME = "test-project", "us-central1", "chicago-taxi-big-tipper"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


class FakeModelRegistry:
    """models.list, models.listVersions, models.upload (a finished long-running operation), models.get by
    version or alias."""

    APIS: tuple[str, ...] = ("aiplatform.v1",)

    def __init__(self) -> None:
        self.uploads: list[dict] = []
        self.versions: list[dict] = []  # one dict per version of the single model, REST JSON shape
        self.server = StandInServer(self._answer, self.APIS)
        self.endpoint = self.server.url

    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        if method == "GET":
            return self.get(urlsplit(path))
        if method == "POST":
            return self.upload(urlsplit(path).path, json.loads(body))
        return 405, google_error(405, "METHOD_NOT_ALLOWED", f"{method} is not stood in for")

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
        return 404, google_error(404, "NOT_FOUND", f"{path} not found")

    def upload(self, path: str, body: dict) -> tuple[int, dict]:
        assert unquote(path) == f"/v1/{PARENT}/models:upload", path
        self.uploads.append(body)
        if body.get("parentModel") and not self.versions:
            return 400, google_error(400, "INVALID_ARGUMENT", "no such parent")
        if not body["model"].get("artifactUri", "").startswith("gs://"):
            return 400, google_error(400, "INVALID_ARGUMENT", f"artifactUri {body['model'].get('artifactUri')!r} is not gs://")
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
    fake = FakeModelRegistry()
    try:
        with aiplatform_pointed_at(fake.endpoint, PROJECT, LOCATION):
            yield fake
    finally:
        fake.server.close()
