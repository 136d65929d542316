"""Stand-ins for the Vertex services behind GCPC's ModelGetOp and ModelBatchPredictOp, for the rehearsal.

Mocked, because no Vertex AI is reachable here: only the service side. The model lookup goes through the
real aiplatform client to the Model Registry stand-in. ModelBatchPredictOp is stood in for at its launcher:

1. The job it would create is built as GCPC 2.22 builds it: the `--payload` placeholder of the op in the
   compiled template, filled with the step's inputs as KFP's backend fills placeholders, then GCPC's own
   launcher code (`container/v1/batch_prediction_job/remote_runner.py`: the model artifact inserted,
   system labels, empty fields removed, BigQuery URIs given their scheme). That job is checked against
   aiplatform v1's `GoogleCloudAiplatformV1BatchPredictionJob` schema in the discovery document
   (fidelity/discovery.py) and converted to `aiplatform_v1.types.BatchPredictionJob`, as the GAPIC client
   the launcher calls does: a misspelled or mistyped field fails here as the API would refuse it.
2. The job runs as Vertex documents it, read from that typed job, not from the step's parameters:
   each JSONL line is one instance object; `instance_config.key_field` is taken out of the instance and
   comes back as the result's `key` (BatchPredictionJob.InstanceConfig); instances go to the model's
   serving container as `{"instances": [...]}` POSTs of `manual_batch_tuning_parameters.batch_size`
   (64 when unset). The container is the real one (`python -m serving.server`, the serving image's
   command) loading the model from its registered gs:// artifact URI in the GCS emulator.
3. Output as Vertex writes it for a custom container: results spread over several
   `prediction.results-0000k-of-0000n` files in no fixed order, and a request that fails (the container
   answers non-OK, or `timed_out` says so) is not written per instance: its instances are left out of the
   results and counted in `prediction.errors_stats-00000-of-00001` as a Python-tuple line
   `('Post request fails. Cannot get predictions. Error: Exceeded retries: Non-OK result 504 (...)', 16)`
   (Vertex AI batch prediction troubleshooting, "Exceeded retries"; googleapis/python-aiplatform#2666).
   docs/fidelity.md ("Batch prediction") lists each behaviour with its source and what is unconfirmed.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from fidelity import discovery
from storage import uri as storage_uri
from tests.gcs_emulator import GcsEmulator
from tests.serving.serving_helpers import ChildProcess, http_call, start_server, wait_healthy

GET_MODEL = "google_cloud_pipeline_components.container.v1.model.get_model.launcher"
BATCH_PREDICT = "google_cloud_pipeline_components.container.v1.batch_prediction_job.launcher"
JOB_SCHEMA = "GoogleCloudAiplatformV1BatchPredictionJob"
DEFAULT_BATCH_SIZE = 64  # Vertex's, when manual_batch_tuning_parameters.batch_size is 0 (BatchPredictionJob docs)
RESULT_FILES = 3  # how many prediction.results-* files a job's results are spread over here
# What Vertex answers a BatchPredictionJob with key_field and BigQuery output (VERTEX_FACTS: a known limit).
KEY_FIELD_WITH_BIGQUERY = ("400 INVALID_ARGUMENT: instance_config.key_field is not supported when "
                           "output_config.predictions_format is bigquery")
# The text Vertex writes for a request its retries could not get through (the confirmed part: Vertex AI
# troubleshooting, "Exceeded retries"; googleapis/python-aiplatform#2666 quotes it with the container's body).
FAILED_REQUEST = "Post request fails. Cannot get predictions. Error: Exceeded retries: Non-OK result {status} ({body})"
_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.(parameters|artifacts)\['([^']+)'\](?:\.metadata\['([^']+)'\])?\}\}")


def get_model(parameters: dict[str, Any], artifacts: dict[str, dict], output_prefix: str) -> dict[str, dict]:
    """ModelGetOp: GET projects/P/locations/L/models/{model_name} (ID, ID@VERSION or ID@ALIAS)."""
    from google.cloud import aiplatform

    name = f"projects/{parameters['project']}/locations/{parameters['location']}/models/{parameters['model_name']}"
    model = aiplatform.Model(name)
    resource = f"{model.resource_name.split('@', 1)[0]}@{model.version_id}"
    return {"artifacts": {"model": {"uri": f"https://{parameters['location']}-aiplatform.googleapis.com/v1/{resource}",
                                    "metadata": {"resourceName": resource}}}}


# --- the job GCPC's launcher would create ------------------------------------------------------------------

def payload_placeholder(template: Path) -> Any:
    """The `--payload` argument of ModelBatchPredictOp's executor in a compiled template (a KFP Concat)."""
    spec = json.loads(Path(template).read_text())
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container", {})
        if BATCH_PREDICT in container.get("command", []):
            args = container["args"]
            return json.loads(args[args.index("--payload") + 1])
    raise ValueError(f"{template}: no step runs {BATCH_PREDICT}")


