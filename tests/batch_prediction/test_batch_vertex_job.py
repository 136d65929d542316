"""The Vertex job's plan (staging with source rows as keys), its output read whatever lines the job wrote, the
job the stand-in builds held to aiplatform's discovery document, and the BigQuery SQL step's calls through the
real google-cloud-bigquery client against a local stand-in of the BigQuery REST API (no BigQuery emulator
works offline: PLATFORM_NOTES)."""

from __future__ import annotations

import json
import random
import re
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from vertex_batch_stand_in import KEY_FIELD_WITH_BIGQUERY, BatchPredictionService, payload_placeholder

from batch_prediction.local_bigquery import BigQueryUriError
from batch_prediction.output import ERRORS, PREDICTIONS, output_files, read_manifest
from batch_prediction.predictor import ModelIdentity
from batch_prediction.vertex_job import (
    SENT_ROWS_FILE,
    STAGED_KEY_FIELD,
    PlanError,
    plan_job,
    publish_bigquery_job_output,
    publish_gcs_job_output,
    read_staged_key,
)
from contract.model_inputs import InputSpec
from pipelines.compile import COMPILED_DIR
from storage import uri as storage_uri
from tests.stand_in_http import StandInServer, google_error

IDENTITY = ModelIdentity("projects/p/locations/us-central1/models/42", "3")
SPEC = InputSpec({"fare": "float32", "payment_type": "string"})
TEMPLATE = COMPILED_DIR / "batch_prediction_pipeline.json"
# What a custom container's failed request leaves in prediction.errors_stats-* (VERTEX_FACTS, "Batch prediction").
TIMEOUT = ("Post request fails. Cannot get predictions. Error: Exceeded retries: Non-OK result 504 "
           "(upstream request timeout)")


def _read(uri: str) -> list[dict]:
    return pq.read_table(pa.BufferReader(storage_uri.read_bytes(uri))).to_pylist()


def _published(destination: str, run_id: str, table: str) -> list[dict]:
    return [row for uri in output_files(destination, run_id, table) for row in _read(uri)]


def test_plan_stages_every_gs_source_with_its_source_row_as_the_jobs_key(gcs_emulator, gcs_bucket):
    """Issue 18, defect 2: without key_field, JSONL and CSV alike are staged; each instance carries
    [shard, row, key] under the job's key_field, row counting every data row (the bad ones too)."""
    jsonl = gcs_emulator.upload_bytes(f"gs://{gcs_bucket}/in/a.jsonl",
                                      b'{"fare": 1, "trip_id": "t1", "extra": 5}\nnot json\n\n{"fare": 2.5, '
                                      b'"payment_type": "Cash"}\n')
    csv = gcs_emulator.upload_bytes(f"gs://{gcs_bucket}/in/b.csv", b"fare,payment_type\n3,Card\n1,2,3\n4,NA\n")
    gcs_emulator.upload_bytes(f"gs://{gcs_bucket}/in/_SUCCESS", b"")
    plan = plan_job(f"gs://{gcs_bucket}/in", f"gs://{gcs_bucket}/out", "", "r1", SPEC)
    job_folder = f"gs://{gcs_bucket}/out/_vertex_jobs/r1"
    assert (plan.instances_format, plan.instance_type, plan.key_field) == ("jsonl", "object", STAGED_KEY_FIELD)
    assert (plan.gcs_destination_output_uri_prefix, plan.sent_rows) == (job_folder, f"{job_folder}/{SENT_ROWS_FILE}")
    instances = [json.loads(line) for uri in plan.gcs_source_uris
                 for line in storage_uri.read_text(uri).splitlines()]
    assert [read_staged_key(instance.pop(STAGED_KEY_FIELD)) for instance in instances] == [
        (jsonl, 0, None), (jsonl, 2, None), (csv, 0, None), (csv, 2, None)]
    assert instances == [{"fare": 1, "payment_type": None}, {"fare": 2.5, "payment_type": "Cash"},
                         {"fare": 3.0, "payment_type": "Card"}, {"fare": 4.0, "payment_type": "NA"}]
    sent = _read(plan.sent_rows)
    assert [(row["shard"], row["row"], row["line"], row["reason"] is None) for row in sent] == [
        (jsonl, 0, None, True), (jsonl, 2, None, True), (jsonl, 1, 2, False),
        (csv, 0, None, True), (csv, 2, None, True), (csv, 1, 3, False)]

    keyed = plan_job(f"gs://{gcs_bucket}/in/a.jsonl", f"gs://{gcs_bucket}/out", "trip_id", "r2", SPEC)
    [first] = [json.loads(line) for line in storage_uri.read_text(keyed.gcs_source_uris[0]).splitlines()]
    assert read_staged_key(first[STAGED_KEY_FIELD]) == (jsonl, 0, "t1") and "trip_id" not in first
    assert [row["reason"] for row in _read(keyed.sent_rows) if row["reason"]] == [
        "not JSON (Expecting value); expected one JSON object per line",
        "key field 'trip_id' is empty; expected a value that identifies the row"]


