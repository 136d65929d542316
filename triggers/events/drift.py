"""Drift alert: a Cloud Logging entry (via a Logging sink to Pub/Sub) asks for one retraining run.

Two payload formats are accepted, told apart by `jsonPayload["@type"]`:

1. Vertex AI Model Monitoring (v1) anomaly entries, as documented:
   logName `projects/P/logs/aiplatform.googleapis.com%2Fmodel_monitoring_anomaly`, jsonPayload
   `{"@type": VERTEX_ANOMALY_TYPE, "anomalyObjective": "RAW_FEATURE_DRIFT", "modelDeploymentMonitoringJob":
   "projects/N/locations/L/modelDeploymentMonitoringJobs/ID", "deployedModelId": ..., "startTime": ...,
   "endTime": ..., "featureAnomalies": [{"featureDisplayName", "deviation", "threshold"}]}`.
   The entry names the monitoring job, not the model: it counts for the configured
   model when the job is `MLOPS_MONITORING_JOB`. Skew objectives are not drift and are ignored.
2. This project's own monitoring output, `DRIFT_ALERT_TYPE` (built by `drift_alert_payload`):
   `{"@type": "vertex-mlops.drift-alert.v1", "model": "chicago-taxi-big-tipper", "monitoring_job": "...",
   "window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-08T00:00:00Z",
   "features": [{"name": "fare", "metric": "jensen_shannon", "value": 0.31, "threshold": 0.1}]}`.

Either way the alert is drift only if some feature's deviation is above its own threshold.

Cooldown: the job id is (template, model, start of the cooldown window holding the
alert's window end). Every alert of a burst asks for the same id; Vertex answers
409 to all but the first. No state store: the Vertex job list is the state.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from triggers.config import DriftConfig
from triggers.events.partitions import local_date, parse_instant, period_label, period_prefix, shift
from triggers.submission.data_version import data_version_value, listing_version
from triggers.submission.errors import IgnoredEvent
from triggers.submission.pipeline_jobs import RunRequest, make_job_id, slug
from triggers.submission.templates import load_template

TRIGGER = "drift-alert"
VERTEX_ANOMALY_TYPE = "type.googleapis.com/google.cloud.aiplatform.logging.ModelMonitoringAnomaliesLogEntry"
VERTEX_DRIFT_OBJECTIVES = ("RAW_FEATURE_DRIFT", "FEATURE_ATTRIBUTION_DRIFT")
DRIFT_ALERT_TYPE = "vertex-mlops.drift-alert.v1"
# Jensen-Shannon divergence for numeric features, L-infinity distance for categorical ones.
DRIFT_METRICS = ("jensen_shannon", "l_infinity")


@dataclasses.dataclass(frozen=True)
class FeatureDrift:
    name: str
    value: float
    threshold: float
    metric: str | None = None


@dataclasses.dataclass(frozen=True)
class DriftAlert:
    source: str  # the accepted @type
    window_end: datetime.datetime
    drifted: tuple[FeatureDrift, ...]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise IgnoredEvent(f"{what} is {value!r}, expected a finite number", malformed=True)
    return float(value)


def _instant(value: Any, what: str) -> datetime.datetime:
    try:
        return parse_instant(value, what)
    except ValueError as error:
        raise IgnoredEvent(str(error), malformed=True) from None


def _job_matches(configured: str, reported: Any) -> bool:
    # The configured value may be the full resource name or just its numeric id;
    # the entry carries the project *number*, so ids are compared.
    return isinstance(reported, str) and bool(reported) and reported.rsplit("/", 1)[-1] == configured.rsplit("/", 1)[-1]


def _vertex_alert(entry: Mapping[str, Any], payload: Mapping[str, Any], config: DriftConfig) -> DriftAlert:
    if not config.monitoring_job:
        raise IgnoredEvent("Vertex monitoring anomaly ignored: MLOPS_MONITORING_JOB is not set for this function")
    resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else {}
    labels = resource.get("labels") if isinstance(resource.get("labels"), dict) else {}
    job = payload.get("modelDeploymentMonitoringJob") or labels.get("model_deployment_monitoring_job")
    if not _job_matches(config.monitoring_job, job):
        raise IgnoredEvent(f"anomaly from monitoring job {job!r}, not {config.monitoring_job} of model {config.model}")
    objective = payload.get("anomalyObjective")
    if objective not in VERTEX_DRIFT_OBJECTIVES:
        raise IgnoredEvent(f"anomaly objective {objective!r} is not drift ({', '.join(VERTEX_DRIFT_OBJECTIVES)})")
    anomalies = payload.get("featureAnomalies")
    if not isinstance(anomalies, list):
        raise IgnoredEvent("featureAnomalies is missing or not a list", malformed=True)
    features = []
    for anomaly in anomalies:
        if not isinstance(anomaly, dict) or not isinstance(anomaly.get("featureDisplayName"), str):
            raise IgnoredEvent(f"feature anomaly {anomaly!r} has no featureDisplayName", malformed=True)
        name = anomaly["featureDisplayName"]
        features.append(FeatureDrift(name, _number(anomaly.get("deviation"), f"deviation of {name}"),
                                     _number(anomaly.get("threshold"), f"threshold of {name}")))
    window_end = _instant(payload.get("endTime") or entry.get("timestamp"), "endTime")
    return DriftAlert(VERTEX_ANOMALY_TYPE, window_end, tuple(f for f in features if f.value > f.threshold))


def _own_alert(payload: Mapping[str, Any], config: DriftConfig) -> DriftAlert:
    model = payload.get("model")
    if model != config.model:
        raise IgnoredEvent(f"drift alert for model {model!r}, this function retrains {config.model}")
    window_end = _instant(payload.get("window_end"), "window_end")
    if payload.get("window_start") is not None and _instant(payload["window_start"], "window_start") > window_end:
        raise IgnoredEvent("window_start is after window_end", malformed=True)
    entries = payload.get("features")
    if not isinstance(entries, list):
        raise IgnoredEvent("features is missing or not a list", malformed=True)
    features = []
    for feature in entries:
        if not isinstance(feature, dict) or not isinstance(feature.get("name"), str):
            raise IgnoredEvent(f"feature {feature!r} has no name", malformed=True)
        name, metric = feature["name"], feature.get("metric")
        if metric not in DRIFT_METRICS:
            raise IgnoredEvent(f"feature {name} has metric {metric!r}, expected one of {', '.join(DRIFT_METRICS)}",
                               malformed=True)
        features.append(FeatureDrift(name, _number(feature.get("value"), f"value of {name}"),
                                     _number(feature.get("threshold"), f"threshold of {name}"), metric))
    return DriftAlert(DRIFT_ALERT_TYPE, window_end, tuple(f for f in features if f.value > f.threshold))


def parse_log_entry(entry: Any, config: DriftConfig) -> DriftAlert:
    """The drift alert in a LogEntry, checked against the configured model; IgnoredEvent if it is none."""
    if not isinstance(entry, dict) or not isinstance(entry.get("jsonPayload"), dict):
        raise IgnoredEvent("message is not a LogEntry with a jsonPayload", malformed=True)
    payload = entry["jsonPayload"]
    kind = payload.get("@type")
    if kind == VERTEX_ANOMALY_TYPE:
        alert = _vertex_alert(entry, payload, config)
    elif kind == DRIFT_ALERT_TYPE:
        alert = _own_alert(payload, config)
    else:
        raise IgnoredEvent(f"log entry @type {kind!r} is neither {VERTEX_ANOMALY_TYPE} nor {DRIFT_ALERT_TYPE}")
    if not alert.drifted:
        raise IgnoredEvent("no feature deviates above its threshold")
    return alert


def cooldown_start(instant: datetime.datetime, hours: int) -> datetime.datetime:
    """Start of the fixed, epoch-aligned window of `hours` holding `instant` (24: UTC midnight)."""
    seconds = hours * 3600
    try:
        return datetime.datetime.fromtimestamp(int(instant.timestamp()) // seconds * seconds, datetime.UTC)
    except (OverflowError, ValueError, OSError):  # the window would start before year 1
        raise ValueError(f"the {hours}-hour cooldown window holding {instant.isoformat()} is out of range: "
                         "it starts before year 1") from None


def window_data_uri(alert: DriftAlert, config: DriftConfig) -> str:
    """The recent data window: the last N partitions up to the alert's, as a comma-separated list of prefixes."""
    end = local_date(alert.window_end, config.timezone)
    periods = [shift(end, config.window_granularity, back) for back in reversed(range(config.window_partitions))]
    return ",".join(f"gs://{config.data_bucket}/{period_prefix(config.data_prefix, period, config.window_granularity)}"
                    for period in periods)


