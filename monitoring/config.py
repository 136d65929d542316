"""A model's monitoring config (`monitoring/<model>.yaml`), loaded once and typed.

The monitored features and their kinds come from the data set config (declared
once there): numeric and bucketized features are compared with Jensen-Shannon
divergence, categorical ones with L-infinity distance, the metrics Vertex AI Model
Monitoring v2 uses. The config adds thresholds, the schedule, the target data,
notification, and the drift alert log's name and the Logging sink's filter.
"""

from __future__ import annotations

import dataclasses
import zoneinfo
from pathlib import Path
from typing import Any, Literal

import yaml

from contract.dataset import DatasetConfig, DatasetConfigError, load_dataset_config
from contract.paths import PROJECT_ROOT
from storage import uri as storage_uri

# Names as the Vertex SDK's DataDriftSpec takes them.
JENSEN_SHANNON = "jensen_shannon_divergence"
L_INFINITY = "l_infinity"
NUMERIC_KINDS = ("numeric", "bucketized")
TARGET_SOURCES = ("endpoint_request_log", "batch_prediction_input")
DEFAULT_CONFIG = "monitoring/chicago_taxi.yaml"
# The log the local monitor writes its drift alerts to (our own payload, triggers.events.drift.DRIFT_ALERT_TYPE).
_DRIFT_ALERT_LOG = "projects/{project}/logs/mlops-drift-alerts"
# The sink forwards both kinds of alert the drift function takes: Vertex Model Monitoring's anomaly entries (the
# documented anomaly log; its v2 name is confirmed nowhere, so the filter is a setting) and our own.
_SINK_FILTER = ('logName="projects/{project}/logs/aiplatform.googleapis.com%2Fmodel_monitoring_anomaly" OR '
                'jsonPayload."@type"="vertex-mlops.drift-alert.v1"')

Kind = Literal["numeric", "categorical"]


class MonitoringConfigError(ValueError):
    """The monitoring config is malformed; the message names the key, what it held and what was expected."""


@dataclasses.dataclass(frozen=True)
class MonitoredFeature:
    name: str
    kind: Kind  # numeric: Jensen-Shannon divergence; categorical: L-infinity distance
    threshold: float

    @property
    def metric(self) -> str:
        return JENSEN_SHANNON if self.kind == "numeric" else L_INFINITY


@dataclasses.dataclass(frozen=True)
class Schedule:
    cron: str
    time_zone: str

    @property
    def vertex_cron(self) -> str:
        """The form ModelMonitor.create_schedule takes: the time zone as a CRON_TZ= prefix."""
        return f"CRON_TZ={self.time_zone} {self.cron}"


@dataclasses.dataclass(frozen=True)
class Target:
    source: str  # endpoint_request_log or batch_prediction_input
    window_hours: int  # the request log window a run looks at, ending at the run's time
    endpoint: str  # on Vertex: the endpoint (id or resource name) whose request-response log is monitored
    request_log_table: str  # or that log's BigQuery table bq://PROJECT.DATASET.TABLE
    batch_input_uri: str  # the batch prediction's input (JSONL or CSV) when source is batch_prediction_input


@dataclasses.dataclass(frozen=True)
class Notification:
    cloud_logging: bool
    user_emails: tuple[str, ...]
    notification_channels: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    model_name: str
    display_name: str
    dataset: DatasetConfig
    features: tuple[MonitoredFeature, ...]
    numeric_threshold: float
    categorical_threshold: float
    schedule: Schedule
    target: Target
    notification: Notification
    output_uri: str  # ModelMonitor's OutputSpec gcs_base_dir
    anomaly_log_name: str  # the log the local monitor writes its drift alerts to, with {project}
    sink_filter: str  # the Logging sink's filter, with {project}
    source: str

    def feature(self, name: str) -> MonitoredFeature:
        return next(feature for feature in self.features if feature.name == name)