def test_plan_for_bigquery(gcs_emulator, gcs_bucket):
    table = plan_job("bq://my-project.taxi.trips", "bq://my-project.scores", "unique_key", "r1", SPEC)
    assert (table.instances_format, table.bigquery_source_input_uri, table.instance_type) == (
        "bigquery", "bq://my-project.taxi.trips", "object")
    # Vertex refuses key_field with BigQuery output: the plan never sends it; the SQL step reads the column.
    assert (table.predictions_format, table.key_field, table.sent_rows) == ("bigquery", "", "")
    to_files = plan_job("bq://my-project.taxi.trips", f"gs://{gcs_bucket}/out", "unique_key", "r1", SPEC)
    assert (to_files.key_field, to_files.sent_rows) == ("unique_key", "")
    gcs_emulator.upload_bytes(f"gs://{gcs_bucket}/in/a.jsonl", b'{"fare": 1, "k": "a"}\n')
    into_bigquery = plan_job(f"gs://{gcs_bucket}/in", "bq://my-project.scores", "k", "r1", SPEC)
    assert (into_bigquery.gcs_source_uris, into_bigquery.key_field) == ([f"gs://{gcs_bucket}/in/a.jsonl"], "")


@pytest.mark.parametrize("source, destination, key_field, message", [
    ("CSV", "bq://my-project.scores", "k", r"holds csv files; with a BigQuery destination the Vertex job reads "
                                          r"JSONL files"),
    ("bq://my-project.taxi.trips", "bq://my-project.scores", "",
     r"BigQuery output on Vertex needs key_field"),
    ("bq://my-project.taxi.trips", "gs://b/out", "", r"a BigQuery table's rows have no position"),
    ("bq://my-project.taxi", "gs://b/out", "k", r"is not a BigQuery table; expected bq://PROJECT.DATASET.TABLE"),
    ("bq://my-project.taxi.trips", "bq://My_Project.scores", "k", r"is not a BigQuery dataset"),
    ("data/processed", "gs://b/out", "k", r"on Vertex expected a gs:// prefix of CSV, JSONL or Parquet files"),
    ("bq://my-project.taxi.trips", "local/out", "k", r"on Vertex expected gs://BUCKET/prefix or bq://"),
    ("HEADER", "gs://b/out", "", r"no row to send to the job"),
])
def test_plan_refuses_what_the_job_cannot_take(source, destination, key_field, message, gcs_emulator, gcs_bucket):
    if source in ("CSV", "HEADER"):
        content = b"fare\n1\n" if source == "CSV" else b"fare,payment_type\n1\n"
        source = gcs_emulator.upload_bytes(f"gs://{gcs_bucket}/in/a.csv", content).rsplit("/", 1)[0]
        destination = destination.replace("gs://b", f"gs://{gcs_bucket}")
    with pytest.raises((PlanError, BigQueryUriError), match=message):
        plan_job(source, destination, key_field, "r1", SPEC)


