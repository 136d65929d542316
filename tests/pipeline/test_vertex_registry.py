"""The Vertex backend of the registry, through the real google-cloud-aiplatform client
(REST transport) pointed at a local stand-in for the Model Registry API. Mocked,
because no Google Cloud is reachable here: only the server side of the API. The
models' input specs are read from gs:// in a Cloud Storage emulator, as on Vertex."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from google.auth.credentials import AnonymousCredentials

from contract.model_inputs import INPUT_SPEC_FILE, InputSpec
from registry.model_registry import (
    CHALLENGER,
    CHAMPION,
    INPUT_CONTRACT_KEY,
    InputContractMismatch,
    VertexModelRegistry,
    register_blessed_model,
)

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
        aliases = body["model"].get("versionAliases", [])
        for version in self.versions:  # an alias names one version: setting it moves it
            version["versionAliases"] = [a for a in version["versionAliases"] if a not in aliases]
        version_id = str(len(self.versions) + 1)
        self.versions.append({"versionId": version_id, "versionAliases": aliases,
                              "artifactUri": body["model"]["artifactUri"], "labels": body["model"].get("labels", {})})
        return 200, {"name": f"{PARENT}/models/1/operations/{version_id}", "done": True,
                     "response": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
                                  "model": f"{PARENT}/models/1", "modelVersionId": version_id}}


@pytest.fixture
def vertex():
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))  # init() cannot unset an endpoint: restore by hand
    fake = FakeModelRegistry()
    aiplatform.init(project=PROJECT, location=LOCATION, api_endpoint=fake.endpoint, api_transport="rest",
                    credentials=AnonymousCredentials())
    yield fake
    fake.server.shutdown()
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


TAXI_INPUTS = InputSpec({"fare": "float32", "trip_start_hour": "int64", "company": "string"})


def export_to_gcs(bucket: str, run: str, inputs: InputSpec = TAXI_INPUTS) -> str:
    """An exported model's gs:// folder; the registry reads only its input spec (the upload is faked)."""
    from google.cloud import storage

    storage.Client().bucket(bucket).blob(f"{run}/model/{INPUT_SPEC_FILE}").upload_from_string(
        json.dumps(inputs.to_dict()))
    return f"gs://{bucket}/{run}/model"


@pytest.mark.emulator
def test_first_upload_is_champion_then_new_versions_of_the_same_model(vertex, gcs_bucket):
    registry = VertexModelRegistry(PROJECT, LOCATION, serving_image="us-docker.pkg.dev/p/r/serving:1")
    assert registry.get(NAME, CHAMPION) is None

    first_uri, second_uri = export_to_gcs(gcs_bucket, "run-1"), export_to_gcs(gcs_bucket, "run-2")
    first = register_blessed_model(registry, NAME, first_uri, {"labels": {"data_uri": "gs://x/2014"}})
    assert first.version == "1" and set(first.aliases) >= {CHALLENGER, CHAMPION}
    upload = vertex.uploads[0]
    assert "parentModel" not in upload
    assert upload["model"]["displayName"] == NAME
    assert upload["model"]["artifactUri"] == first_uri
    assert json.loads(upload["model"]["versionDescription"])[INPUT_CONTRACT_KEY] == TAXI_INPUTS.features
    assert upload["model"]["containerSpec"]["imageUri"] == "us-docker.pkg.dev/p/r/serving:1"
    assert upload["model"]["labels"] == {"data_uri": "gs---x-2014"}  # label values: [a-z0-9_-] only

    second = register_blessed_model(registry, NAME, second_uri, {})
    assert vertex.uploads[1]["parentModel"] == f"{PARENT}/models/1"  # a version, not a new model
    assert vertex.uploads[1]["model"]["versionAliases"] == [CHALLENGER]
    assert second.version == "2"
    assert registry.get(NAME, CHAMPION).version == "1"
    assert registry.get(NAME, CHALLENGER).uri == second_uri
    assert [(v.version, v.uri) for v in registry.versions(NAME)] == [("1", first_uri), ("2", second_uri)]

    # A model trained on another data set is refused before anything is uploaded.
    other_uri = export_to_gcs(gcs_bucket, "loans", InputSpec({"income": "float32", "region": "string"}))
    with pytest.raises(InputContractMismatch, match=f"model '{NAME}' version 1 \\(champion, default\\) was trained "
                                                    "on other inputs than the candidate: feature 'company'"):
        register_blessed_model(registry, NAME, other_uri, {})
    assert len(vertex.uploads) == 2