def _text(value: Any) -> str:
    """A parameter as KFP's backend writes it into a placeholder (kubeflow/pipelines backend/src/v2,
    `PbValueToText`): a string as it is, a number without a needless fraction (1.0 -> "1"), a bool as
    true/false, a list or struct as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return "" if value is None else str(value)


def fill_placeholders(placeholder: Any, parameters: dict[str, Any], artifacts: dict[str, dict]) -> str:
    """A KFP IR placeholder (`{"Concat": [...]}`, `{"IfPresent": {...}}`, text with `{{$.inputs...}}`) as the
    text the launcher receives. IfPresent holds when the step has the input (defaults included)."""
    if isinstance(placeholder, str):
        def value(match: re.Match) -> str:
            kind, name, key = match.groups()
            if kind == "parameters":
                return _text(parameters[name])
            return _text(artifacts[name]["metadata"][key])

        return _PLACEHOLDER.sub(value, placeholder)
    if "Concat" in placeholder:
        return "".join(fill_placeholders(part, parameters, artifacts) for part in placeholder["Concat"])
    if "IfPresent" in placeholder:
        present = placeholder["IfPresent"]
        name = present["InputName"]
        chosen = present.get("Then") if name in parameters or name in artifacts else present.get("Else")
        return "" if chosen is None else fill_placeholders(chosen, parameters, artifacts)
    raise NotImplementedError(f"placeholder {placeholder!r:.80} is not one this stand-in fills")


def launcher_job_spec(payload: str, artifacts: dict[str, dict]) -> dict:
    """What GCPC's launcher hands `JobServiceClient.create_batch_prediction_job`, by GCPC's own code."""
    from google_cloud_pipeline_components.container.v1.batch_prediction_job import remote_runner
    from google_cloud_pipeline_components.container.v1.gcp_launcher.utils import json_util

    executor_input = json.dumps({"inputs": {"artifacts": {
        name: {"artifacts": [artifact]} for name, artifact in artifacts.items()}}})
    payload = remote_runner.insert_system_labels_into_payload(
        remote_runner.insert_artifact_into_payload(executor_input, payload))
    # job_remote_runner.JobRemoteRunner.create_job, then create_batch_prediction_job_with_client:
    return remote_runner.sanitize_job_spec(json_util.recursive_remove_empty(json.loads(payload, strict=False)))


def batch_prediction_job(placeholder: Any, parameters: dict[str, Any], artifacts: dict[str, dict]):
    """The BatchPredictionJob the op would create, held to aiplatform v1's discovery document; ValueError with
    Google's 400 wording for a field the API does not define or a value of the wrong JSON type."""
    from google.cloud.aiplatform_v1.types import BatchPredictionJob

    spec = launcher_job_spec(fill_placeholders(placeholder, parameters, artifacts), artifacts)
    problem = next(discovery.load("aiplatform.v1").problems(spec, {"$ref": JOB_SCHEMA}, ""), None)
    if problem:
        raise ValueError(f"400 INVALID_ARGUMENT: Invalid JSON payload received. {problem}")
    return BatchPredictionJob(spec)  # as the GAPIC client takes the launcher's dict


# --- the job, run --------------------------------------------------------------------------------------------

