"""`python -m monitoring apply` with the real aiplatform client (REST) against a local stand-in of the Vertex
AI API (tests/monitoring/model_monitor_stand_in.py): create, no change on a second apply, update on a change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from monitoring.__main__ import main
from tests.monitoring.model_monitor_stand_in import LOCATION, PROJECT, FakeMonitoringApi
from tests.stand_in_http import aiplatform_config_restored

MODEL = "chicago-taxi-big-tipper"


@pytest.fixture
def vertex(monkeypatch: pytest.MonkeyPatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer

    api = FakeMonitoringApi(MODEL, json.dumps({"data_uri": "gs://landing/data/processed/2015,"
                                                           "gs://landing/data/processed/2016", "examples": "x"}))
    monkeypatch.setenv("MLOPS_VERTEX_API_ENDPOINT", api.url)
    with aiplatform_config_restored():
        monkeypatch.setattr(initializer.global_config, "_credentials", AnonymousCredentials())
        yield api
    api.close()


def config_file(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(Path("monitoring/chicago_taxi.yaml").read_text())
    raw["target"]["request_log_table"] = "bq://test-project.serving.request_log"
    raw["output_uri"] = "gs://monitoring-results/chicago-taxi"
    for section, values in changes.items():
        raw[section] = raw.get(section, {}) | values
    path = tmp_path / f"config-{len(changes)}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def apply(path: Path) -> int:
    return main(["apply", "--config", str(path), "--project", PROJECT, "--location", LOCATION])


def test_create_then_nothing_then_update(vertex: FakeMonitoringApi, tmp_path: Path, capsys) -> None:
    assert apply(config_file(tmp_path)) == 0
    assert vertex.writes() == ["POST modelMonitors", "POST schedules"]
    (monitor,) = vertex.monitors.values()
    assert monitor["displayName"] == f"{MODEL}-monitor"
    assert monitor["modelMonitoringTarget"]["vertexModel"] == {"model": f"projects/{PROJECT}/locations/{LOCATION}/"
                                                                        "models/7", "modelVersionId": "3"}
    drift = monitor["tabularObjective"]["featureDriftSpec"]
    assert drift["numericMetricType"] == "jensen_shannon_divergence" and drift["categoricalMetricType"] == "l_infinity"
    assert drift["defaultNumericAlertCondition"]["threshold"] == pytest.approx(0.03)
    assert drift["featureAlertConditions"]["company"]["threshold"] == pytest.approx(0.15)
    assert len(drift["features"]) == 14
    # The baseline: the champion's training data (its lineage), as one pattern over the common folder.
    assert monitor["trainingDataset"]["columnizedDataset"]["gcsSource"]["gcsUri"] == "gs://landing/data/processed/**/batch.csv"
    assert monitor["notificationSpec"]["enableCloudLogging"] is True
    (schedule,) = vertex.schedules.values()
    assert schedule["cron"] == "CRON_TZ=America/Chicago 0 6 * * *"
    job = schedule["createModelMonitoringJobRequest"]
    assert job["parent"] == monitor["name"]
    target = job["modelMonitoringJob"]["modelMonitoringSpec"]["objectiveSpec"]["targetDataset"]
    assert target["columnizedDataset"]["bigquerySource"]["tableUri"] == "bq://test-project.serving.request_log"

    capsys.readouterr()
    assert apply(config_file(tmp_path)) == 0
    assert vertex.writes() == ["POST modelMonitors", "POST schedules"]  # a second apply changes nothing
    assert "unchanged" in capsys.readouterr().out

    changed = config_file(tmp_path, drift={"default_numeric_threshold": 0.05}, schedule={"cron": "0 7 * * *"})
    assert apply(changed) == 0
    assert vertex.writes()[2:] == ["PATCH " + monitor["name"].rsplit("/", 1)[-1],
                                   "PATCH " + schedule["name"].rsplit("/", 1)[-1]]
    method, path, body = vertex.calls[2]
    assert "updateMask=tabularObjective&" in path  # only the field that changed
    (monitor,) = vertex.monitors.values()
    threshold = monitor["tabularObjective"]["featureDriftSpec"]["defaultNumericAlertCondition"]["threshold"]
    assert threshold == pytest.approx(0.05)
    assert next(iter(vertex.schedules.values()))["cron"] == "CRON_TZ=America/Chicago 0 7 * * *"
    assert apply(changed) == 0 and len(vertex.writes()) == 4  # and again nothing


def test_apply_without_an_output_folder_says_what_is_missing(vertex: FakeMonitoringApi, tmp_path: Path,
                                                             capsys) -> None:
    path = config_file(tmp_path)
    raw = yaml.safe_load(path.read_text()) | {"output_uri": ""}
    path.write_text(yaml.safe_dump(raw))
    assert apply(path) == 2
    assert "output_uri is empty" in capsys.readouterr().err and vertex.writes() == []


def test_an_endpoint_target_is_read_by_vertex_from_the_endpoint(vertex: FakeMonitoringApi, tmp_path: Path) -> None:
    assert apply(config_file(tmp_path, target={"endpoint": "1234", "request_log_table": ""})) == 0
    (schedule,) = vertex.schedules.values()
    target = schedule["createModelMonitoringJobRequest"]["modelMonitoringJob"]["modelMonitoringSpec"][
        "objectiveSpec"]["targetDataset"]
    assert target["vertexEndpointLogs"]["endpoints"] == [f"projects/{PROJECT}/locations/{LOCATION}/endpoints/1234"]
    assert target["timeOffset"]["window"] == "24h"
