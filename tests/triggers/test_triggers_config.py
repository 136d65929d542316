"""Configuration: declared once, checked at start, every problem named."""

from __future__ import annotations

import pytest
from trigger_helpers import PROJECT_ROOT

from triggers import config as settings
from triggers.submission.errors import ConfigError


def test_every_missing_required_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        settings.DriftConfig.from_env({})
    message = str(refused.value)
    assert message.startswith("drift_alert trigger configuration is invalid")
    required = [s.env for s in settings.DriftConfig.SETTINGS if s.required]
    assert required == ["MLOPS_PROJECT", "MLOPS_REGION", "MLOPS_PIPELINE_ROOT", "MLOPS_SERVICE_ACCOUNT",
                        "MLOPS_TRAINING_TEMPLATE_URI", "MLOPS_DATA_BUCKET", "MLOPS_MODEL"]
    for name in required:
        assert f"{name} is not set" in message
    assert "MLOPS_DRIFT_COOLDOWN_HOURS" not in message  # has a default


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("MLOPS_PROJECT", "My Project", "expected a project id"),
    ("MLOPS_REGION", "EU", "expected a region such as us-central1"),
    ("MLOPS_PIPELINE_ROOT", "/tmp/root", "expected a Cloud Storage prefix"),
    ("MLOPS_SERVICE_ACCOUNT", "pipelines", "expected a service account email"),
    ("MLOPS_VERTEX_API_ENDPOINT", "http://vertex.example.com", "expected https, or http to a loopback host"),
    ("MLOPS_VERTEX_API_ENDPOINT", "https://us-central1-aiplatform.googleapis.com/v1", "expected a base URL"),
    ("MLOPS_PIPELINE_PARAMETERS", "[1, 2]", "expected a JSON object"),
    ("MLOPS_PIPELINE_PARAMETERS", "{epochs: 2}", "expected a JSON object"),
    ("MLOPS_TEMPLATE_CACHE_SECONDS", "-1", "expected a whole number from 0 to 86400"),
    ("MLOPS_TRAINING_TEMPLATE_URI", "gs://templates/", "expected gs://BUCKET/path/to/template.json"),
    ("MLOPS_TRAINING_TEMPLATE_URI", "https://example.com/t.json", "expected gs://BUCKET"),
    ("MLOPS_DATA_BUCKET", "gs://landing-data", "expected a bucket name"),
    ("MLOPS_DATA_PREFIX", "data/../processed", "without leading/trailing '/'"),
    ("MLOPS_DATA_PREFIX", "/data/processed", "without leading/trailing '/'"),
    ("MLOPS_PARTITION_TIMEZONE", "Mars/Olympus_Mons", "expected an IANA time zone"),
    ("MLOPS_MODEL", "a model", "expected a model name"),
    ("MLOPS_MODEL_MONITOR", "my monitor!", "expected a ModelMonitor resource name"),
    ("MLOPS_MODEL_MONITOR", "projects/p/locations/l/modelDeploymentMonitoringJobs/1", "expected a ModelMonitor"),
    ("MLOPS_DRIFT_COOLDOWN_HOURS", "0", "expected a whole number from 1 to 8760"),
    ("MLOPS_DRIFT_WINDOW_GRANULARITY", "week", "expected one of day, month"),
    ("MLOPS_DRIFT_WINDOW_PARTITIONS", "three", "expected a whole number"),
    ("MLOPS_DRIFT_WINDOW_PARTITIONS", "\uff13", "expected a whole number"),       # fullwidth 3: int() reads it
    ("MLOPS_DRIFT_COOLDOWN_HOURS", "2_4", "expected a whole number from 1 to 8760"),  # int() reads it as 24
])
def test_a_bad_value_is_named_with_what_was_expected(trigger_env: dict, name: str, value: str,
                                                     expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings.DriftConfig.from_env({**trigger_env, name: value})
    (problem,) = str(refused.value).splitlines()[1:]
    assert problem.startswith(f"  - {name}={value!r} is not valid: ")
    assert expected in problem


def test_defaults_apply_and_the_endpoint_follows_the_region(trigger_env: dict) -> None:
    environ = {k: v for k, v in trigger_env.items() if k != "MLOPS_VERTEX_API_ENDPOINT"}
    environ["MLOPS_REGION"] = "europe-west4"
    config = settings.ScheduleConfig.from_env(environ)
    assert config.vertex.api_endpoint == "https://europe-west4-aiplatform.googleapis.com"
    assert (config.granularity, config.offset, config.parameter, str(config.timezone)) == ("day", 1, "data_uri", "UTC")
    assert config.data_prefix == "data/processed" and config.vertex.pipeline_parameters == {}


def test_a_model_monitor_is_named_in_the_functions_region(trigger_env: dict) -> None:
    """Its alerts are read from the function's regional Vertex AI endpoint: an id is completed with the project
    and region; a monitor in another region is refused."""
    config = settings.DriftConfig.from_env({**trigger_env, "MLOPS_MODEL_MONITOR": "123"})
    assert config.model_monitor_name == "projects/test-project/locations/us-central1/modelMonitors/123"
    with pytest.raises(ConfigError, match="is in europe-west4, expected a monitor in MLOPS_REGION=us-central1"):
        settings.DriftConfig.from_env({**trigger_env,
                                       "MLOPS_MODEL_MONITOR": "projects/p/locations/europe-west4/modelMonitors/1"})


def test_an_empty_optional_variable_means_its_default(trigger_env: dict) -> None:
    config = settings.DriftConfig.from_env({**trigger_env, "MLOPS_DRIFT_COOLDOWN_HOURS": " "})
    assert config.cooldown_hours == 24


@pytest.mark.parametrize(("function", "target"), [("new_data", "on_object_finalized"),
                                                  ("schedule", "on_schedule_message"),
                                                  ("drift_alert", "on_drift_log_entry")])
def test_a_bad_configuration_fails_the_function_start_not_each_event(function_app, monkeypatch, function: str,
                                                                      target: str) -> None:
    # functions-framework raises at create_app: the new revision never becomes ready and the
    # previous one keeps serving, instead of every event failing (or being dropped) later.
    monkeypatch.delenv("MLOPS_PROJECT")
    monkeypatch.setenv("MLOPS_REGION", "EU")
    with pytest.raises(ConfigError, match=r"MLOPS_PROJECT is not set(.|\n)*MLOPS_REGION='EU' is not valid"):
        function_app(function, target)


def test_the_docs_show_the_declared_variables() -> None:
    docs = (PROJECT_ROOT / "docs" / "triggers.md").read_text()
    assert settings.settings_table() in docs, "regenerate the table with: python -m triggers.config"
