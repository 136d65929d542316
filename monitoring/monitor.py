"""The local monitor: the config's drift metrics on a window of current data against the champion's training data.

Baseline: the training split of the current champion, found through the registry's
lineage (the `examples` artifact its register step recorded). Current data: the
requests the local endpoint logged in a time window (serving/request_log.py), or a
batch prediction's input (JSONL instances or CSV). Output: a result (JSON), an HTML
report per feature, and, when some feature is above its threshold and Cloud Logging
is on, one drift alert log entry whose payload is this project's own
(`triggers.events.drift.DRIFT_ALERT_TYPE`, `drift_alert_entry`): the entry Vertex's Model
Monitoring v2 writes has unpublished fields, so the local chain does not imitate it.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from contract.artifacts import TRAIN_SPLIT
from dataprep.ingest import load_split
from monitoring.config import JENSEN_SHANNON, L_INFINITY, MonitoringConfig
from monitoring.drift import FeatureDrift, feature_drift
from registry.model_registry import CHAMPION, ModelVersion, RegistryError, open_registry
from serving.request_log import read_rows
from storage import uri as storage_uri

# The monitoring config's metric names (Vertex's) -> the names this project's drift alert payload uses.
_ALERT_METRICS = {JENSEN_SHANNON: "jensen_shannon", L_INFINITY: "l_infinity"}


class MonitoringError(ValueError):
    """The monitor cannot run as asked (no champion, no baseline, unreadable target); the message says why."""


@dataclasses.dataclass(frozen=True)
class MonitoringResult:
    model_name: str
    champion_version: str
    baseline_uri: str
    baseline_rows: int
    target: str
    window_start: datetime.datetime
    window_end: datetime.datetime
    current_rows: int  # instances compared
    requests: int  # log rows in the window (0 for a batch)
    skipped: int  # log rows in the window that held no readable instances
    features: tuple[FeatureDrift, ...]

    @property
    def empty(self) -> bool:
        return self.current_rows == 0

    @property
    def drifted(self) -> tuple[FeatureDrift, ...]:
        return tuple(feature for feature in self.features if feature.drifted)

    @property
    def not_compared(self) -> tuple[FeatureDrift, ...]:
        return tuple(feature for feature in self.features if feature.value is None)

    def summary(self) -> str:
        if self.empty and self.target.startswith("batch input"):
            return f"no instances in {self.target}: nothing compared, no alert"
        if self.empty:
            return (f"no data in the window {rfc3339(self.window_start)} .. {rfc3339(self.window_end)} of {self.target}"
                    f" ({self.requests} logged request(s)): nothing compared, no alert")
        lines = [f"{self.model_name} champion version {self.champion_version}: {self.current_rows} instance(s) "
                 f"from {self.target} against {self.baseline_rows} training rows"]
        for feature in self.features:
            value = "not compared" if feature.value is None else f"{feature.value:.4f}"
            verdict = "DRIFT" if feature.drifted else ("-" if feature.value is None else "ok")
            lines.append(f"  {feature.name:<24} {feature.metric:<26} {value:>12}  threshold {feature.threshold:<6} "
                         f"{verdict}{'  (' + feature.note + ')' if feature.note else ''}")
        lines.append(f"drift in {len(self.drifted)} feature(s): {', '.join(f.name for f in self.drifted) or 'none'}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "champion_version": self.champion_version,
                "baseline_uri": self.baseline_uri, "baseline_rows": self.baseline_rows, "target": self.target,
                "window_start": rfc3339(self.window_start), "window_end": rfc3339(self.window_end),
                "current_rows": self.current_rows, "requests": self.requests, "skipped": self.skipped,
                "features": [dataclasses.asdict(feature) | {"drifted": feature.drifted} for feature in self.features]}


def rfc3339(instant: datetime.datetime) -> str:
    return instant.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def champion_baseline(config: MonitoringConfig, registry_uri: str) -> tuple[ModelVersion, str, pd.DataFrame]:
    """The champion's version, its training data's URI (from its lineage) and that data."""
    try:
        champion = open_registry(registry_uri).get(config.model_name, CHAMPION)
    except RegistryError as error:
        raise MonitoringError(f"registry {registry_uri}: {error}") from None
    if champion is None:
        raise MonitoringError(f"model {config.model_name!r} has no champion in the registry {registry_uri}: "
                              "train and register one first (python runner.py --run local)")
    examples = champion.metadata.get("examples")
    if not examples:
        raise MonitoringError(f"champion version {champion.version} of {config.model_name} records no training "
                              "examples in its lineage (metadata 'examples'): no baseline to compare with")
    baseline_uri = storage_uri.join(examples, TRAIN_SPLIT)
    try:
        # The split whole: the histograms are built from it in memory (bounded by the training data's size).
        baseline = load_split(examples, TRAIN_SPLIT)
    except (FileNotFoundError, OSError, ValueError) as error:
        raise MonitoringError(f"the champion's training data {baseline_uri} (version {champion.version}'s lineage) "
                              f"cannot be read: {error}") from None
    return champion, baseline_uri, baseline


def request_log_window(log_dir: Path, start: datetime.datetime, end: datetime.datetime
                       ) -> tuple[pd.DataFrame, int, int]:
    """The instances of the requests logged in [start, end); with the number of requests and of rows skipped."""
    instances: list[dict] = []
    requests = skipped = 0
    for row in read_rows(log_dir):
        logged = row.get("logging_time")
        if not isinstance(logged, str):
            skipped += 1
            continue
        try:
            instant = datetime.datetime.fromisoformat(logged)
        except ValueError:
            instant = None
        if instant is None or instant.tzinfo is None:  # rows are written in UTC with an offset
            skipped += 1
            continue
        if not start <= instant < end:
            continue
        requests += 1
        try:
            body = json.loads(row["request_payload"][0])
            found = body["instances"]
            if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
                raise TypeError
        except (KeyError, IndexError, TypeError, json.JSONDecodeError):
            skipped += 1
            continue
        instances.extend(found)
    return pd.DataFrame.from_records(instances), requests, skipped


def batch_input(uri: str) -> pd.DataFrame:
    """A batch prediction's input: JSONL instances (one object per line) or CSV with a header."""
    try:
        data = storage_uri.read_bytes(uri)
    except (FileNotFoundError, OSError) as error:
        raise MonitoringError(f"batch input {uri} cannot be read: {error}") from None
    try:
        if uri.endswith(".csv"):
            return pd.read_csv(io.BytesIO(data)) if data.strip() else pd.DataFrame()
        text = data.decode()
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise MonitoringError(f"batch input {uri} is not UTF-8 JSONL instances or CSV with a header: {error}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise MonitoringError(f"batch input {uri}, line {number}: not JSON ({error.msg}); expected one JSON "
                                  "object (an instance) per line") from None
        if not isinstance(row, dict):
            raise MonitoringError(f"batch input {uri}, line {number}: {type(row).__name__}; expected one JSON "
                                  "object (an instance) per line")
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def compare(config: MonitoringConfig, baseline: pd.DataFrame, current: pd.DataFrame) -> tuple[FeatureDrift, ...]:
    if current.empty:
        return ()
    return tuple(feature_drift(feature, baseline, current) for feature in config.features)


