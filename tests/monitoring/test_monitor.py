"""The local monitor on the shipped sample: 2013 traffic against the 2013 champion's training data does not
alert, 2016 traffic does; empty windows, missing features and bad configs say what they are."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from monitoring.config import MonitoringConfigError, load_monitoring_config
from monitoring.drift import jensen_shannon
from monitoring.monitor import MonitoringError, monitor_once
from tests.monitoring.monitoring_data import MODEL, log_traffic, registry_with_2013_champion, year_instances
from triggers.config import DriftConfig
from triggers.events import drift as drift_events


def later() -> datetime.datetime:
    """A window end just after traffic logged now (taken when a test runs, not when the module loads: the
    suite may reach a test many minutes after collecting it)."""
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return registry_with_2013_champion(tmp_path_factory.mktemp("monitoring"))


@pytest.fixture(scope="module")
def config():
    return load_monitoring_config()


class Recorder:
    """Stands in for LocalLogging where a test only needs what was written (no sink)."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def write(self, entry: dict) -> list[str]:
        self.entries.append(entry)
        return []


def test_identical_and_disjoint_distributions() -> None:
    assert jensen_shannon(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0
    assert jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_2013_traffic_against_the_2013_champion_does_not_alert(registry, config, tmp_path) -> None:
    log_traffic(tmp_path / "log", year_instances("2013"))
    logging = Recorder()

    run = monitor_once(config, str(registry), tmp_path / "out", request_log_dir=tmp_path / "log", window_end=later(),
                       logging=logging)

    assert run.result.current_rows > 4000 and not run.result.not_compared
    assert run.result.drifted == () and run.anomaly_entry is None and logging.entries == []
    worst = max(feature.value / feature.threshold for feature in run.result.features)
    assert worst < 0.8, run.result.summary()  # a margin, not a near miss
    assert json.loads(run.result_file.read_text())["current_rows"] == run.result.current_rows


def test_2016_traffic_alerts_with_an_entry_the_drift_function_accepts(registry, config, tmp_path) -> None:
    """The local chain's alert is this project's own payload (not an imitation of Vertex's unpublished one), in
    a LogEntry valid against logging.v2, that the configured sink forwards and the drift function accepts."""
    from fidelity import discovery
    from monitoring.local_logging import LogFilter

    log_traffic(tmp_path / "log", year_instances("2016"))
    logging = Recorder()

    run = monitor_once(config, str(registry), tmp_path / "out", request_log_dir=tmp_path / "log", window_end=later(),
                       logging=logging, project="my-project",
                       alert_time=datetime.datetime(2016, 12, 31, tzinfo=datetime.UTC))

    drifted = {feature.name for feature in run.result.drifted}
    assert {"trip_miles", "payment_type"} <= drifted, run.result.summary()
    (entry,) = logging.entries
    assert not list(discovery.load("logging.v2").problems(entry, {"$ref": "LogEntry"}, ""))
    assert entry["logName"] == "projects/my-project/logs/mlops-drift-alerts"
    assert LogFilter(config.sink_filter.format(project="my-project")).matches(entry)
    payload = entry["jsonPayload"]
    assert payload["@type"] == drift_events.DRIFT_ALERT_TYPE and payload["model"] == MODEL
    assert {f["name"] for f in payload["features"] if f["value"] > f["threshold"]} == drifted
    assert payload["window_end"] == "2016-12-31T00:00:00Z"
    drift_config = DriftConfig.from_env({
        "MLOPS_PROJECT": "my-project", "MLOPS_REGION": "us-central1", "MLOPS_PIPELINE_ROOT": "gs://pipeline-root/runs",
        "MLOPS_SERVICE_ACCOUNT": "sa@my-project.iam.gserviceaccount.com", "MLOPS_TRAINING_TEMPLATE_URI": "t.json",
        "MLOPS_DATA_BUCKET": "landing", "MLOPS_MODEL": MODEL})
    alert = drift_events.parse_log_entry(entry, drift_config)
    assert {feature.name for feature in alert.drifted} == drifted


def test_an_empty_window_says_so_and_alerts_nothing(registry, config, tmp_path) -> None:
    log_traffic(tmp_path / "log", year_instances("2016"))
    logging = Recorder()
    last_week = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=7)

    run = monitor_once(config, str(registry), tmp_path / "out", request_log_dir=tmp_path / "log",
                       window_end=last_week, logging=logging)

    assert run.result.empty and run.result.requests == 0 and run.anomaly_entry is None and logging.entries == []
    assert "no data in the window" in run.result.summary()
    assert "NO DATA" in run.report.read_text()


def test_a_feature_missing_from_the_log_is_reported_not_crashed_on(registry, config, tmp_path) -> None:
    instances = [{k: v for k, v in row.items() if k != "company"} for row in year_instances("2013")]
    log_traffic(tmp_path / "log", instances)

    run = monitor_once(config, str(registry), tmp_path / "out", request_log_dir=tmp_path / "log", window_end=later(),
                       logging=Recorder())

    (missing,) = run.result.not_compared
    assert missing.name == "company" and "not in the current data" in missing.note
    assert "company" in run.result.summary() and "not compared" in run.report.read_text()


def test_unreadable_log_rows_are_skipped_and_counted(registry, config, tmp_path) -> None:
    log_traffic(tmp_path / "log", year_instances("2013")[:64])
    from serving.request_log import RequestLog, RequestLogSettings

    log = RequestLog(tmp_path / "log", "local", RequestLogSettings())
    log.write("1", b"not json", b"{}")
    log.write("1", b'{"instances": "nope"}', b"{}")
    log.close()

    run = monitor_once(config, str(registry), tmp_path / "out", request_log_dir=tmp_path / "log", window_end=later())

    assert run.result.skipped == 2 and run.result.current_rows == 64


