"""The drift-alert function: LogEntries from a Logging sink, base64 JSON in a Pub/Sub message."""

from __future__ import annotations

import base64
import copy
import datetime
import json

import pytest
from cloudevents.http import CloudEvent, to_binary, to_structured
from trigger_helpers import DATA_BUCKET, MODEL, MONITORING_JOB, FakeVertex, log_lines

from tests.gcs_emulator import GcsEmulator
from triggers.events.drift import FeatureDrift, drift_alert_payload
from triggers.submission.data_version import listing_version

# The documented Model Monitoring (v1) anomaly entry, with a drift objective and our job.
VERTEX_ENTRY = {
    "insertId": "b0e9c0e9-0979-4aff-a5d3-4c0912469f9a@a1",
    "jsonPayload": {
        "anomalyObjective": "RAW_FEATURE_DRIFT",
        "endTime": "2022-02-03T19:00:00Z",
        "featureAnomalies": [
            {"featureDisplayName": "fare", "deviation": 0.9, "threshold": 0.7},
            {"featureDisplayName": "company", "deviation": 0.6, "threshold": 0.3},
        ],
        "totalAnomaliesCount": 2,
        "@type": "type.googleapis.com/google.cloud.aiplatform.logging.ModelMonitoringAnomaliesLogEntry",
        "startTime": "2022-02-03T18:00:00Z",
        "modelDeploymentMonitoringJob": MONITORING_JOB,
        "deployedModelId": "1645828169292316672",
    },
    "resource": {"type": "aiplatform.googleapis.com/ModelDeploymentMonitoringJob",
                 "labels": {"model_deployment_monitoring_job": MONITORING_JOB.rsplit("/", 1)[-1],
                            "location": "us-central1", "resource_container": "projects/677687165274"}},
    "timestamp": "2022-02-03T19:00:00Z",
    "severity": "WARNING",
    "logName": "projects/test-project/logs/aiplatform.googleapis.com%2Fmodel_monitoring_anomaly",
    "receiveTimestamp": "2022-02-03T19:59:52.121398388Z",
}


def own_entry(window_end: str = "2026-11-08T06:00:00Z", model: str = MODEL, fare_value: float = 0.31,
              insert_id: str = "own-1") -> dict:
    end = datetime.datetime.fromisoformat(window_end)
    payload = drift_alert_payload(
        model, end - datetime.timedelta(days=7), end,
        [FeatureDrift("fare", fare_value, 0.1, "jensen_shannon"), FeatureDrift("company", 0.05, 0.1, "l_infinity")],
        monitoring_job="local")
    return {"insertId": insert_id, "jsonPayload": payload, "severity": "WARNING", "timestamp": window_end,
            "logName": "projects/test-project/logs/vertex-mlops-drift", "resource": {"type": "global"}}


def sink_message(entry: object, message_id: str = "9001", raw: bytes | None = None) -> CloudEvent:
    """What Eventarc delivers for a Logging sink's Pub/Sub message."""
    data = raw if raw is not None else json.dumps(entry).encode()
    attributes = {"type": "google.cloud.pubsub.topic.v1.messagePublished",
                  "source": "//pubsub.googleapis.com/projects/test-project/topics/drift-alerts",
                  "id": message_id, "time": "2026-11-08T06:00:05Z", "datacontenttype": "application/json"}
    return CloudEvent(attributes, {"message": {"data": base64.b64encode(data).decode(), "messageId": message_id,
                                               "publishTime": "2026-11-08T06:00:05Z",
                                               "attributes": {"logging.googleapis.com/timestamp": "x"}},
                                   "subscription": "projects/test-project/subscriptions/eventarc-drift"})


@pytest.fixture
def client(function_app):
    return function_app("drift_alert", "on_drift_log_entry").test_client()


def post(client, event: CloudEvent, mode: str = "binary") -> int:
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    return client.post("/", headers=headers, data=body).status_code


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_vertex_anomaly_entry_submits_retraining_on_the_recent_window(client, fake_vertex: FakeVertex,
                                                                         mode: str) -> None:
    assert post(client, sink_message(VERTEX_ENTRY), mode) == 200
    (call,) = fake_vertex.calls
    window = ",".join(f"gs://{DATA_BUCKET}/data/processed/{month}" for month in ("2021/12", "2022/01", "2022/02"))
    assert call["body"]["runtimeConfig"]["parameterValues"] == {"data_uri": window,
                                                                "data_version": listing_version(window)}
    assert call["body"]["labels"] == {"trigger": "drift-alert", "model": MODEL, "partition": "2022-02",
                                      "cooldown-window": "202202030000"}
    assert call["job_id"] == f"training-pipeline-drift-{MODEL}-202202030000"