def test_a_failed_request_does_not_crash_the_publish_step_and_its_rows_are_counted(tmp_path):
    """Issue 18, defect 1: a Python-tuple line in errors_stats, per-instance `error` lines (other model kinds),
    a line nobody can read: the step publishes, counts the rows the job lost and says why."""
    job = tmp_path / "prediction-42-2026_01_01T00_00_00"
    job.mkdir()
    (job / "prediction.results-00000-of-00002").write_text('{"key": "k1", "prediction": {"probability": 0.25}}\n')
    (job / "prediction.results-00001-of-00002").write_text(
        '{"key": "k3", "error": {"code": 3, "message": "bad instance"}}\n{"key": "k2", "prediction": 0.5}\n'
        "garbage{\n")
    (job / "prediction.errors_stats-00000-of-00001").write_text(repr((TIMEOUT, 16)) + "\n")
    counts = publish_gcs_job_output(str(job), str(tmp_path / "out"), "r", IDENTITY, "k", source="bq://p.d.t")
    predictions = {row["key"]: row["prediction"] for row in _published(str(tmp_path / "out"), "r", PREDICTIONS)}
    assert predictions == {"k1": 0.25, "k2": 0.5}
    errors = _published(str(tmp_path / "out"), "r", ERRORS)
    assert [(error["key"], error["shard"], error["reason"]) for error in errors] == [
        ("k3", "bq://p.d.t", "bad instance"),
        (None, str(job / "prediction.errors_stats-00000-of-00001"),
         f"16 instance(s) of bq://p.d.t not in the job's output: {TIMEOUT}")]
    assert {name: counts[name] for name in ("rows_read", "rows_failed", "rows_not_returned", "unreadable_lines")} == {
        "rows_read": 19, "rows_failed": 17, "rows_not_returned": 16, "unreadable_lines": 1}
    manifest = read_manifest(str(tmp_path / "out"), "r")
    assert manifest["metrics"]["rows_failed"] == 17 and manifest["error_statistics"][0]["count"] == 16
    assert manifest["unreadable_lines"] == [f"{job / 'prediction.results-00001-of-00002'}, line 3: not a result nor "
                                            "an error statistic: 'garbage{'"]


@pytest.mark.parametrize("key_field", ["", "trip_id"])
def test_every_row_sent_and_not_returned_is_named_by_its_source_row(key_field, gcs_emulator, gcs_bucket):
    """Issues 18, defects 1 and 2: the job answers some staged instances, in shuffled files, and loses the
    rest with a tuple line; every output and error row names its source row, with or without key_field."""
    rows = [f"t{index},{index}.5,Cash" for index in range(12)]
    rows[4] = "t4,oops"  # refused before the job: the format's problem
    shard = gcs_emulator.upload_bytes(f"gs://{gcs_bucket}/in/batch.csv",
                                      ("trip_id,fare,payment_type\n" + "\n".join(rows) + "\n").encode())
    destination = f"gs://{gcs_bucket}/scores"
    plan = plan_job(f"gs://{gcs_bucket}/in", destination, key_field, "r", SPEC)
    staged = [json.loads(line) for uri in plan.gcs_source_uris for line in storage_uri.read_text(uri).splitlines()]
    answered = [instance for instance in staged if read_staged_key(instance[STAGED_KEY_FIELD])[1] < 8]
    results = [json.dumps({"key": instance[STAGED_KEY_FIELD], "prediction": {"probability": instance["fare"] / 100}})
               for instance in answered]
    results.append(results[0])  # a result written twice is published once
    random.Random(1).shuffle(results)
    job = f"{plan.gcs_destination_output_uri_prefix}/prediction-42-2026_01_01T00_00_00"
    for index in (1, 0):
        gcs_emulator.upload_bytes(f"{job}/prediction.results-0000{index}-of-00002",
                                  "\n".join(results[index::2]).encode())
    gcs_emulator.upload_bytes(f"{job}/prediction.errors_stats-00000-of-00001", (repr((TIMEOUT, 4)) + "\n").encode())

    counts = publish_gcs_job_output(job, destination, "r", IDENTITY, key_field, sent_rows=plan.sent_rows)
    key = (lambda row: f"t{row}") if key_field else (lambda row: f"{shard}#{row}")
    published = _published(destination, "r", PREDICTIONS)
    predictions = {row["key"]: row["prediction"] for row in published}
    assert len(published) == 7 and counts["duplicates"] == 1
    assert predictions == pytest.approx({key(row): (row + 0.5) / 100 for row in range(8) if row != 4})
    errors = {error["key"]: error for error in _published(destination, "r", ERRORS)}
    refused = errors.pop(None if key_field else key(4))
    assert (refused["shard"], refused["row"], refused["line"]) == (shard, 4, 6)
    assert set(errors) == {key(row) for row in range(8, 12)}
    for row in range(8, 12):
        assert (errors[key(row)]["shard"], errors[key(row)]["row"]) == (shard, row)
        assert errors[key(row)]["reason"] == ("sent to the batch job but not in its output; the job's error "
                                              f"statistics: {TIMEOUT} (4 instances)")
    assert {name: counts[name] for name in ("rows_read", "rows_predicted", "rows_failed", "rows_not_returned")} == {
        "rows_read": 12, "rows_predicted": 7, "rows_failed": 5, "rows_not_returned": 4}


