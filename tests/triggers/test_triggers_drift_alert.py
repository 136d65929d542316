"""The drift-alert function: LogEntries from a Logging sink, base64 JSON in a Pub/Sub message. Vertex Model
Monitoring (v2) entries are signals read back through searchModelMonitoringAlerts (the stand-in in
tests/monitoring/model_monitor_stand_in.py); every entry fed to the function is a LogEntry valid against
logging.v2's discovery schema."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cloudevents.http import CloudEvent, to_binary, to_structured
from trigger_helpers import DATA_BUCKET, MODEL, MODEL_MONITOR, MONITORING_JOB, FakeVertex, log_lines

from fidelity import discovery
from tests.gcs_emulator import GcsEmulator
from tests.monitoring.model_monitor_stand_in import anomaly_log_entry
from triggers.events.drift import FeatureDrift, drift_alert_payload
from triggers.submission.data_version import listing_version

LOGGED = datetime.datetime(2022, 2, 3, 19, 0, 2, tzinfo=datetime.UTC)  # when the monitor's run logged


def vertex_entry(**names: str) -> dict:
    """A v2 anomaly entry (its payload's fields are not published: `names` puts resource names under
    placeholder keys, which the function reads by no name)."""
    return anomaly_log_entry("test-project", LOGGED, names=names)


def alerts_of_our_run(fake_vertex: FakeVertex, job: str = MONITORING_JOB) -> None:
    """The alerts the run raised: fare and company above their thresholds, seconds before it logged."""
    fake_vertex.alerts.add_drift_alert(MODEL_MONITOR, job, "fare", 0.7, LOGGED - datetime.timedelta(seconds=2))
    fake_vertex.alerts.add_drift_alert(MODEL_MONITOR, job, "company", 0.3, LOGGED - datetime.timedelta(seconds=1),
                                       algorithm="l_infinity")


def own_entry(window_end: str = "2026-11-08T06:00:00Z", model: str = MODEL, fare_value: float = 0.31,
              insert_id: str = "own-1") -> dict:
    end = datetime.datetime.fromisoformat(window_end)
    payload = drift_alert_payload(
        model, end - datetime.timedelta(days=7), end,
        [FeatureDrift("fare", fare_value, 0.1, "jensen_shannon"), FeatureDrift("company", 0.05, 0.1, "l_infinity")],
        monitoring_job="local")
    entry = {"insertId": insert_id, "jsonPayload": payload, "severity": "WARNING", "timestamp": window_end,
             "logName": "projects/test-project/logs/mlops-drift-alerts", "resource": {"type": "global"}}
    assert not list(discovery.load("logging.v2").problems(entry, {"$ref": "LogEntry"}, ""))
    return entry


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
def test_a_vertex_anomaly_entry_submits_retraining_from_the_monitors_alerts(client, fake_vertex: FakeVertex,
                                                                             mode: str) -> None:
    """Defect 5: a Model Monitoring v2 run's entry starts the chain. It names a job of our monitor, so the
    function reads that job's raw-feature-drift alerts around the entry's time, and retrains on the window
    ending at the newest alert."""
    alerts_of_our_run(fake_vertex)
    assert post(client, sink_message(vertex_entry(job=MONITORING_JOB)), mode) == 200
    (search,) = fake_vertex.alerts.searches
    assert search == {"objectiveType": "raw-feature-drift", "pageSize": 100, "modelMonitoringJob": MONITORING_JOB,
                      "alertTimeInterval": {"startTime": "2022-02-03T18:00:02Z", "endTime": "2022-02-03T20:00:02Z"}}
    (call,) = fake_vertex.calls
    window = ",".join(f"gs://{DATA_BUCKET}/data/processed/{month}" for month in ("2021/12", "2022/01", "2022/02"))
    assert call["body"]["runtimeConfig"]["parameterValues"] == {"data_uri": window,
                                                                "data_version": listing_version(window)}
    assert call["body"]["labels"] == {"trigger": "drift-alert", "model": MODEL, "partition": "2022-02",
                                      "cooldown-window": "202202030000"}
    assert call["job_id"] == f"training-pipeline-drift-{MODEL}-202202030000"


@pytest.mark.parametrize("entry", [
    anomaly_log_entry("test-project", LOGGED),  # names nothing: a signal for our monitor
    anomaly_log_entry("test-project", LOGGED, with_type=False),  # known by its log name alone
    anomaly_log_entry("test-project", LOGGED, names={"monitor": MODEL_MONITOR}),
], ids=["type-only", "log-name-only", "names-our-monitor"])
def test_an_entry_that_names_no_other_monitor_reads_all_of_ours_alerts(client, fake_vertex: FakeVertex,
                                                                       entry: dict) -> None:
    alerts_of_our_run(fake_vertex)
    assert post(client, sink_message(entry)) == 200
    (search,) = fake_vertex.alerts.searches
    assert "modelMonitoringJob" not in search
    assert [call["job_id"] for call in fake_vertex.calls] == [f"training-pipeline-drift-{MODEL}-202202030000"]


def test_the_monitor_may_be_configured_by_its_id_and_alerts_are_read_page_by_page(
        function_app, trigger_env, fake_vertex: FakeVertex, monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_MODEL_MONITOR", MODEL_MONITOR.rsplit("/", 1)[-1])
    for second in range(101):  # one more than a page
        fake_vertex.alerts.add_drift_alert(MODEL_MONITOR, MONITORING_JOB, f"feature_{second}", 0.1,
                                           LOGGED - datetime.timedelta(minutes=30, seconds=second))
    client = function_app("drift_alert", "on_drift_log_entry").test_client()
    assert post(client, sink_message(vertex_entry())) == 200
    assert [search.get("pageToken") for search in fake_vertex.alerts.searches] == [None, "100"]
    assert len(fake_vertex.jobs) == 1


def test_the_monitor_may_be_configured_by_display_name_as_terraform_does(
        function_app, trigger_env, fake_vertex: FakeVertex, monkeypatch, capsys) -> None:
    """Terraform cannot know a monitor's id (`monitoring apply` creates it after the function exists): it sets
    the monitoring config's display name, which the function looks up once with modelMonitors.list."""
    monkeypatch.setenv("MLOPS_MODEL_MONITOR", "chicago-taxi-big-tipper-monitor")
    client = function_app("drift_alert", "on_drift_log_entry").test_client()
    assert post(client, sink_message(vertex_entry(), message_id="1")) == 200  # no such monitor yet: acknowledged
    (logged,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "drift-alert"]
    assert logged["outcome"] == "ignored" and "no model monitor is named 'chicago-taxi-big-tipper-monitor'" in \
        logged["message"] and not fake_vertex.alerts.searches and not fake_vertex.calls

    fake_vertex.alerts.add_monitor(f"{MODEL_MONITOR.rsplit('/', 1)[0]}/555", "another-monitor")
    fake_vertex.alerts.add_monitor(MODEL_MONITOR, "chicago-taxi-big-tipper-monitor")
    alerts_of_our_run(fake_vertex)
    assert post(client, sink_message(vertex_entry(), message_id="2")) == 200
    (search,) = fake_vertex.alerts.searches  # of the monitor so named, not the other one
    assert len(fake_vertex.jobs) == 1 and search["objectiveType"] == "raw-feature-drift"
    assert fake_vertex.alerts.searched_monitors == [MODEL_MONITOR.rsplit("/", 1)[-1]]