def test_our_own_monitoring_format_submits_retraining(client, fake_vertex: FakeVertex) -> None:
    assert post(client, sink_message(own_entry())) == 200
    (call,) = fake_vertex.calls
    assert call["body"]["runtimeConfig"]["parameterValues"]["data_uri"].endswith("/data/processed/2026/11")
    assert call["job_id"] == f"training-pipeline-drift-{MODEL}-202611080000"


def test_a_burst_of_alerts_starts_one_run_per_cooldown_window(client, fake_vertex: FakeVertex, capsys) -> None:
    # Three hourly alerts the same day, then one the next day.
    for message_id, end in enumerate(["2026-11-08T06:00:00Z", "2026-11-08T07:00:00Z", "2026-11-08T23:59:59Z",
                                      "2026-11-09T00:00:00Z"]):
        assert post(client, sink_message(own_entry(end, insert_id=end), str(message_id))) == 200

    assert [call["status"] for call in fake_vertex.calls] == [200, 409, 409, 200]
    assert sorted(fake_vertex.jobs) == [f"training-pipeline-drift-{MODEL}-202611080000",
                                        f"training-pipeline-drift-{MODEL}-202611090000"]
    outcomes = [e["outcome"] for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "drift-alert"]
    assert outcomes == ["submitted", "already-submitted", "already-submitted", "submitted"]


def test_the_data_version_follows_the_windows_bytes(client, fake_vertex: FakeVertex, gcs: GcsEmulator) -> None:
    batch = "data/processed/2026/10/15/0000/batch.csv"
    gcs.upload(DATA_BUCKET, batch, b"a,b\n1,2\n")
    assert post(client, sink_message(own_entry("2026-11-08T06:00:00Z"))) == 200
    gcs.upload(DATA_BUCKET, batch, b"a,b\n1,3\n")  # a corrected batch: same object, new generation
    assert post(client, sink_message(own_entry("2026-11-09T06:00:00Z"))) == 200  # the next cooldown window

    first, second = (call["body"]["runtimeConfig"]["parameterValues"] for call in fake_vertex.calls)
    assert first["data_uri"] == second["data_uri"] and "/data/processed/2026/10," in first["data_uri"]
    assert first["data_version"] != second["data_version"]
    assert second["data_version"] == listing_version(second["data_uri"])
    assert len(fake_vertex.jobs) == 2


def test_cooldown_and_window_are_configurable(function_app, trigger_env, fake_vertex: FakeVertex,
                                              monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_DRIFT_COOLDOWN_HOURS", "6")
    monkeypatch.setenv("MLOPS_DRIFT_WINDOW_GRANULARITY", "day")
    monkeypatch.setenv("MLOPS_DRIFT_WINDOW_PARTITIONS", "2")
    client = function_app("drift_alert", "on_drift_log_entry").test_client()
    post(client, sink_message(own_entry("2026-11-08T05:00:00Z")))
    post(client, sink_message(own_entry("2026-11-08T07:00:00Z")))
    assert [call["job_id"] for call in fake_vertex.calls] == [f"training-pipeline-drift-{MODEL}-202611080000",
                                                               f"training-pipeline-drift-{MODEL}-202611080600"]
    assert fake_vertex.calls[0]["body"]["runtimeConfig"]["parameterValues"]["data_uri"] == (
        f"gs://{DATA_BUCKET}/data/processed/2026/11/07,gs://{DATA_BUCKET}/data/processed/2026/11/08")


def test_a_monitoring_job_id_alone_identifies_the_job(function_app, trigger_env, fake_vertex: FakeVertex,
                                                      monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_MONITORING_JOB", MONITORING_JOB.rsplit("/", 1)[-1])
    assert post(function_app("drift_alert", "on_drift_log_entry").test_client(), sink_message(VERTEX_ENTRY)) == 200
    assert len(fake_vertex.jobs) == 1


def _vertex_entry(**payload_changes: object) -> dict:
    entry = copy.deepcopy(VERTEX_ENTRY)
    entry["jsonPayload"].update(payload_changes)
    return entry


@pytest.mark.parametrize(("entry", "reason"), [
    (_vertex_entry(anomalyObjective="RAW_FEATURE_SKEW"), "is not drift"),
    (_vertex_entry(modelDeploymentMonitoringJob="projects/1/locations/us-central1/modelDeploymentMonitoringJobs/42"),
     "not " + MONITORING_JOB),
    (_vertex_entry(featureAnomalies=[{"featureDisplayName": "fare", "deviation": 0.7, "threshold": 0.7}]),
     "no feature deviates above its threshold"),
    (own_entry(model="another-model"), "this function retrains " + MODEL),
    (own_entry(fare_value=0.1), "no feature deviates above its threshold"),
    ({"jsonPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog"}}, "is neither"),
])
def test_alerts_that_do_not_ask_for_retraining_are_acknowledged(client, fake_vertex: FakeVertex, capsys,
                                                                entry: dict, reason: str) -> None:
    assert post(client, sink_message(entry)) == 200
    assert fake_vertex.calls == []
    (logged,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "drift-alert"]
    assert logged["outcome"] == "ignored" and logged["severity"] == "INFO" and reason in logged["message"]


def test_vertex_entries_are_ignored_when_no_monitoring_job_is_configured(function_app, trigger_env,
                                                                          fake_vertex: FakeVertex, monkeypatch,
                                                                          capsys) -> None:
    monkeypatch.delenv("MLOPS_MONITORING_JOB")
    assert post(function_app("drift_alert", "on_drift_log_entry").test_client(), sink_message(VERTEX_ENTRY)) == 200
    assert fake_vertex.calls == []
    assert "MLOPS_MONITORING_JOB is not set" in capsys.readouterr().out


@pytest.mark.parametrize(("event", "reason"), [
    (sink_message(None, raw=b"\x00\x01 not json"), "not a JSON LogEntry"),
    (sink_message(["a", "list"]), "not a LogEntry with a jsonPayload"),
    (sink_message({"textPayload": "drift!"}), "not a LogEntry with a jsonPayload"),
    (sink_message(_vertex_entry(featureAnomalies=[{"featureDisplayName": "fare", "deviation": "high",
                                                   "threshold": 0.1}])), "deviation of fare is 'high'"),
    (sink_message(_vertex_entry(featureAnomalies=[{"featureDisplayName": "fare", "deviation": True,
                                                   "threshold": 0.1}])), "expected a finite number"),
    (sink_message(_vertex_entry(endTime="yesterday"), ), "expected an RFC 3339 timestamp"),
    (sink_message({"jsonPayload": {**own_entry()["jsonPayload"], "features": [
        {"name": "fare", "metric": "psi", "value": 0.3, "threshold": 0.1}]}}), "metric 'psi'"),
    (CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/x"},
                {"message": {"data": "%%% not base64 %%%"}}), "not base64"),
    (CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/x"},
                {"subscription": "s"}), "no message object"),
])
def test_malformed_messages_are_acknowledged_with_a_warning(client, fake_vertex: FakeVertex, capsys,
                                                            event: CloudEvent, reason: str) -> None:
    assert post(client, event) == 200
    assert fake_vertex.calls == []
    (logged,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "drift-alert"]
    assert logged["severity"] == "WARNING" and reason in logged["message"]