def run_for_log_entry(entry: Any, config: DriftConfig) -> RunRequest:
    alert = parse_log_entry(entry, config)
    try:
        window = cooldown_start(alert.window_end, config.cooldown_hours)
        end = local_date(alert.window_end, config.timezone)
        data_uri = window_data_uri(alert, config)
    except ValueError as error:  # at the calendar's limits
        raise IgnoredEvent(f"no retraining window for an alert at {alert.window_end.isoformat()}: {error}",
                           malformed=True) from None
    template = load_template(config.template_uri, max_age_seconds=config.vertex.template_cache_seconds)
    return RunRequest(
        template_uri=config.template_uri,
        parameter_values={**config.vertex.pipeline_parameters, "data_uri": data_uri,
                          **data_version_value(template, lambda: listing_version(data_uri))},
        labels={"trigger": TRIGGER, "model": slug(config.model),
                "partition": period_label(end, config.window_granularity), "cooldown-window": f"{window:%Y%m%d%H%M}"},
        service_account=config.vertex.service_account,
        job_id=make_job_id(template.name, "drift", config.model, f"{window:%Y%m%d%H%M}"),
    )


def drift_alert_payload(model: str, window_start: datetime.datetime, window_end: datetime.datetime,
                        features: Sequence[FeatureDrift], monitoring_job: str = "") -> dict[str, Any]:
    """This project's monitoring output, as the jsonPayload of one log entry (the monitoring step emits it).

    Every monitored feature may be listed; the trigger retrains only if some `value > threshold`.
    """
    if window_start.tzinfo is None or window_end.tzinfo is None or window_start > window_end:
        raise ValueError("window_start and window_end must be aware instants with window_start <= window_end")
    for feature in features:
        if feature.metric not in DRIFT_METRICS:
            raise ValueError(f"feature {feature.name}: metric {feature.metric!r}, expected one of {DRIFT_METRICS}")

    def rfc3339(instant: datetime.datetime) -> str:
        return instant.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")

    return {"@type": DRIFT_ALERT_TYPE, "model": model, "monitoring_job": monitoring_job,
            "window_start": rfc3339(window_start), "window_end": rfc3339(window_end),
            "features": [{"name": f.name, "metric": f.metric, "value": f.value, "threshold": f.threshold}
                         for f in features]}


def log_entry_from_message(data: bytes) -> Any:
    """A Logging sink publishes each LogEntry as JSON in the message data."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise IgnoredEvent("Pub/Sub message data is not a JSON LogEntry", malformed=True) from None
