"""The Vertex job's plan, and the BigQuery SQL step's calls through the real google-cloud-bigquery client
against a local stand-in of the BigQuery REST API (no BigQuery emulator works offline: PLATFORM_NOTES)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from vertex_batch_stand_in import KEY_FIELD_WITH_BIGQUERY, BatchPredictionService

from batch_prediction.local_bigquery import BigQueryUriError
from batch_prediction.predictor import ModelIdentity
from batch_prediction.vertex_job import PlanError, plan_job, publish_bigquery_job_output
from tests.stand_in_http import StandInServer, google_error

IDENTITY = ModelIdentity("projects/p/locations/us-central1/models/42", "3")


def test_plan_for_jsonl_files_and_bigquery(gcs_emulator, gcs_bucket):
    gcs_emulator.upload_bytes(f"gs://{gcs_bucket}/in/a.jsonl", b'{"fare": 1}\n')
    gcs_emulator.upload_bytes(f"gs://{gcs_bucket}/in/_SUCCESS", b"")
    files = plan_job(f"gs://{gcs_bucket}/in", f"gs://{gcs_bucket}/out", "trip_id", "r1")
    assert (files.instances_format, files.gcs_source_uris, files.key_field) == (
        "jsonl", [f"gs://{gcs_bucket}/in/a.jsonl"], "trip_id")
    assert files.gcs_destination_output_uri_prefix == f"gs://{gcs_bucket}/out/_vertex_jobs/r1"
    table = plan_job("bq://my-project.taxi.trips", "bq://my-project.scores", "unique_key", "r1")
    assert (table.instances_format, table.bigquery_source_input_uri, table.instance_type) == (
        "bigquery", "bq://my-project.taxi.trips", "object")
    # Vertex refuses key_field with BigQuery output: the plan never sends it; the SQL step reads the column.
    assert (table.predictions_format, table.key_field) == ("bigquery", "")


@pytest.mark.parametrize("source, destination, key_field, message", [
    ("CSV", "gs://b/out", "k", r"holds csv files; a Vertex batch job takes JSONL files here"),
    ("bq://my-project.taxi.trips", "bq://my-project.scores", "",
     r"BigQuery output on Vertex needs key_field"),
    ("bq://my-project.taxi", "gs://b/out", "k", r"is not a BigQuery table; expected bq://PROJECT.DATASET.TABLE"),
    ("bq://my-project.taxi.trips", "bq://My_Project.scores", "k", r"is not a BigQuery dataset"),
    ("data/processed", "gs://b/out", "k", r"on Vertex expected a gs:// prefix of JSONL files"),
    ("bq://my-project.taxi.trips", "local/out", "k", r"on Vertex expected gs://BUCKET/prefix or bq://"),
])
def test_plan_refuses_what_the_job_cannot_take(source, destination, key_field, message, gcs_emulator, gcs_bucket):
    if source == "CSV":
        source = gcs_emulator.upload_bytes(f"gs://{gcs_bucket}/in/a.csv", b"fare\n1\n").rsplit("/", 1)[0]
    with pytest.raises((PlanError, BigQueryUriError), match=message):
        plan_job(source, destination, key_field, "r1")


def test_the_vertex_stand_in_refuses_key_field_with_bigquery_output(tmp_path):
    service = BatchPredictionService(gcs=None, scratch=tmp_path)
    with pytest.raises(ValueError, match="key_field is not supported"):
        service({"key_field": "k", "bigquery_destination_output_uri": "bq://p.d"}, {}, "gs://b/x")
    assert "400 INVALID_ARGUMENT" in KEY_FIELD_WITH_BIGQUERY


class FakeBigQuery:
    """jobs.insert, jobs.getQueryResults and jobs.get of the BigQuery REST API v2, recording each request.
    `fail_with`: the errorResult a finished job reports (as BigQuery does for a missing table)."""

    def __init__(self, fail_with: dict | None = None) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        self.jobs: dict[str, dict] = {}
        self.fail_with = fail_with
        self.server = StandInServer(self._answer, ("bigquery.v2",))

    def _job(self, job_id: str) -> dict:
        job = self.jobs[job_id]
        status = {"state": "DONE"} | ({"errorResult": self.fail_with, "errors": [self.fail_with]}
                                      if self.fail_with else {})
        return job | {"status": status, "statistics": {"query": {"statementType": "SCRIPT"}}}

    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        url = urlsplit(path)
        payload = json.loads(body) if body else {}
        self.requests.append((method, url.path, payload))
        parts = url.path.split("/")  # /bigquery/v2/projects/P/jobs[/ID] or /queries/ID
        if method == "POST" and parts[-1] == "jobs":
            job_id = payload["jobReference"]["jobId"]
            self.jobs[job_id] = payload | {"id": f"{parts[4]}:{job_id}"}
            return 200, self._job(job_id)
        if method == "GET" and parts[-2] in ("jobs", "queries") and parts[-1] in self.jobs:
            job = self._job(parts[-1])
            if parts[-2] == "jobs":
                return 200, job
            if self.fail_with:
                return 404, google_error(404, "NOT_FOUND", self.fail_with["message"])
            return 200, {"kind": "bigquery#getQueryResultsResponse", "jobReference": job["jobReference"],
                         "jobComplete": True, "totalRows": "0", "schema": {"fields": []}}
        return 404, google_error(404, "NOT_FOUND", f"{method} {url.path} is not stood in for")


def test_the_sql_step_replaces_the_runs_rows_in_one_transaction(monkeypatch):
    fake = FakeBigQuery()
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake.server.url)
    try:
        job_id = publish_bigquery_job_output("test-project.scoring.predictions_2026_01_01T00_00_00_000Z", "bq://test-project.scores",
                                             "2026-01-01", IDENTITY, "unique_key", "test-project", "us-central1")
    finally:
        fake.server.close()
    method, path, insert = fake.requests[0]
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
    assert "FROM `test-project.scoring.predictions_2026_01_01T00_00_00_000Z`;" in sql
    assert "FROM `test-project.scoring.errors_2026_01_01T00_00_00_000Z`;" in sql
    assert "CAST(`unique_key` AS STRING)" in sql
    assert insert["jobReference"].get("location") == "us-central1"
    assert ("GET", f"/bigquery/v2/projects/test-project/queries/{job_id}") in [(m, p) for m, p, _ in fake.requests]


def test_a_failed_sql_step_names_the_table_and_the_reason(monkeypatch):
    missing = "Not found: Table test-project:scoring.predictions_x"
    fake = FakeBigQuery(fail_with={"reason": "notFound", "message": missing})
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", fake.server.url)
    try:
        with pytest.raises(RuntimeError, match=r"BigQuery could not publish the batch job's table test-project"
                                               r".scoring.predictions_x into bq://test-project.scores "
                                               r"\(job .*\): Not found"):
            publish_bigquery_job_output("test-project.scoring.predictions_x", "bq://test-project.scores", "r",
                                        IDENTITY, "k", "test-project", "")
    finally:
        fake.server.close()