class BatchPredictionService:
    """ModelBatchPredictOp's service: runs the job against the real serving container, records each request.

    `timed_out`: (job number, request number) pairs, both from 0, that fail as a request whose retries
    time out (504 from Vertex's side, the container never sees it)."""

    def __init__(self, gcs: GcsEmulator | None, scratch: Path, template: Path, seed: int = 18,
                 timed_out: frozenset[tuple[int, int]] = frozenset()) -> None:
        self.gcs, self.scratch = gcs, scratch
        self.placeholder = payload_placeholder(template)
        self.random = random.Random(seed)
        self.timed_out = timed_out
        self.requests: list[dict] = []  # every body sent to the container
        self.statuses: list[int] = []  # the answer to each request (504 for one timed out here)
        self.jobs: list[dict] = []  # every job created, as BatchPredictionJob JSON
        self.outputs: list[str] = []  # every job's output directory
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
        from google.cloud.aiplatform_v1.types import BatchPredictionJob

        job = batch_prediction_job(self.placeholder, parameters, artifacts)
        job_number = len(self.jobs)
        self.jobs.append(json.loads(BatchPredictionJob.to_json(job)))
        config = job.instance_config
        key_field = config.key_field
        if key_field and job.output_config.predictions_format == "bigquery":
            raise ValueError(KEY_FIELD_WITH_BIGQUERY)
        if job.input_config.instances_format != "jsonl" or not job.output_config.gcs_destination.output_uri_prefix:
            raise NotImplementedError("the rehearsal stands in for gs:// JSONL in and out only (no BigQuery here)")
        if config.instance_type != "object" or config.included_fields or config.excluded_fields:
            raise NotImplementedError("the stand-in imitates instance_type 'object' with a key_field only")
        server = self._server(aiplatform.Model(job.model).uri)
        batch_size = job.manual_batch_tuning_parameters.batch_size or DEFAULT_BATCH_SIZE

        results: list[bytes] = []
        failures: Counter[str] = Counter()
        pending: list[tuple[Any, dict]] = []
        request_number = 0

        def send() -> None:
            nonlocal request_number
            body = {"instances": [instance for _, instance in pending]}
            request_number += 1
            if (job_number, request_number - 1) in self.timed_out:
                status, text = 504, "upstream request timeout"
            else:
                self.requests.append(body)
                answer = http_call("POST", server.url + "/predict", body)
                status, text = answer.status, answer.body.decode()
            self.statuses.append(status)
            if status == 200:
                for (key, instance), prediction in zip(pending, json.loads(text)["predictions"], strict=True):
                    results.append(orjson.dumps(({"key": key} if key_field else {"instance": instance})
                                                | {"prediction": prediction}))
            else:  # the request's instances are left out of the results and counted under its reason
                failures[FAILED_REQUEST.format(status=status, body=text)] += len(pending)
            pending.clear()

        for uri in job.input_config.gcs_source.uris:
            for line in storage_uri.read_text(uri).splitlines():
                if line.strip():
                    instance = json.loads(line)
                    pending.append((instance.pop(key_field) if key_field else None, instance))
                    if len(pending) == batch_size:
                        send()
        if pending:
            send()
        directory = self._write_output(job, aiplatform.Model(job.model).display_name, results, failures)
        return {"parameters": {"gcp_resources": json.dumps({"resources": [{"resourceType": "BatchPredictionJob"}]})},
                "artifacts": {"gcs_output_directory": {"uri": directory, "metadata": {}},
                              "bigquery_output_table": {"uri": f"{output_prefix}/bigquery_output_table",
                                                        "metadata": {}},
                              "batchpredictionjob": {"uri": f"{output_prefix}/batchpredictionjob", "metadata": {}}}}

    def _write_output(self, job, model_display_name: str, results: list[bytes], failures: Counter[str]) -> str:
        """Results shuffled over RESULT_FILES files; failed requests as tuple lines in errors_stats. The folder:
        `prediction-<model-display-name>-<job-create-time>` (aiplatform_v1 BatchPredictionJob.OutputConfig)."""
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        directory = (f"{job.output_config.gcs_destination.output_uri_prefix.rstrip('/')}/"
                     f"prediction-{model_display_name}-{created}")
        self.random.shuffle(results)
        for index in self.random.sample(range(RESULT_FILES), RESULT_FILES):  # files written in no fixed order
            part = results[index::RESULT_FILES]
            self.gcs.upload_bytes(f"{directory}/prediction.results-{index:05d}-of-{RESULT_FILES:05d}",
                                  b"".join(line + b"\n" for line in part))
        self.gcs.upload_bytes(f"{directory}/prediction.errors_stats-00000-of-00001",
                              "".join(f"{(reason, count)!r}\n" for reason, count in failures.items()).encode())
        self.outputs.append(directory)
        return directory