def drift_alert_entry(result: MonitoringResult, config: MonitoringConfig, project: str,
                      alert_time: datetime.datetime | None = None) -> dict[str, Any]:
    """The LogEntry of a drift alert: this project's payload (`drift_alert_payload`) with every compared feature,
    in the config's log. `alert_time` (default: the window's end) is its window_end: a replay of past traffic
    passes that traffic's own time, so the retraining window covers its partitions."""
    from triggers.events.drift import FeatureDrift as AlertedFeature
    from triggers.events.drift import drift_alert_payload

    end = alert_time or result.window_end
    features = [AlertedFeature(feature.name, feature.value, feature.threshold, _ALERT_METRICS[feature.metric])
                for feature in result.features if feature.value is not None]
    return {
        "logName": config.anomaly_log_name.format(project=project),
        "resource": {"type": "global", "labels": {"project_id": project}},
        "severity": "WARNING",
        "timestamp": rfc3339(datetime.datetime.now(datetime.UTC)),
        "jsonPayload": drift_alert_payload(config.model_name, min(result.window_start, end), end, features,
                                           monitoring_job=config.display_name),
    }


@dataclasses.dataclass(frozen=True)
class MonitorRun:
    result: MonitoringResult
    report: Path
    result_file: Path
    anomaly_entry: dict[str, Any] | None  # the drift alert written to Cloud Logging (locally: LocalLogging), or None
    published: tuple[str, ...]  # Pub/Sub message ids of the sinks that forwarded it


def monitor_once(config: MonitoringConfig, registry_uri: str, output_dir: Path, *,
                 request_log_dir: Path | None = None, batch_input_uri: str | None = None,
                 window_end: datetime.datetime | None = None, window_hours: int | None = None,
                 window_start: datetime.datetime | None = None,
                 logging: Any = None, project: str = "local-project",
                 alert_time: datetime.datetime | None = None) -> MonitorRun:
    """One monitoring run: compare, write report.html and result.json to `output_dir`, and log a drift alert
    entry (through `logging`, a LocalLogging) if some feature drifted and the config's Cloud Logging is on."""
    champion, baseline_uri, baseline = champion_baseline(config, registry_uri)
    end = window_end or datetime.datetime.now(datetime.UTC)
    if end.tzinfo is None:
        raise MonitoringError(f"window end {end.isoformat()} has no time zone; expected an aware instant")
    start = window_start or end - datetime.timedelta(hours=window_hours or config.target.window_hours)
    if start.tzinfo is None or start > end:
        raise MonitoringError(f"window start {start.isoformat()} must be an aware instant before {end.isoformat()}")
    if batch_input_uri is not None:
        current, requests, skipped = batch_input(batch_input_uri), 0, 0
        target = f"batch input {batch_input_uri}"
    elif request_log_dir is not None:
        if not Path(request_log_dir).is_dir():
            raise MonitoringError(f"request log folder {request_log_dir} does not exist: the local endpoint writes "
                                  "it under its state folder (local/endpoint/request_log) while MLOPS_REQUEST_LOG "
                                  "is on")
        current, requests, skipped = request_log_window(request_log_dir, start, end)
        target = f"request log {request_log_dir}"
    else:
        raise MonitoringError("no current data: give the endpoint's request log or a batch's input")
    result = MonitoringResult(config.model_name, champion.version, baseline_uri, len(baseline), target, start, end,
                              len(current), requests, skipped, compare(config, baseline, current))
    from monitoring.report import drift_report

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    report = output_dir / "report.html"
    report.write_text(drift_report(result, f"Drift of {config.model_name}, version {champion.version}"),
                      encoding="utf-8")
    result_file = output_dir / "result.json"
    result_file.write_text(json.dumps(result.to_json(), indent=1))
    entry, published = None, ()
    if result.drifted and config.notification.cloud_logging and logging is not None:
        entry = drift_alert_entry(result, config, project, alert_time)
        published = tuple(logging.write(entry))
    return MonitorRun(result, report, result_file, entry, published)