# --- the job the stand-in builds, held to the discovery document --------------------------------------------

def _op_inputs(**overrides) -> tuple[dict, dict]:
    """ModelBatchPredictOp's inputs as the rehearsal hands them over: the template's defaults, then ours."""
    spec = json.loads(TEMPLATE.read_text())
    definitions = spec["components"]["comp-model-batch-predict"]["inputDefinitions"]["parameters"]
    parameters = {name: value["defaultValue"] for name, value in definitions.items() if "defaultValue" in value}
    parameters |= {"job_display_name": "r1", "instances_format": "jsonl", "predictions_format": "jsonl",
                   "gcs_source_uris": ["gs://b/in/part-00000.jsonl"], "instance_type": "object",
                   "key_field": STAGED_KEY_FIELD, "gcs_destination_output_uri_prefix": "gs://b/out",
                   "machine_type": "n1-standard-2", "starting_replica_count": 1, "max_replica_count": 2,
                   "project": "p", "location": "us-central1"} | overrides
    artifacts = {"model": {"uri": "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/"
                                  "us-central1/models/1@1",
                           "metadata": {"resourceName": "projects/p/locations/us-central1/models/1@1"}}}
    return parameters, artifacts


def test_the_job_gcpc_would_create_is_held_to_the_discovery_document(tmp_path):
    from vertex_batch_stand_in import batch_prediction_job

    placeholder = payload_placeholder(TEMPLATE)
    job = batch_prediction_job(placeholder, *_op_inputs())
    assert (job.instance_config.key_field, job.input_config.gcs_source.uris[0]) == (
        STAGED_KEY_FIELD, "gs://b/in/part-00000.jsonl")
    assert job.dedicated_resources.max_replica_count == 2 and job.model.endswith("/models/1@1")
    misspelled = json.loads(json.dumps(placeholder).replace('\\"key_field\\"', '\\"key_feild\\"'))
    with pytest.raises(ValueError, match="400 INVALID_ARGUMENT: .*Unknown name \"key_feild\" at 'instance_config'"):
        batch_prediction_job(misspelled, *_op_inputs())
    with pytest.raises(ValueError, match=r"400 INVALID_ARGUMENT: .*Invalid value at 'labels'"):
        batch_prediction_job(placeholder, *_op_inputs(labels=["team"]))  # a map, not a list
    service = BatchPredictionService(gcs=None, scratch=tmp_path, template=TEMPLATE)
    with pytest.raises(ValueError, match="key_field is not supported"):
        service(*_op_inputs(predictions_format="bigquery", gcs_destination_output_uri_prefix="",
                            bigquery_destination_output_uri="bq://p.d"), "gs://b/x")
    assert "400 INVALID_ARGUMENT" in KEY_FIELD_WITH_BIGQUERY


# --- the BigQuery SQL step ------------------------------------------------------------------------------------

