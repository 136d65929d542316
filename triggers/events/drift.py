"""Drift alert: a Cloud Logging entry (via a Logging sink to Pub/Sub) asks for one retraining run.

Two kinds of entry are accepted:

1. Vertex AI Model Monitoring (v2) anomaly entries: with `NotificationSpec.enable_cloud_logging`, a monitor's
   scheduled runs (`modelMonitors/M/modelMonitoringJobs/J`, server-assigned ids) log their anomalies as a JSON
   payload encoded from `google.cloud.aiplatform.logging.ModelMonitoringAnomaliesLogEntry`, whose fields are
   not published. So the entry is only a signal: recognised by that `@type` or by the anomaly log's name, it
   counts for the monitor of `MLOPS_MODEL_MONITOR` unless it recognisably names another monitor (a
   `.../modelMonitors/ID` anywhere in it, or a resource label naming one). The alerts themselves are read
   through the documented API, `modelMonitors.searchModelMonitoringAlerts` (v1beta1): the monitor's
   raw-feature-drift alerts created within `ALERT_SEARCH_MARGIN` of the entry's timestamp (of the job the
   entry names, if it names one of ours). Each alert is a feature whose drift Vertex found above its
   threshold (`statsName`, `anomaly.tabularAnomaly.condition.threshold`); the newest `alertTime` is the
   alert's end. An entry that finds no alert yet is retried while it is fresh (alerts may become searchable
   after the entry is written), then acknowledged.
2. This project's own monitoring output, `DRIFT_ALERT_TYPE` (built by `drift_alert_payload`; the local
   monitor writes it): `{"@type": "vertex-mlops.drift-alert.v1", "model": "chicago-taxi-big-tipper",
   "monitoring_job": "...", "window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-08T00:00:00Z",
   "features": [{"name": "fare", "metric": "jensen_shannon", "value": 0.31, "threshold": 0.1}]}`.

Either way the alert is drift only if some feature is above its own threshold.

Cooldown: the job id is (template, model, start of the cooldown window holding the
alert's window end). Every alert of a burst asks for the same id; Vertex answers
409 to all but the first. No state store: the Vertex job list is the state.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from triggers.config import MODEL_MONITOR, DriftConfig
from triggers.events.partitions import local_date, parse_instant, period_label, period_prefix, shift
from triggers.submission.data_version import data_version_value, listing_version
from triggers.submission.errors import IgnoredEvent, TransientError
from triggers.submission.model_monitoring import find_monitor, search_alerts
from triggers.submission.pipeline_jobs import RunRequest, make_job_id, slug
from triggers.submission.templates import load_template

TRIGGER = "drift-alert"
VERTEX_ANOMALY_TYPE = "type.googleapis.com/google.cloud.aiplatform.logging.ModelMonitoringAnomaliesLogEntry"
# The documented Model Monitoring anomaly log (its v2 name is confirmed nowhere: the @type also recognises it).
VERTEX_ANOMALY_LOG = "aiplatform.googleapis.com%2Fmodel_monitoring_anomaly"
# Alerts of the run that logged the entry: created about when it was written (Unconfirmed in docs/fidelity.md).
ALERT_SEARCH_MARGIN = datetime.timedelta(hours=1)
# An entry younger than this that finds no alert is retried: the alerts may not be searchable yet.
ALERT_VISIBILITY_WAIT = datetime.timedelta(minutes=10)
_MONITOR = re.compile(r"projects/[^/\s\"]+/locations/[^/\s\"]+/modelMonitors/([^/\s\":@]+)"
                      r"(?:/modelMonitoringJobs/([^/\s\":@]+))?")
DRIFT_ALERT_TYPE = "vertex-mlops.drift-alert.v1"
# Jensen-Shannon divergence for numeric features, L-infinity distance for categorical ones.
DRIFT_METRICS = ("jensen_shannon", "l_infinity")


@dataclasses.dataclass(frozen=True)
class FeatureDrift:
    name: str
    value: float | None  # None: above its threshold by Vertex's own alert condition, the value not published
    threshold: float
    metric: str | None = None

    @property
    def drifted(self) -> bool:
        return self.value is None or self.value > self.threshold


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


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def named_monitors(entry: Mapping[str, Any]) -> dict[str, set[str]]:
    """The monitors an entry recognisably names (monitor id -> job names of it it names): a resource name
    `projects/P/locations/L/modelMonitors/ID[/modelMonitoringJobs/J]` anywhere in it, or a resource label
    whose key names a model monitor (`model_monitor`, `model_monitor_id`)."""
    named: dict[str, set[str]] = {}
    for text in _strings(entry):
        for match in _MONITOR.finditer(text):
            jobs = named.setdefault(match.group(1), set())
            if match.group(2):
                jobs.add(match.group(0))
    resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else {}
    labels = resource.get("labels") if isinstance(resource.get("labels"), dict) else {}
    for key, value in labels.items():
        if key in ("model_monitor", "model_monitor_id") and isinstance(value, str) and value:
            named.setdefault(value.rsplit("/", 1)[-1], set())
    return named


def is_vertex_anomaly_entry(entry: Mapping[str, Any]) -> bool:
    payload = entry.get("jsonPayload") if isinstance(entry.get("jsonPayload"), dict) else {}
    log_name = entry.get("logName") if isinstance(entry.get("logName"), str) else ""
    return payload.get("@type") == VERTEX_ANOMALY_TYPE or log_name.endswith(f"/logs/{VERTEX_ANOMALY_LOG}")


AlertSearch = Callable[[str, datetime.datetime, datetime.datetime, str], Iterable[Mapping[str, Any]]]
MonitorFind = Callable[[str], str | None]  # a monitor's display name -> its resource name, if it exists


def _alert_feature(alert: Mapping[str, Any]) -> tuple[FeatureDrift, datetime.datetime]:
    name = alert.get("statsName")
    anomaly = alert.get("anomaly") if isinstance(alert.get("anomaly"), dict) else {}
    tabular = anomaly.get("tabularAnomaly") if isinstance(anomaly.get("tabularAnomaly"), dict) else {}
    condition = tabular.get("condition") if isinstance(tabular.get("condition"), dict) else {}
    if not isinstance(name, str) or not name:
        raise IgnoredEvent(f"model monitoring alert {dict(alert)!r:.200} has no statsName (its feature)",
                           malformed=True)
    threshold = _number(condition.get("threshold"), f"threshold of the {name} alert")
    algorithm = anomaly.get("algorithm") if isinstance(anomaly.get("algorithm"), str) else None
    # The measured value sits in tabularAnomaly.anomaly, a Value whose shape is not published: not read. The
    # alert itself says the value is above the threshold (ModelMonitoringAlertCondition).
    return FeatureDrift(name, None, threshold, algorithm), _instant(alert.get("alertTime"), f"alertTime of {name}")


def _vertex_alert(entry: Mapping[str, Any], config: DriftConfig, search: AlertSearch, find: MonitorFind,
                  now: datetime.datetime) -> DriftAlert:
    monitor = config.model_monitor_name
    if config.model_monitor_display_name:
        monitor = find(config.model_monitor_display_name) or ""
        if not monitor:
            raise IgnoredEvent(f"Vertex model monitoring entry ignored: no model monitor is named "
                               f"{config.model_monitor_display_name!r} in {config.vertex.parent} "
                               f"({MODEL_MONITOR.env}; `python -m monitoring apply` creates it)")
    if not monitor:
        raise IgnoredEvent(f"Vertex model monitoring entry ignored: {MODEL_MONITOR.env} is not set for this function")
    ours = monitor.rsplit("/", 1)[-1]
    named = named_monitors(entry)
    if named and ours not in named:
        raise IgnoredEvent(f"anomaly entry of model monitor {', '.join(sorted(named))}, not {ours} of model "
                           f"{config.model}")
    logged = _instant(entry.get("timestamp"), "timestamp")
    jobs = named.get(ours, set())
    job = next(iter(jobs)) if len(jobs) == 1 else ""
    features, times = [], []
    for alert in search(monitor, logged - ALERT_SEARCH_MARGIN, logged + ALERT_SEARCH_MARGIN, job):
        feature, alerted = _alert_feature(alert)
        features.append(feature)
        times.append(alerted)
    if not features:
        where = f"job {job}" if job else f"model monitor {monitor}"
        if now - logged < ALERT_VISIBILITY_WAIT:
            raise TransientError(f"{where} has no raw-feature-drift alert within {ALERT_SEARCH_MARGIN} of the "
                                 f"entry logged at {logged.isoformat()} yet: retried until it can be read")
        raise IgnoredEvent(f"{where} has no raw-feature-drift alert within {ALERT_SEARCH_MARGIN} of the entry "
                           f"logged at {logged.isoformat()}: nothing to retrain on")
    return DriftAlert(f"{VERTEX_ANOMALY_TYPE} ({monitor})", max(times), tuple(features))


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
    return DriftAlert(DRIFT_ALERT_TYPE, window_end, tuple(f for f in features if f.drifted))


def vertex_alert_search(config: DriftConfig) -> AlertSearch:
    """searchModelMonitoringAlerts through this function's Vertex AI endpoint: raw-feature-drift alerts only
    (the drift our monitors are configured for: monitoring/vertex.py)."""
    def search(monitor: str, start: datetime.datetime, end: datetime.datetime, job: str):
        return search_alerts(config.vertex.api_endpoint, monitor, start, end, job=job)

    return search


def vertex_monitor_find(config: DriftConfig) -> MonitorFind:
    """modelMonitors.list (by display name) in this function's project and region."""
    return lambda display_name: find_monitor(config.vertex.api_endpoint, config.vertex.parent, display_name)


