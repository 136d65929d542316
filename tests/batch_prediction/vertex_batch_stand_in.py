"""Stand-ins for the Vertex services behind GCPC's ModelGetOp and ModelBatchPredictOp, for the rehearsal.

Mocked, because no Vertex AI is reachable here: only the service side. The
model lookup goes through the real aiplatform client to the Model Registry
stand-in. The batch prediction service does what Vertex documents
(aiplatform_v1 BatchPredictionJob.InstanceConfig): each JSONL line is one
instance object, the key field is taken out of it and comes back as `key`, and
instances go to the model's serving container as `{"instances": [...]}` POSTs of
up to 64 (Vertex's default batch size). The container is the real one
(`python -m serving.server`, the serving image's command) loading the model
from its registered gs:// artifact URI in the GCS emulator. A request the
container refuses makes every instance of it an `error` line, as on Vertex.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson

from storage import uri as storage_uri
from tests.gcs_emulator import GcsEmulator
from tests.serving.serving_helpers import ChildProcess, http_call, start_server, wait_healthy

GET_MODEL = "google_cloud_pipeline_components.container.v1.model.get_model.launcher"
BATCH_PREDICT = "google_cloud_pipeline_components.container.v1.batch_prediction_job.launcher"
DEFAULT_BATCH_SIZE = 64  # Vertex's, when manual_batch_tuning_parameters_batch_size is 0
# What Vertex answers a BatchPredictionJob with key_field and BigQuery output (VERTEX_FACTS: a known limit).
KEY_FIELD_WITH_BIGQUERY = ("400 INVALID_ARGUMENT: instance_config.key_field is not supported when "
                           "output_config.predictions_format is bigquery")


def get_model(parameters: dict[str, Any], artifacts: dict[str, dict], output_prefix: str) -> dict[str, dict]:
    """ModelGetOp: GET projects/P/locations/L/models/{model_name} (ID, ID@VERSION or ID@ALIAS)."""
    from google.cloud import aiplatform

    name = f"projects/{parameters['project']}/locations/{parameters['location']}/models/{parameters['model_name']}"
    model = aiplatform.Model(name)
    resource = f"{model.resource_name.split('@', 1)[0]}@{model.version_id}"
    return {"artifacts": {"model": {"uri": f"https://{parameters['location']}-aiplatform.googleapis.com/v1/{resource}",
                                    "metadata": {"resourceName": resource}}}}


class BatchPredictionService:
    """ModelBatchPredictOp's service: runs the job against the real serving container, records each request."""

    def __init__(self, gcs: GcsEmulator, scratch: Path) -> None:
        self.gcs, self.scratch = gcs, scratch
        self.requests: list[dict] = []  # every body sent to the container
        self.statuses: list[int] = []
        self.jobs: list[dict] = []  # the parameters of every job, as the op passed them
        self._servers: dict[str, ChildProcess] = {}

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()

    def _server(self, artifact_uri: str) -> ChildProcess:
        if artifact_uri not in self._servers:
            server = start_server(artifact_uri, self.scratch / f"server-{len(self._servers)}.log")
            wait_healthy(server)
            self._servers[artifact_uri] = server
        return self._servers[artifact_uri]

    def __call__(self, parameters: dict[str, Any], artifacts: dict[str, dict], output_prefix: str) -> dict[str, dict]:
        from google.cloud import aiplatform

        self.jobs.append(parameters)
        key_field = parameters["key_field"]
        if key_field and parameters["bigquery_destination_output_uri"]:
            raise ValueError(KEY_FIELD_WITH_BIGQUERY)
        if parameters["instances_format"] != "jsonl" or not parameters["gcs_destination_output_uri_prefix"]:
            raise NotImplementedError("the rehearsal stands in for gs:// JSONL in and out only (no BigQuery here)")
        assert parameters["instance_type"] == "object"
        resource = artifacts["model"]["metadata"]["resourceName"]
        server = self._server(aiplatform.Model(resource).uri)
        batch_size = parameters.get("manual_batch_tuning_parameters_batch_size") or DEFAULT_BATCH_SIZE

        results: list[bytes] = []
        pending: list[tuple[Any, dict]] = []

        def send() -> None:
            body = {"instances": [instance for _, instance in pending]}
            self.requests.append(body)
            answer = http_call("POST", server.url + "/predict", body)
            self.statuses.append(answer.status)
            if answer.status == 200:
                outcomes = [{"prediction": prediction} for prediction in answer.json()["predictions"]]
            else:
                outcomes = [{"error": {"status": answer.status, "message": answer.message}}] * len(pending)
            for (key, instance), outcome in zip(pending, outcomes, strict=True):
                results.append(orjson.dumps(({"key": key} if key_field else {"instance": instance}) | outcome))
            pending.clear()

        for uri in parameters["gcs_source_uris"]:
            for line in storage_uri.read_text(uri).splitlines():
                if line.strip():
                    instance = json.loads(line)
                    pending.append((instance.pop(key_field, None) if key_field else None, instance))
                    if len(pending) == batch_size:
                        send()
        if pending:
            send()
        model_id = resource.rsplit("/", 1)[-1].split("@")[0]
        directory = (f"{parameters['gcs_destination_output_uri_prefix'].rstrip('/')}/"
                     f"prediction-{model_id}-{time.strftime('%Y_%m_%dT%H_%M_%S')}")
        self.gcs.upload_bytes(f"{directory}/prediction.results-00000-of-00001", b"\n".join(results) + b"\n")
        self.gcs.upload_bytes(f"{directory}/prediction.errors_stats-00000-of-00001",
                              orjson.dumps({"errorCount": sum(b'"error"' in line for line in results)}) + b"\n")
        return {"parameters": {"gcp_resources": json.dumps({"resources": [{"resourceType": "BatchPredictionJob"}]})},
                "artifacts": {"gcs_output_directory": {"uri": directory, "metadata": {}},
                              "bigquery_output_table": {"uri": f"{output_prefix}/bigquery_output_table",
                                                        "metadata": {}},
                              "batchpredictionjob": {"uri": f"{output_prefix}/batchpredictionjob", "metadata": {}}}}
