"""The canary's BigQuery form, rehearsed: the evidence SQL through the real google-cloud-bigquery client against
the BigQuery REST stand-in (tests/bigquery_stand_in.py: every request and reply held to BigQuery's discovery
document, the SQL run on DuckDB through the tested translation), over a request-response log table in Vertex's
schema and a feedback table. The same made-up traffic, read locally from the endpoint's log files, gives the
same evidence: one SQL text, two engines."""

from __future__ import annotations

import datetime
import time

import numpy as np
import pytest

from deploy.evidence import (
    FEEDBACK_SCHEMA,
    REQUEST_LOG_SCHEMA,
    CanaryTables,
    EvidenceError,
    analysis_history,
    read_logged_predictions,
    record_analysis,
)
from deploy.local_evidence import DEFAULT_TABLES, DuckDBRunner
from deploy.vertex_evidence import BigQueryRunner
from storage import bigquery_dialect
from tests.bigquery_stand_in import BigQueryStandIn
from tests.deploy.canary_data import Traffic, write_log

PROJECT = "test-project"
TABLES = CanaryTables(f"bq://{PROJECT}.endpoint_logs.request_response_logging", f"bq://{PROJECT}.canary.feedback")


def _load(local_dir, rows: list[dict], feedback: list[dict]) -> None:
    """The tables as Vertex's logging and a labelling job leave them in BigQuery (here: the stand-in's files)."""
    with bigquery_dialect.connected([PROJECT], local_dir) as connection:
        for statement in (f"CREATE SCHEMA `{PROJECT}.endpoint_logs`", f"CREATE SCHEMA `{PROJECT}.canary`",
                          f"CREATE TABLE `{PROJECT}.endpoint_logs.request_response_logging` ({REQUEST_LOG_SCHEMA})",
                          f"CREATE TABLE `{PROJECT}.canary.feedback` ({FEEDBACK_SCHEMA})"):
            bigquery_dialect.run(connection, statement)
        if rows:
            connection.executemany(
                f'INSERT INTO "{PROJECT}".endpoint_logs.request_response_logging VALUES (?, ?, ?, ?, ?, ?)',
                [(row["endpoint"], row["deployed_model_id"], datetime.datetime.fromisoformat(row["logging_time"]),
                  int(row["request_id"]), row["request_payload"], row["response_payload"]) for row in rows])
        if feedback:
            connection.executemany(f'INSERT INTO "{PROJECT}".canary.feedback VALUES (?, ?, ?)',
                                   [(row["instance_id"], row["label"],
                                     datetime.datetime.fromtimestamp(row["feedback_time"], datetime.UTC))
                                    for row in feedback])


@pytest.fixture
def bigquery(tmp_path, monkeypatch):
    stand_in = BigQueryStandIn(tmp_path / "cloud", page_rows=150)  # small pages: the client must page
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", stand_in.url)
    try:
        yield stand_in
    finally:
        stand_in.close()