def _section(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise MonitoringConfigError(f"{where}: '{key}' is {value!r}; expected a mapping")
    return value


def _threshold(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise MonitoringConfigError(f"{what} is {value!r}; expected a number above 0 and at most 1")
    return float(value)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise MonitoringConfigError(f"{what} is {value!r}; expected a list of non-empty strings")
    return tuple(value)


def _text(raw: dict, key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise MonitoringConfigError(f"{where}: '{key}' is {value!r}; expected a string")
    return value


def _check_cron(cron: str, where: str) -> None:
    fields = cron.split()
    if len(fields) != 5:
        raise MonitoringConfigError(f"{where}: schedule.cron {cron!r} has {len(fields)} field(s); expected 5 "
                                    "(minute hour day-of-month month day-of-week), e.g. '0 * * * *'")


def load_monitoring_config(location: str | Path = DEFAULT_CONFIG) -> MonitoringConfig:
    """Reads and checks the config; relative paths are relative to the project root."""
    text_location = str(location)
    if not storage_uri.is_gcs(text_location) and not Path(text_location).is_absolute():
        text_location = str(PROJECT_ROOT / text_location)
    where = str(location)
    try:
        raw = yaml.safe_load(storage_uri.read_text(text_location))
    except FileNotFoundError:
        raise MonitoringConfigError(f"monitoring config {where} does not exist; expected a YAML file such as "
                                    f"{DEFAULT_CONFIG}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise MonitoringConfigError(f"{where} is not YAML: {error}") from None
    if not isinstance(raw, dict):
        raise MonitoringConfigError(f"{where}: expected a mapping of sections (dataset_config, drift, schedule, "
                                    f"target, notification), got {type(raw).__name__}")
    known = {"dataset_config", "model_name", "display_name", "drift", "schedule", "target", "notification",
             "output_uri", "anomaly_log"}
    if unknown := sorted(set(raw) - known):
        raise MonitoringConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                                    f"expected {', '.join(sorted(known))}")
    try:
        dataset = load_dataset_config(_text(raw, "dataset_config", where))
    except DatasetConfigError as error:
        raise MonitoringConfigError(f"{where}: dataset_config: {error}") from None

    drift = _section(raw, "drift", where)
    for key, expected in (("numeric_metric", JENSEN_SHANNON), ("categorical_metric", L_INFINITY)):
        if drift.get(key, expected) != expected:
            raise MonitoringConfigError(f"{where}: drift.{key} is {drift[key]!r}; expected {expected!r} (the metric "
                                        "Vertex Model Monitoring v2 uses for this kind of feature)")
    numeric_threshold = _threshold(drift.get("default_numeric_threshold", 0.03), "drift.default_numeric_threshold")
    categorical_threshold = _threshold(drift.get("default_categorical_threshold", 0.1),
                                       "drift.default_categorical_threshold")
    per_feature = drift.get("feature_thresholds", {}) or {}
    if not isinstance(per_feature, dict):
        raise MonitoringConfigError(f"{where}: drift.feature_thresholds is {per_feature!r}; expected a mapping "
                                    "of feature name to threshold")
    kinds = {feature.name: "numeric" if feature.kind in NUMERIC_KINDS else "categorical"
             for feature in dataset.features}
    chosen = drift.get("features", list(kinds))
    chosen = _strings(chosen, "drift.features")
    if unknown := sorted((set(chosen) | set(per_feature)) - set(kinds)):
        raise MonitoringConfigError(f"{where}: drift names feature(s) {', '.join(unknown)} that the data set config "
                                    f"{dataset.source} does not declare; expected some of {', '.join(kinds)}")
    features = tuple(MonitoredFeature(name, kinds[name], _threshold(
        per_feature.get(name, numeric_threshold if kinds[name] == "numeric" else categorical_threshold),
        f"drift.feature_thresholds.{name}")) for name in chosen)

    schedule_raw = _section(raw, "schedule", where)
    schedule = Schedule(_text(schedule_raw, "cron", where + ": schedule"),
                        _text(schedule_raw, "time_zone", where + ": schedule", "UTC"))
    _check_cron(schedule.cron, where)
    try:
        zoneinfo.ZoneInfo(schedule.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise MonitoringConfigError(f"{where}: schedule.time_zone {schedule.time_zone!r} is not an IANA time zone "
                                    "(e.g. America/Chicago)") from None

    target_raw = _section(raw, "target", where)
    source = _text(target_raw, "source", where + ": target", "endpoint_request_log")
    if source not in TARGET_SOURCES:
        raise MonitoringConfigError(f"{where}: target.source is {source!r}; "
                                    f"expected one of {', '.join(TARGET_SOURCES)}")
    window = target_raw.get("window_hours", 24)
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 24 * 366:
        raise MonitoringConfigError(f"{where}: target.window_hours is {window!r}; expected a whole number of hours")
    target = Target(source, window, _text(target_raw, "endpoint", where + ": target", ""),
                    _text(target_raw, "request_log_table", where + ": target", ""),
                    _text(target_raw, "batch_input_uri", where + ": target", ""))
    if source == "batch_prediction_input" and not target.batch_input_uri:
        raise MonitoringConfigError(f"{where}: target.source is batch_prediction_input but target.batch_input_uri "
                                    "is empty; expected the batch's input URI")

    notification_raw = _section(raw, "notification", where)
    cloud_logging = notification_raw.get("cloud_logging", True)
    if not isinstance(cloud_logging, bool):
        raise MonitoringConfigError(f"{where}: notification.cloud_logging is {cloud_logging!r}; expected true or false")
    notification = Notification(cloud_logging,
                                _strings(notification_raw.get("user_emails", []), "notification.user_emails"),
                                _strings(notification_raw.get("notification_channels", []),
                                         "notification.notification_channels"))
    anomaly = _section(raw, "anomaly_log", where)
    log_name = _text(anomaly, "log_name", where + ": anomaly_log", _DRIFT_ALERT_LOG)
    model_name = _text(raw, "model_name", where, dataset.model_name)
    return MonitoringConfig(
        model_name=model_name, display_name=_text(raw, "display_name", where, f"{model_name}-monitor"),
        dataset=dataset, features=features, numeric_threshold=numeric_threshold,
        categorical_threshold=categorical_threshold, schedule=schedule, target=target, notification=notification,
        output_uri=_text(raw, "output_uri", where, ""), anomaly_log_name=log_name,
        sink_filter=_text(anomaly, "sink_filter", where + ": anomaly_log", _SINK_FILTER),
        source=where)