def parse_log_entry(entry: Any, config: DriftConfig, search: AlertSearch | None = None,
                    now: datetime.datetime | None = None, find: MonitorFind | None = None) -> DriftAlert:
    """The drift alert a LogEntry stands for, checked against the configured model (our own entries) or monitor
    (Vertex's, read through `search`: default searchModelMonitoringAlerts); IgnoredEvent if it is none."""
    if not isinstance(entry, dict):
        raise IgnoredEvent("message is not a LogEntry with a jsonPayload", malformed=True)
    payload = entry.get("jsonPayload")
    if isinstance(payload, dict) and payload.get("@type") == DRIFT_ALERT_TYPE:
        alert = _own_alert(payload, config)
    elif is_vertex_anomaly_entry(entry):
        alert = _vertex_alert(entry, config, search or vertex_alert_search(config),
                              find or vertex_monitor_find(config), now or datetime.datetime.now(datetime.UTC))
    elif not isinstance(payload, dict):
        raise IgnoredEvent("message is not a LogEntry with a jsonPayload", malformed=True)
    else:
        raise IgnoredEvent(f"log entry @type {payload.get('@type')!r} is neither {VERTEX_ANOMALY_TYPE} nor "
                           f"{DRIFT_ALERT_TYPE}")
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


def run_for_log_entry(entry: Any, config: DriftConfig, search: AlertSearch | None = None) -> RunRequest:
    alert = parse_log_entry(entry, config, search)
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