def test_a_batch_input_is_monitored_like_the_log(registry, config, tmp_path) -> None:
    batch = tmp_path / "instances.jsonl"
    batch.write_text("".join(json.dumps(row) + "\n" for row in year_instances("2016")))

    run = monitor_once(config, str(registry), tmp_path / "out", batch_input_uri=str(batch), logging=Recorder())

    assert run.result.current_rows == len(year_instances("2016")) and run.anomaly_entry is not None
    bad = tmp_path / "bad.jsonl"
    bad.write_text('[1, 2]\n')
    with pytest.raises(MonitoringError, match="one JSON object"):
        monitor_once(config, str(registry), tmp_path / "out2", batch_input_uri=str(bad))


def test_no_champion_is_a_clear_error(config, tmp_path) -> None:
    with pytest.raises(MonitoringError, match="has no champion"):
        monitor_once(config, str(tmp_path / "empty-registry"), tmp_path / "out", request_log_dir=tmp_path)


@pytest.mark.parametrize(("change", "named"), [
    ({"drift": {"numeric_metric": "wasserstein"}}, "jensen_shannon_divergence"),
    ({"drift": {"feature_thresholds": {"tip": 0.1}}}, "tip"),
    ({"drift": {"default_numeric_threshold": "high"}}, "default_numeric_threshold"),
    ({"drift": {"feature_thresholds": {"fare": 0}}}, "feature_thresholds.fare"),
    ({"schedule": {"cron": "every hour"}}, "5"),
    ({"schedule": {"cron": "0 * * * *", "time_zone": "Mars/Olympus"}}, "Mars/Olympus"),
    ({"target": {"source": "bigquery"}}, "endpoint_request_log"),
    ({"target": {"source": "batch_prediction_input"}}, "batch_input_uri"),
    ({"notification": {"cloud_logging": "yes"}}, "cloud_logging"),
    ({"colour": "blue"}, "unknown key"),
    ({"dataset_config": "nowhere.yaml"}, "dataset_config"),
])
def test_a_bad_config_names_what_is_wrong(tmp_path, change, named) -> None:
    raw = yaml.safe_load(Path("monitoring/chicago_taxi.yaml").read_text()) | change
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(MonitoringConfigError, match=named):
        load_monitoring_config(path)


def test_empty_truncated_and_missing_config_files(tmp_path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "truncated.yaml").write_text("drift: {numeric_metric: [")
    for name, named in (("empty.yaml", "expected a mapping"), ("truncated.yaml", "not YAML"),
                        ("absent.yaml", "does not exist")):
        with pytest.raises(MonitoringConfigError, match=named):
            load_monitoring_config(tmp_path / name)


def test_the_report_renders_each_feature_with_baseline_and_current(registry, config, tmp_path) -> None:
    from tests.report_rendering import CANDIDATE_COLOUR, CHAMPION_COLOUR, render_report

    log_traffic(tmp_path / "log", year_instances("2016"))
    run = monitor_once(config, str(registry), tmp_path / "out", request_log_dir=tmp_path / "log", window_end=later())

    rendered = render_report(run.report, tmp_path / "render")
    assert len(rendered.plots) == len(config.features)
    trip_miles = [feature.name for feature in config.features].index("trip_miles")
    # Baseline bars in the first colour, current bars in the second, in the plot of a drifted feature.
    assert rendered.pixels_near(trip_miles, CANDIDATE_COLOUR) > 200
    assert rendered.pixels_near(trip_miles, CHAMPION_COLOUR) > 200
    page = run.report.read_text()
    assert "DRIFT in 2 feature(s)" in page and "payment_type" in page


def test_as_a_pipeline_step_it_writes_kfp_metrics_and_the_report(registry, tmp_path) -> None:
    from kfp import dsl

    from components.monitor_drift import monitor_drift

    batch = tmp_path / "instances.jsonl"
    batch.write_text("".join(json.dumps(row) + "\n" for row in year_instances("2016")))
    metrics, report, result = (dsl.Metrics(uri=str(tmp_path / "metrics")), dsl.HTML(uri=str(tmp_path / "report")),
                               dsl.Artifact(uri=str(tmp_path / "result")))

    drifted = monitor_drift.python_func(monitoring_config="monitoring/chicago_taxi.yaml", registry_uri=str(registry),
                                        batch_input_uri=str(batch), metrics=metrics, report=report, result=result)

    assert drifted is True and result.metadata["drifted"] == ["trip_miles", "payment_type"]
    assert metrics.metadata["trip_miles.jensen_shannon_divergence"] > 0.03
    assert metrics.metadata["drifted_features"] == 2 and metrics.metadata["instances"] == len(year_instances("2016"))
    assert "DRIFT in 2 feature(s)" in Path(report.path).read_text()


def test_bad_targets_name_what_is_wrong(registry, config, tmp_path) -> None:
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text('{"trip_miles": 1.0}\n{"trip_miles": \n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(MonitoringError, match="line 2: not JSON"):
        monitor_once(config, str(registry), tmp_path / "a", batch_input_uri=str(truncated))
    with pytest.raises(MonitoringError, match="does not exist"):
        monitor_once(config, str(registry), tmp_path / "b", request_log_dir=tmp_path / "typo")
    run = monitor_once(config, str(registry), tmp_path / "c", batch_input_uri=str(empty), logging=Recorder())
    assert run.result.empty and run.anomaly_entry is None and "no instances in batch input" in run.result.summary()