def test_an_entry_of_another_monitor_is_acknowledged_without_a_search(client, fake_vertex: FakeVertex,
                                                                       capsys) -> None:
    alerts_of_our_run(fake_vertex)
    other = "projects/677687165274/locations/us-central1/modelMonitors/42"
    assert post(client, sink_message(vertex_entry(job=f"{other}/modelMonitoringJobs/7"))) == 200
    assert fake_vertex.alerts.searches == [] and fake_vertex.calls == []
    (logged,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "drift-alert"]
    assert logged["outcome"] == "ignored" and "model monitor 42, not 4127362941937680384" in logged["message"]


def test_an_entry_without_drift_alerts_is_retried_while_fresh_then_acknowledged(client, fake_vertex: FakeVertex,
                                                                                capsys) -> None:
    # Only alerts of another objective: the search for raw-feature-drift finds none.
    fake_vertex.alerts.add_drift_alert(MODEL_MONITOR, MONITORING_JOB, "probability", 0.2, LOGGED,
                                       objective="prediction-output-drift")
    assert post(client, sink_message(vertex_entry())) == 200
    fresh = anomaly_log_entry("test-project", datetime.datetime.now(datetime.UTC))
    assert post(client, sink_message(fresh)) == 500  # alerts may not be searchable yet: Pub/Sub redelivers
    assert fake_vertex.calls == [] and len(fake_vertex.alerts.searches) == 2
    old, new = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "drift-alert"]
    assert old["outcome"] == "ignored" and "no raw-feature-drift alert" in old["message"]
    assert new["outcome"] == "retry" and "retried until it can be read" in new["message"]