def test_the_evidence_through_bigquery_is_the_evidence_read_locally(bigquery, tmp_path):
    traffic = Traffic(DuckDBRunner(DEFAULT_TABLES, tmp_path / "local/log", tmp_path / "local"), seed=9)
    counts, rows, feedback = traffic.draw({"1": 70, "2": 30}, 600, {"2": {"noise": 1.0}}, labelled_share=0.8,
                                          spread_seconds=600)
    _load(bigquery.local_dir, rows, feedback)
    write_log(traffic.runner.request_log_dir, rows)  # the same requests, as the local endpoint logs them
    from deploy.local_evidence import write_feedback

    write_feedback(traffic.runner, feedback, time.time(), require_logged=False)
    start, end = time.time() - 700, time.time() + 1

    remote, remote_bucket = read_logged_predictions(BigQueryRunner(TABLES, PROJECT), TABLES, start, end)
    local, local_bucket = read_logged_predictions(traffic.runner, DEFAULT_TABLES, start, end)

    assert remote_bucket == local_bucket == 10 and set(remote) == set(local) == {"1", "2"}
    for deployed_id, evidence in remote.items():
        assert evidence.histogram == local[deployed_id].histogram and sum(evidence.histogram) == counts[deployed_id]
        assert dict(evidence.traffic) == dict(local[deployed_id].traffic)
        assert evidence.labelled == local[deployed_id].labelled > 0
        np.testing.assert_allclose(evidence.times, local[deployed_id].times)
        np.testing.assert_array_equal(evidence.probabilities, local[deployed_id].probabilities)
        np.testing.assert_array_equal(evidence.labels, local[deployed_id].labels)
    assert sum(evidence.labelled for evidence in remote.values()) == len(feedback)

    # What crossed the wire: query jobs with named, typed parameters; more rows than a page: getQueryResults pages.
    assert bigquery.server.reply_problems == []
    queried = [body["configuration"]["query"] for method, path, body in bigquery.requests
               if method == "POST" and path.endswith("/jobs")]
    assert len(queried) == 2 and all(query["parameterMode"] == "NAMED" and query["useLegacySql"] is False
                                     for query in queried)
    assert {p["name"]: p["parameterType"]["type"] for p in queried[0]["queryParameters"]} == {
        "window_start": "TIMESTAMP", "window_end": "TIMESTAMP", "bucket_seconds": "INT64", "bins": "INT64"}
    assert "`test-project.endpoint_logs.request_response_logging`" in queried[1]["query"]
    assert any(method == "GET" and "/queries/" in path and body.get("?", {}).get("pageToken")
               for method, path, body in bigquery.requests)
    assert set(bigquery.server.methods) == {"bigquery.jobs.insert", "bigquery.jobs.getQueryResults"}


def test_the_analyses_table_is_created_written_and_read_through_bigquery(bigquery):
    _load(bigquery.local_dir, [], [])
    runner = BigQueryRunner(TABLES, PROJECT)
    for percent, action in ((10, "advance"), (25, "hold")):
        record_analysis(runner, TABLES, {
            "decided_at": time.time(), "endpoint": "Vertex AI endpoint 'e'", "model_name": "m", "canary_version": "2",
            "champion_version": "1", "canary_deployed_model_id": "123", "canary_percent": percent, "action": action,
            "next_percent": 25, "checks": [{"name": "AUC", "status": "pass"}], "reasons": ["because"]})
    history = analysis_history(runner, TABLES, "Vertex AI endpoint 'e'", "123")
    assert [(row["canary_percent"], row["action"], row["checks"][0]["status"]) for row in history] == [
        (10, "advance", "pass"), (25, "hold", "pass")]
    assert any("CREATE TABLE IF NOT EXISTS `test-project.canary.canary_analyses`" in sql for sql in bigquery.queries)
    assert bigquery.server.reply_problems == []


def test_a_missing_table_is_named_in_a_clear_error(bigquery):
    with pytest.raises(EvidenceError, match=r"BigQuery refused the canary's evidence query on BigQuery "
                                            r"\(bq://test-project.endpoint_logs.request_response_logging, "
                                            r"bq://test-project.canary.feedback\): .*does not exist"):
        read_logged_predictions(BigQueryRunner(TABLES, PROJECT), TABLES, 0.0, time.time())
    with pytest.raises(EvidenceError, match="pass request_log_table=bq://PROJECT.DATASET.TABLE"):
        BigQueryRunner(None, PROJECT)


def test_the_stand_in_also_answers_jobs_query_with_its_pages(bigquery):
    """For reuse: `Client.query_and_wait` (REST jobs.query, then getQueryResults pages) gets the same rows."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery as client_library

    _load(bigquery.local_dir, [], [])
    with bigquery_dialect.connected([PROJECT], bigquery.local_dir) as connection:
        connection.execute(f'CREATE TABLE "{PROJECT}".canary.numbers AS SELECT range AS n FROM range(1, 401)')
    client = client_library.Client(project=PROJECT, credentials=AnonymousCredentials())
    rows = client.query_and_wait(f"SELECT n FROM `{PROJECT}.canary.numbers` WHERE n > @above ORDER BY n",
                                 job_config=client_library.QueryJobConfig(
                                     query_parameters=[client_library.ScalarQueryParameter("above", "INT64", 0)]))
    assert [row["n"] for row in rows] == list(range(1, 401))  # three pages of 150
    assert bigquery.server.methods[0] == "bigquery.jobs.query" and bigquery.server.reply_problems == []
    assert bigquery.server.methods.count("bigquery.jobs.getQueryResults") >= 2
