"""Runs over a BigQuery table: the schedule by configuration alone, `--submit` without a listing. The run's
snapshot step pins the table (dataprep/bigquery_source.py), so no trigger names its version."""

from __future__ import annotations

import json

from cloudevents.http import to_binary
from test_triggers_schedule import scheduler_message
from trigger_helpers import TRAINING_TEMPLATE, FakeVertex

import runner

TABLE = "bq://my-project.taxi.trips"
BIGQUERY_RUN = {"data_uri": TABLE, "row_filter": "trip_start_timestamp >= 1420070400", "snapshot_expiration_days": 30}


def test_the_schedule_submits_runs_over_a_table_by_configuration_alone(function_app, trigger_env, monkeypatch,
                                                                         fake_vertex: FakeVertex) -> None:
    monkeypatch.setenv("MLOPS_SCHEDULE_PARAMETER", "none")  # the table is the data: no partition to compute
    monkeypatch.setenv("MLOPS_PIPELINE_PARAMETERS", json.dumps(BIGQUERY_RUN))
    headers, body = to_binary(scheduler_message())
    assert function_app("schedule", "on_schedule_message").test_client().post(
        "/", headers=headers, data=body).status_code == 200
    (call,) = fake_vertex.calls
    # No data_version: each run's snapshot step takes a new snapshot and names it (never cached, so a new
    # tick's ingest is never an old one's).
    assert call["body"]["runtimeConfig"]["parameterValues"] == BIGQUERY_RUN
    assert call["job_id"] == "training-pipeline-schedule-202403110700"  # a no-partition schedule: one run a tick


def test_submit_over_a_table_lists_nothing_and_leaves_the_version_to_the_snapshot(trigger_env, capsys,
                                                                                  fake_vertex: FakeVertex) -> None:
    code = runner.main(["--submit", "--template", str(TRAINING_TEMPLATE), "--param", f"data_uri={TABLE}",
                        "--param", "row_filter=fare > 0", "--dry-run"])
    assert code == 0, capsys.readouterr().err
    shown = json.loads(capsys.readouterr().out)
    assert shown["body"]["runtimeConfig"]["parameterValues"] == {"data_uri": TABLE, "row_filter": "fare > 0",
                                                                 "data_version": ""}