def test_a_monitor_vertex_does_not_know_is_an_error_not_a_retry(function_app, trigger_env, fake_vertex: FakeVertex,
                                                                monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLOPS_MODEL_MONITOR", "999")
    assert post(function_app("drift_alert", "on_drift_log_entry").test_client(), sink_message(vertex_entry())) == 200
    (logged,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "drift-alert"]
    assert (logged["severity"], logged["outcome"]) == ("ERROR", "invalid")
    assert "HTTP 404" in logged["message"] and "modelMonitors/999" in logged["message"]


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


@pytest.mark.parametrize(("entry", "reason"), [
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


def test_vertex_entries_are_ignored_when_no_model_monitor_is_configured(function_app, trigger_env,
                                                                         fake_vertex: FakeVertex, monkeypatch,
                                                                         capsys) -> None:
    alerts_of_our_run(fake_vertex)
    monkeypatch.delenv("MLOPS_MODEL_MONITOR")
    assert post(function_app("drift_alert", "on_drift_log_entry").test_client(), sink_message(vertex_entry())) == 200
    assert fake_vertex.calls == [] and fake_vertex.alerts.searches == []
    assert "MLOPS_MODEL_MONITOR is not set" in capsys.readouterr().out


@pytest.mark.parametrize(("event", "reason"), [
    (sink_message(None, raw=b"\x00\x01 not json"), "not a JSON LogEntry"),
    (sink_message(["a", "list"]), "not a LogEntry with a jsonPayload"),
    (sink_message({"textPayload": "drift!"}), "not a LogEntry with a jsonPayload"),
    (sink_message({"jsonPayload": {**own_entry()["jsonPayload"], "features": [
        {"name": "fare", "metric": "jensen_shannon", "value": "high", "threshold": 0.1}]}}), "value of fare is 'high'"),
    (sink_message({"jsonPayload": {**own_entry()["jsonPayload"], "features": [
        {"name": "fare", "metric": "jensen_shannon", "value": True, "threshold": 0.1}]}}), "expected a finite number"),
    (sink_message({"jsonPayload": {**own_entry()["jsonPayload"], "window_end": "yesterday"}}),
     "expected an RFC 3339 timestamp"),
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
    (anomaly_log_entry("test-project", datetime.datetime(1, 1, 1, 5, tzinfo=datetime.UTC)), {}),  # 3 months back
])
def test_timestamps_at_the_calendars_limits_are_malformed(function_app, trigger_env, fake_vertex: FakeVertex,
                                                          monkeypatch, capsys, entry: dict, environment: dict) -> None:
    fake_vertex.alerts.add_drift_alert(MODEL_MONITOR, MONITORING_JOB, "fare", 0.1,
                                       datetime.datetime(1, 1, 1, 5, tzinfo=datetime.UTC))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert post(function_app("drift_alert", "on_drift_log_entry").test_client(), sink_message(entry)) == 200
    assert fake_vertex.calls == []
    (logged,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "drift-alert"]
    assert (logged["severity"], logged["outcome"]) == ("WARNING", "ignored")
    assert "out of range" in logged["message"] and "traceback" not in logged
