"""A local stand-in for the Vertex AI Model Registry REST API, for the real google-cloud-aiplatform
client (REST transport). Mocked, because no Google Cloud is reachable here: only the server side
of the API, held to aiplatform.v1's discovery document, its replies built from the official
`google.cloud.aiplatform_v1.types` (Model, ListModelsResponse, UploadModelResponse in an Operation).

Vertex's rules it keeps, each with its source (docs/fidelity.md, "Endpoints and Model Registry"):
- each version's `artifactUri` is kept exactly as the upload gave it, and must be gs://: Vertex reads model
  artifacts from Cloud Storage (the SDK's `Model.upload` stages a local `artifact_uri` to a bucket before it
  calls the API: google/cloud/aiplatform/models.py, `if artifact_uri and not artifact_uri.startswith("gs://")`),
  so `Model.uri` hands back gs://;
- an alias names one version of a model: setting it on another version moves it ("If you apply an existing
  alias that is used on another model version, the alias is removed from that version",
  https://cloud.google.com/vertex-ai/docs/model-registry/model-alias);
- a version is read by id or by alias (`models/ID@VERSION` or `models/ID@ALIAS`: `Model.version_aliases`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

from tests.stand_in_http import StandInServer, aiplatform_pointed_at, google_error, message_json, operation_json

PROJECT, LOCATION, NAME = "test-project", "us-central1", "chicago-taxi-big-tipper"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


class FakeModelRegistry:
    """models.list, models.listVersions, models.upload (a finished long-running operation), models.get by
    version or alias."""

    APIS: tuple[str, ...] = ("aiplatform.v1",)

    def __init__(self) -> None:
        self.uploads: list[dict] = []
        self.versions: list[dict] = []  # one dict per version of the single model: versionId, versionAliases...
        self.server = StandInServer(self._answer, self.APIS)
        self.endpoint = self.server.url

    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        if method == "GET":
            return self.get(urlsplit(path))
        if method == "POST":
            return self.upload(urlsplit(path).path, json.loads(body))
        return 405, google_error(405, "METHOD_NOT_ALLOWED", f"{method} is not stood in for")

    def model_message(self, version: dict):
        from google.cloud.aiplatform_v1 import types

        return types.Model(name=f"{PARENT}/models/1", display_name=NAME, version_id=version["versionId"],
                           version_aliases=version["versionAliases"], artifact_uri=version["artifactUri"],
                           labels=version.get("labels", {}))

    def model(self, version: dict) -> dict:
        return message_json(self.model_message(version))

    def move_alias(self, alias: str, target: dict) -> None:
        """The alias on `target`, taken off any other version (an alias names one version of a model)."""
        for version in self.versions:
            version["versionAliases"] = [a for a in version["versionAliases"] if a != alias]
        target["versionAliases"].append(alias)

    def get(self, url) -> tuple[int, dict]:
        from google.cloud.aiplatform_v1 import types

        path = unquote(url.path)
        if path == f"/v1/{PARENT}/models/1:listVersions":
            return 200, message_json(types.ListModelVersionsResponse(
                models=[self.model_message(version) for version in self.versions]))
        if path == f"/v1/{PARENT}/models":
            wanted = parse_qs(url.query).get("filter", [""])[0]
            found = self.versions and f'display_name="{NAME}"' == wanted
            return 200, message_json(types.ListModelsResponse(
                models=[self.model_message(self.versions[0])] if found else []))
        if path.startswith(f"/v1/{PARENT}/models/1@"):
            key = path.rsplit("@", 1)[1]
            for version in self.versions:
                if key == version["versionId"] or key in version["versionAliases"]:
                    return 200, self.model(version)
        return 404, google_error(404, "NOT_FOUND", f"{path} not found")

    def upload(self, path: str, body: dict) -> tuple[int, dict]:
        from google.cloud.aiplatform_v1 import types

        if unquote(path) != f"/v1/{PARENT}/models:upload":
            return 404, google_error(404, "NOT_FOUND", f"POST {path} is not stood in for")
        self.uploads.append(body)
        if body.get("parentModel") and not self.versions:
            return 400, google_error(400, "INVALID_ARGUMENT", "no such parent")
        if not body["model"].get("artifactUri", "").startswith("gs://"):
            return 400, google_error(400, "INVALID_ARGUMENT", f"artifactUri {body['model'].get('artifactUri')!r} is not gs://")
        version = {"versionId": str(len(self.versions) + 1), "versionAliases": [],
                   "artifactUri": body["model"]["artifactUri"], "labels": body["model"].get("labels", {})}
        self.versions.append(version)
        for alias in body["model"].get("versionAliases", []):
            self.move_alias(alias, version)
        # Model.upload is a long-running operation; the stand-in answers it finished (the SDK then reads it).
        response = types.UploadModelResponse(model=f"{PARENT}/models/1", model_version_id=version["versionId"])
        return 200, operation_json(f"{PARENT}/models/1/operations/{version['versionId']}", response)


@contextlib.contextmanager
def stand_in_model_registry() -> Iterator[FakeModelRegistry]:
    """aiplatform pointed at a fresh stand-in for the duration; its global config restored after."""
    fake = FakeModelRegistry()
    try:
        with aiplatform_pointed_at(fake.endpoint, PROJECT, LOCATION):
            yield fake
    finally:
        fake.server.close()