def test_the_monitoring_format_builder_refuses_what_the_trigger_would_refuse() -> None:
    end = datetime.datetime(2026, 11, 8, tzinfo=datetime.UTC)
    with pytest.raises(ValueError, match="metric 'psi'"):
        drift_alert_payload(MODEL, end, end, [FeatureDrift("fare", 0.3, 0.1, "psi")])
    with pytest.raises(ValueError, match="window_start <= window_end"):
        drift_alert_payload(MODEL, end, end - datetime.timedelta(days=1), [])
    payload = drift_alert_payload(MODEL, end - datetime.timedelta(days=7), end, [])
    assert payload["window_end"] == "2026-11-08T00:00:00Z" and payload["@type"] == "vertex-mlops.drift-alert.v1"


def _own_entry_ending(window_end: str) -> dict:
    entry = own_entry()
    entry["jsonPayload"].update(window_start=None, window_end=window_end)
    return entry


@pytest.mark.parametrize(("entry", "environment"), [
    (_own_entry_ending("9999-12-31T23:59:59-01:00"), {}),                            # after year 9999 in UTC
    (_own_entry_ending("0001-01-01T00:00:00+01:00"), {}),                            # before year 1 in UTC
    (_own_entry_ending("0001-02-01T00:00:00Z"), {}),                                 # 3-month window: year 0
    (_own_entry_ending("9999-12-31T23:59:59Z"), {"MLOPS_PARTITION_TIMEZONE": "Asia/Tokyo"}),  # local date > 9999
    (_own_entry_ending("0001-01-01T01:00:00Z"), {"MLOPS_DRIFT_WINDOW_GRANULARITY": "day",
                                                 "MLOPS_DRIFT_WINDOW_PARTITIONS": "1",
                                                 "MLOPS_DRIFT_COOLDOWN_HOURS": "8760"}),  # cooldown window < year 1
    (_vertex_entry(endTime="0001-01-01T00:00:00+01:00"), {}),
])
def test_timestamps_at_the_calendars_limits_are_malformed(function_app, trigger_env, fake_vertex: FakeVertex,
                                                          monkeypatch, capsys, entry: dict, environment: dict) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert post(function_app("drift_alert", "on_drift_log_entry").test_client(), sink_message(entry)) == 200
    assert fake_vertex.calls == []
    (logged,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "drift-alert"]
    assert (logged["severity"], logged["outcome"]) == ("WARNING", "ignored")
    assert "out of range" in logged["message"] and "traceback" not in logged
