"""Defect 3: the release's last step, `monitoring apply`, with the environment's values and in a fresh one.

The release passes what Terraform made (`--endpoint`, `--request-log-table`, `--output-uri`: its
platform.monitoring output, the release trigger's substitutions) to the unchanged shared config
monitoring/chicago_taxi.yaml. Before the model's first version exists there is nothing to monitor: apply
says so and succeeds, so that the release does not end half-done. The real aiplatform client (REST) talks to
the Vertex AI stand-in of tests/monitoring (checked against the discovery documents).
"""

from __future__ import annotations

import json

import pytest

from monitoring.__main__ import main
from monitoring.config import DEFAULT_CONFIG
from tests.monitoring.model_monitor_stand_in import LOCATION, PARENT, PROJECT, FakeMonitoringApi
from tests.stand_in_http import aiplatform_config_restored

MODEL = "chicago-taxi-big-tipper"
ENDPOINT = f"{PARENT}/endpoints/1001"  # google_vertex_ai_endpoint.serving.id
ENVIRONMENT = ["--endpoint", ENDPOINT, "--request-log-table", f"bq://{PROJECT}.serving_logs.request_response_logging",
               "--output-uri", f"gs://{PROJECT}-pipeline-root/monitoring"]


class EmptyRegistry(FakeMonitoringApi):
    """A fresh environment: no model registered yet (models.list answers no models). Records every request."""

    def __init__(self, model_name: str, version_description: str) -> None:
        self.requests: list[str] = []
        super().__init__(model_name, version_description)

    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        self.requests.append(f"{method} {path.split('?')[0]}")
        if method == "GET" and path.split("?")[0] == f"/v1/{PARENT}/models":
            return 200, {}
        return super()._answer(method, path, body, headers)


@pytest.fixture
def vertex_api(monkeypatch: pytest.MonkeyPatch, request):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer

    kind = getattr(request, "param", FakeMonitoringApi)
    api = kind(MODEL, json.dumps({"data_uri": "gs://landing/data/processed/2016"}))
    monkeypatch.setenv("MLOPS_VERTEX_API_ENDPOINT", api.url)
    with aiplatform_config_restored():
        monkeypatch.setattr(initializer.global_config, "_credentials", AnonymousCredentials())
        yield api
    api.close()


def apply(*extra: str) -> int:
    return main(["apply", "--config", DEFAULT_CONFIG, "--project", PROJECT, "--location", LOCATION, *extra])


@pytest.mark.parametrize("vertex_api", [EmptyRegistry], indirect=True)
def test_before_the_first_model_apply_says_so_and_succeeds_creating_nothing(vertex_api, capsys):
    assert apply(*ENVIRONMENT) == 0
    out = capsys.readouterr().out
    assert f"model monitoring not applied: model {MODEL!r} is not in the Model Registry yet" in out
    assert vertex_api.writes() == []
    assert vertex_api.requests == [f"GET /v1/{PARENT}/models"]  # it asked, and stopped there


def test_the_environments_values_from_terraform_reach_the_monitor(vertex_api: FakeMonitoringApi):
    assert apply(*ENVIRONMENT) == 0
    assert vertex_api.writes() == ["POST modelMonitors", "POST schedules"]
    (monitor,) = vertex_api.monitors.values()
    output = json.dumps(monitor["outputSpec"])
    assert output.count(f"gs://{PROJECT}-pipeline-root/monitoring") == 1, output
    (schedule,) = vertex_api.schedules.values()
    target = schedule["createModelMonitoringJobRequest"]["modelMonitoringJob"]["modelMonitoringSpec"][
        "objectiveSpec"]["targetDataset"]
    assert target["vertexEndpointLogs"]["endpoints"] == [ENDPOINT]  # Vertex reads that endpoint's log itself


@pytest.mark.parametrize("vertex_api", [EmptyRegistry], indirect=True)
def test_without_the_environments_values_apply_fails_before_anything_is_read(vertex_api, capsys):
    """A misconfigured release fails even in a fresh environment, naming what it lacks and where it comes from."""
    assert apply() == 2
    error = capsys.readouterr().err
    assert "target.endpoint and target.request_log_table are empty" in error and "--endpoint" in error
    assert "platform.monitoring" in error
    assert vertex_api.requests == []
