"""The schedule function submits the batch prediction template nightly for yesterday's partition,
through configuration only: a second deployment of the same function with its own environment."""

from __future__ import annotations

import json

from cloudevents.http import to_binary
from test_triggers_schedule import scheduler_message
from trigger_helpers import DATA_BUCKET, FakeVertex

from pipelines.compile import COMPILED_DIR

BATCH_TEMPLATE = COMPILED_DIR / "batch_prediction_pipeline.json"


def test_a_nightly_tick_submits_batch_prediction_for_yesterdays_partition(function_app, trigger_env, monkeypatch,
                                                                           fake_vertex: FakeVertex) -> None:
    monkeypatch.setenv("MLOPS_PARTITION_TIMEZONE", "America/Chicago")
    monkeypatch.setenv("MLOPS_SCHEDULE_TEMPLATE_URI", str(BATCH_TEMPLATE))
    monkeypatch.setenv("MLOPS_SCHEDULE_PARAMETER", "source")
    monkeypatch.setenv("MLOPS_PIPELINE_PARAMETERS", json.dumps({
        "destination": "bq://test-project.scores", "key_field": "trip_id", "project": "test-project",
        "location": "us-central1"}))
    client = function_app("schedule", "on_schedule_message").test_client()
    for _ in range(2):  # a redelivered tick: the same job id, refused by Vertex as a duplicate
        headers, body = to_binary(scheduler_message())
        assert client.post("/", headers=headers, data=body).status_code == 200

    assert [call["status"] for call in fake_vertex.calls] == [200, 409]
    call = fake_vertex.calls[0]
    # The job id names the partition, and the run id defaults to it: a rerun of the night replaces its output.
    assert call["job_id"] == "batch-prediction-pipeline-schedule-20240310"
    assert call["body"]["runtimeConfig"]["parameterValues"] == {
        "source": f"gs://{DATA_BUCKET}/data/processed/2024/03/10", "destination": "bq://test-project.scores",
        "key_field": "trip_id", "project": "test-project", "location": "us-central1"}  # no data_version here
    assert call["body"]["pipelineSpec"]["pipelineInfo"]["name"] == "batch-prediction-pipeline"
    assert call["body"]["labels"] == {"trigger": "schedule", "partition": "2024-03-10"}


def test_a_template_that_reads_no_partition_gets_none_and_one_run_per_tick(function_app, trigger_env, monkeypatch,
                                                                           fake_vertex: FakeVertex) -> None:
    """The canary decision reads the endpoint, not data: MLOPS_SCHEDULE_PARAMETER=none sends no partition, and
    the tick names the job: a redelivered tick is the same run, the next tick (its `interval` later) a new one."""
    monkeypatch.setenv("MLOPS_SCHEDULE_TEMPLATE_URI", str(COMPILED_DIR / "canary_decision_pipeline.json"))
    monkeypatch.setenv("MLOPS_SCHEDULE_PARAMETER", "none")
    monkeypatch.setenv("MLOPS_SCHEDULE_OFFSET", "0")
    monkeypatch.setenv("MLOPS_PIPELINE_PARAMETERS", json.dumps({"project": "test-project", "location": "us-central1"}))
    client = function_app("schedule", "on_schedule_message").test_client()
    for publish_time in ("2024-03-11T07:00:03.518Z", "2024-03-11T07:00:03.518Z", "2024-03-11T08:00:02.101Z"):
        headers, body = to_binary(scheduler_message(publish_time))
        assert client.post("/", headers=headers, data=body).status_code == 200
    assert [call["status"] for call in fake_vertex.calls] == [200, 409, 200]
    call = fake_vertex.calls[0]
    assert call["job_id"] == "canary-decision-pipeline-schedule-202403110700"
    assert fake_vertex.calls[2]["job_id"] == "canary-decision-pipeline-schedule-202403110800"
    assert call["body"]["labels"] == {"trigger": "schedule", "tick": "2024-03-11t07-00"}
    assert call["body"]["runtimeConfig"]["parameterValues"] == {"project": "test-project", "location": "us-central1"}