class FakeBigQuery:
    """datasets.get, jobs.insert, jobs.getQueryResults and jobs.get of the BigQuery REST API v2, recording each
    request. `datasets`: "project.dataset" -> its location. `fail_with`: the errorResult a finished job reports
    (as BigQuery does for a missing table).

    Location rule (BigQuery, "Specify locations", https://cloud.google.com/bigquery/docs/locations
    #specify_locations): a query runs in one location and reads only datasets stored there; a job given no
    location runs where the datasets it references are. A job pinned elsewhere fails with BigQuery's
    "Not found: Dataset P:D was not found in location L" (its wording as users quote it:
    googleapis/google-cloud-python#15691)."""

    def __init__(self, datasets: dict[str, str] | None = None, fail_with: dict | None = None) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        self.jobs: dict[str, dict] = {}
        self.datasets = datasets or {}
        self.fail_with = fail_with
        self.server = StandInServer(self._answer, ("bigquery.v2",))

    def _job(self, job_id: str) -> dict:
        job = self.jobs[job_id]
        failure = self.fail_with or job.get("failure")
        status = {"state": "DONE"} | ({"errorResult": failure, "errors": [failure]} if failure else {})
        return {key: value for key, value in job.items() if key != "failure"} | {
            "status": status, "statistics": {"query": {"statementType": "SCRIPT"}}}

    def _placed(self, payload: dict) -> dict:
        """The job as BigQuery starts it: in its given location, or where its datasets are; a dataset stored
        elsewhere fails it."""
        referenced = {".".join(name.split(".")[:2])
                      for name in re.findall(r"`([^`]+)`", payload["configuration"]["query"]["query"])}
        located = {name: self.datasets[name] for name in referenced if name in self.datasets}
        location = payload["jobReference"].get("location") or next(iter(located.values()), "US")
        elsewhere = sorted(name for name, where in located.items() if where.lower() != location.lower())
        job = payload | {"jobReference": payload["jobReference"] | {"location": location}}
        if elsewhere:
            project, dataset = elsewhere[0].split(".")
            message = f"Not found: Dataset {project}:{dataset} was not found in location {location}"
            job["failure"] = {"reason": "notFound", "message": message}
        return job

    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        url = urlsplit(path)
        payload = json.loads(body) if body else {}
        self.requests.append((method, url.path, payload))
        parts = url.path.split("/")  # /bigquery/v2/projects/P/jobs[/ID], /queries/ID or /datasets/D
        if method == "GET" and parts[-2] == "datasets":
            name = f"{parts[4]}.{parts[-1]}"
            if name not in self.datasets:
                return 404, google_error(404, "NOT_FOUND", f"Not found: Dataset {parts[4]}:{parts[-1]}")
            return 200, {"kind": "bigquery#dataset", "id": f"{parts[4]}:{parts[-1]}",
                         "datasetReference": {"projectId": parts[4], "datasetId": parts[-1]},
                         "location": self.datasets[name]}
        if method == "POST" and parts[-1] == "jobs":
            job_id = payload["jobReference"]["jobId"]
            self.jobs[job_id] = self._placed(payload) | {"id": f"{parts[4]}:{job_id}"}
            return 200, self._job(job_id)
        if method == "GET" and parts[-2] in ("jobs", "queries") and parts[-1] in self.jobs:
            job = self._job(parts[-1])
            if parts[-2] == "jobs":
                return 200, job
            if "errorResult" in job["status"]:
                return 404, google_error(404, "NOT_FOUND", job["status"]["errorResult"]["message"])
            return 200, {"kind": "bigquery#getQueryResultsResponse", "jobReference": job["jobReference"],
                         "jobComplete": True, "totalRows": "0", "schema": {"fields": []}}
        return 404, google_error(404, "NOT_FOUND", f"{method} {url.path} is not stood in for")


JOB_TABLE = "test-project.scores.predictions_2026_01_01T00_00_00_000Z"


def test_the_sql_step_replaces_the_runs_rows_in_one_transaction(monkeypatch):
    fake = FakeBigQuery({"test-project.scores": "us-central1"})
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake.server.url)
    try:
        job_id = publish_bigquery_job_output(JOB_TABLE, "bq://test-project.scores", "2026-01-01", IDENTITY,
                                             "unique_key", "test-project")
    finally:
        fake.server.close()
    assert fake.requests[0][:2] == ("GET", "/bigquery/v2/projects/test-project/datasets/scores")
    method, path, insert = fake.requests[1]
    assert (method, path) == ("POST", "/bigquery/v2/projects/test-project/jobs")
    assert insert["jobReference"]["jobId"] == job_id
    query = insert["configuration"]["query"]
    assert query["useLegacySql"] is False and query["parameterMode"] == "NAMED"
    assert {p["name"]: p["parameterValue"]["value"] for p in query["queryParameters"]} == {
        "run_id": "2026-01-01", "model_resource_name": IDENTITY.resource_name, "model_version": "3"}
    sql = query["query"]
    statements = [line.split(" ")[0] for line in sql.splitlines() if line and not line.startswith((" ", "FROM"))]
    assert statements == ["CREATE", "CREATE", "BEGIN", "DELETE", "INSERT", "SELECT", "DELETE", "INSERT", "SELECT",
                          "COMMIT"]
    assert "DELETE FROM `test-project.scores.predictions` WHERE run_id = @run_id;" in sql
    assert "FROM `test-project.scores.predictions_2026_01_01T00_00_00_000Z`;" in sql
    assert "FROM `test-project.scores.errors_2026_01_01T00_00_00_000Z`;" in sql
    assert "CAST(`unique_key` AS STRING)" in sql
    assert insert["jobReference"].get("location") == "us-central1"
    assert ("GET", f"/bigquery/v2/projects/test-project/queries/{job_id}") in [(m, p) for m, p, _ in fake.requests]


def test_the_sql_step_runs_in_the_destination_datasets_location(monkeypatch):
    """Issue 18, defect 3: a us-central1 pipeline publishing into a dataset of the US multi-region. Pinned to the
    pipeline's region (what the step did), BigQuery cannot find the dataset; the step now asks the dataset."""
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    fake = FakeBigQuery({"test-project.scores": "US"})
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake.server.url)
    try:
        pinned = bigquery.Client(project="test-project", location="us-central1", credentials=AnonymousCredentials())
        with pytest.raises(exceptions.NotFound, match="Dataset test-project:scores was not found in location "
                                                      "us-central1"):
            pinned.query(f"SELECT * FROM `{JOB_TABLE}`").result()
        publish_bigquery_job_output(JOB_TABLE, "bq://test-project.scores", "r", IDENTITY, "k", "test-project")
        with pytest.raises(RuntimeError, match=r"could not read the destination dataset bq://test-project.missing"):
            publish_bigquery_job_output("test-project.missing.predictions_x", "bq://test-project.missing", "r",
                                        IDENTITY, "k", "test-project")
    finally:
        fake.server.close()
    assert fake.requests[-3][2]["jobReference"]["location"] == "US"


def test_a_failed_sql_step_names_the_table_and_the_reason(monkeypatch):
    missing = "Not found: Table test-project:scores.predictions_x"
    fake = FakeBigQuery({"test-project.scores": "EU"}, fail_with={"reason": "notFound", "message": missing})
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake.server.url)
    try:
        with pytest.raises(RuntimeError, match=r"BigQuery could not publish the batch job's table test-project"
                                               r".scores.predictions_x into bq://test-project.scores "
                                               r"\(job .*, in EU\): Not found"):
            publish_bigquery_job_output("test-project.scores.predictions_x", "bq://test-project.scores", "r",
                                        IDENTITY, "k", "test-project")
    finally:
        fake.server.close()


def test_fake_bigquery_answers_a_misspelled_field_with_googles_400():
    import urllib.error
    import urllib.request

    fake = FakeBigQuery({"test-project.scores": "US"})
    try:
        request = urllib.request.Request(
            f"{fake.server.url}/bigquery/v2/projects/test-project/jobs", method="POST",
            data=json.dumps({"jobReference": {"jobId": "j1", "locaton": "US"}}).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
    finally:
        fake.server.close()
    assert refused.value.code == 400 and fake.requests == []  # the validator answered; the fake never saw it
    assert 'Unknown name "locaton" at \'job_reference\'' in json.loads(refused.value.read())["error"]["message"]
