"""Every environment variable the triggers read, declared once, parsed and checked together.

Each `Setting` below is the single declaration of one variable: its name, how
it is parsed and checked, its default, and what it means. The per-trigger
configs (`NewDataConfig`, `ScheduleConfig`, `DriftConfig`, and `VertexConfig`
shared by all and by the CLI) list the settings they need and are built by
`from_env`, which reports *every* missing or bad variable in one `ConfigError`.

A function module builds its config at import time. That is deliberate: a bad
value then fails the deploy (the new revision never becomes ready and the old
one keeps serving) instead of failing each event, which would either drop
events silently or make the platform retry them for a day.

`python -m triggers.config` prints the table that docs/triggers.md shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from contract.paths import LANDING_PREFIX
from triggers.submission.errors import ConfigError

GRANULARITIES = ("day", "month")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


# --- value parsers: each raises ValueError("expected ...") --------------------------------------


def _matching(pattern: str, expected: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def parse(text: str) -> str:
        if not compiled.fullmatch(text):
            raise ValueError(f"expected {expected}")
        return text

    return parse


def _gcs_prefix(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme != "gs" or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", parts.netloc or ""):
        raise ValueError("expected a Cloud Storage prefix such as gs://my-bucket/pipeline-root")
    return text.rstrip("/")


def _template_uri(text: str) -> str:
    if text.startswith("gs://"):
        bucket, _, name = text[len("gs://"):].partition("/")
        if not bucket or not name or name.endswith("/"):
            raise ValueError("expected gs://BUCKET/path/to/template.json or a local file path")
        return text
    if "://" in text:
        raise ValueError("expected gs://BUCKET/path/to/template.json or a local file path")
    return text


def _api_endpoint(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError("expected a base URL such as https://us-central1-aiplatform.googleapis.com")
    # Plain HTTP is for the local stand-in only; credentials are never sent over it.
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"expected https, or http to a loopback host ({', '.join(LOOPBACK_HOSTS)})")
    return text.rstrip("/")


def _data_prefix(text: str) -> str:
    segments = text.split("/")
    if text.startswith("/") or text.endswith("/") or any(s in ("", ".", "..") for s in segments):
        raise ValueError("expected an object prefix without leading/trailing '/', empty, '.' or '..' segments")
    return text


def _timezone(text: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as UTC or America/Chicago") from None


def _granularity(text: str) -> str:
    if text not in GRANULARITIES:
        raise ValueError(f"expected one of {', '.join(GRANULARITIES)}")
    return text


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        # ASCII digits only: int() also reads "２４" and "2_4".
        if not re.fullmatch(r"-?[0-9]+", text) or not low <= int(text) <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return int(text)

    return parse


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"expected a JSON object such as {{\"project\": \"my-project\"}} ({error})") from None
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object such as {\"project\": \"my-project\"}")
    return value


# --- the declarations ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    env: str
    parse: Callable[[str], Any]
    meaning: str
    default: str | None = None  # None: required wherever it is used

    @property
    def required(self) -> bool:
        return self.default is None


PROJECT = Setting("MLOPS_PROJECT", _matching(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", "a project id such as my-project"),
                  "Google Cloud project that runs the pipelines")
REGION = Setting("MLOPS_REGION", _matching(r"[a-z]+-[a-z]+[0-9]+", "a region such as us-central1"),
                 "Vertex AI region")
PIPELINE_ROOT = Setting("MLOPS_PIPELINE_ROOT", _gcs_prefix, "`gs://` prefix where runs write their artifacts")
SERVICE_ACCOUNT = Setting(
    "MLOPS_SERVICE_ACCOUNT",
    _matching(r"[a-z0-9-]+@[a-z0-9.-]+\.gserviceaccount\.com", "a service account email such as "
              "pipelines@my-project.iam.gserviceaccount.com"),
    "service account the pipeline runs as")
VERTEX_API_ENDPOINT = Setting("MLOPS_VERTEX_API_ENDPOINT", _api_endpoint,
                              "Vertex AI API base URL (tests point it at a local stand-in)",
                              default="https://{MLOPS_REGION}-aiplatform.googleapis.com")
PIPELINE_PARAMETERS = Setting("MLOPS_PIPELINE_PARAMETERS", _json_object,
                              "JSON object of fixed parameter values added to every run (checked against "
                              "the template)", default="{}")
TEMPLATE_CACHE_SECONDS = Setting("MLOPS_TEMPLATE_CACHE_SECONDS", _int_between(0, 86400),
                                 "how long a warm instance reuses a template it has read", default="300")
TRAINING_TEMPLATE_URI = Setting("MLOPS_TRAINING_TEMPLATE_URI", _template_uri,
                                "training template: `gs://...json` or a local path")
DATA_BUCKET = Setting("MLOPS_DATA_BUCKET",
                      _matching(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]", "a bucket name such as my-data"),
                      "bucket holding the landing layout")
DATA_PREFIX = Setting("MLOPS_DATA_PREFIX", _data_prefix,
                      "prefix of the landing layout `PREFIX/YYYY/MM/DD/HHMM/batch.csv`", default=LANDING_PREFIX)
PARTITION_TIMEZONE = Setting("MLOPS_PARTITION_TIMEZONE", _timezone,
                             "time zone the layout's dates are written in", default="UTC")
SCHEDULE_TEMPLATE_URI = Setting("MLOPS_SCHEDULE_TEMPLATE_URI", _template_uri,
                                "template the schedule submits: `gs://...json` or a local path")
NO_PARTITION = "none"


def _schedule_parameter(text: str) -> str:
    if text == NO_PARTITION:
        return ""
    return _matching(r"[A-Za-z_][A-Za-z0-9_-]*", f"a parameter name such as data_uri, or {NO_PARTITION!r} for a "
                                                  "template that reads no partition")(text)


SCHEDULE_PARAMETER = Setting("MLOPS_SCHEDULE_PARAMETER", _schedule_parameter,
                             f"template parameter that receives the partition URI; `{NO_PARTITION}`: the run "
                             "takes none (a canary decision reads the endpoint, not data)", default="data_uri")
SCHEDULE_GRANULARITY = Setting("MLOPS_SCHEDULE_GRANULARITY", _granularity,
                               "partition size: `day` (`YYYY/MM/DD`) or `month` (`YYYY/MM`)", default="day")
SCHEDULE_OFFSET = Setting("MLOPS_SCHEDULE_OFFSET", _int_between(0, 366),
                          "partitions before the schedule time's own (1: yesterday / last month)", default="1")
MODEL = Setting("MLOPS_MODEL", _matching(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", "a model name such as "
                                         "chicago-taxi-big-tipper"),
                "model whose drift alerts start retraining")
MODEL_MONITOR = Setting("MLOPS_MODEL_MONITOR",
                        _matching(r"(projects/[^/]+/locations/[^/]+/modelMonitors/)?[0-9]+|[A-Za-z][A-Za-z0-9_.-]{0,127}|",
                                  "a ModelMonitor resource name projects/P/locations/L/modelMonitors/ID, its "
                                  "numeric id, or its display name such as chicago-taxi-big-tipper-monitor"),
                        "Vertex Model Monitoring (v2) monitor whose anomaly entries start retraining of the model, "
                        "read through its searchModelMonitoringAlerts: its display name (found in the function's "
                        "region; Terraform sets the monitoring config's, so no id is needed before the monitor "
                        "exists), or its id as `python -m monitoring apply` prints it; empty: Vertex anomaly "
                        "entries are ignored", default="")
DRIFT_COOLDOWN_HOURS = Setting("MLOPS_DRIFT_COOLDOWN_HOURS", _int_between(1, 8760),
                               "at most one retraining run per window of this many hours", default="24")
DRIFT_WINDOW_GRANULARITY = Setting("MLOPS_DRIFT_WINDOW_GRANULARITY", _granularity,
                                   "partition size of the retraining window: `day` or `month`", default="month")
DRIFT_WINDOW_PARTITIONS = Setting("MLOPS_DRIFT_WINDOW_PARTITIONS", _int_between(1, 366),
                                  "retrain on this many partitions, ending with the alert's", default="3")


def read(settings: Sequence[Setting], environ: Mapping[str, str], *, scope: str) -> dict[str, Any]:
    """Parses `settings` from `environ`; raises one ConfigError listing every problem."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for setting in settings:
        raw = environ.get(setting.env)
        if raw is None or raw.strip() == "":
            if setting.required:
                problems.append(f"{setting.env} is not set: {setting.meaning}")
                continue
            raw = setting.default
        if setting is VERTEX_API_ENDPOINT and raw == VERTEX_API_ENDPOINT.default:
            raw = raw.replace("{MLOPS_REGION}", environ.get(REGION.env, "").strip())
        try:
            values[setting.env] = setting.parse(raw.strip())
        except ValueError as error:
            problems.append(f"{setting.env}={raw!r} is not valid: {error}")
    if problems:
        raise ConfigError(f"{scope} configuration is invalid:\n  - " + "\n  - ".join(problems))
    return values


@dataclasses.dataclass(frozen=True)
class VertexConfig:
    """Where and as whom runs are submitted; shared by every trigger and the CLI."""

    project: str
    region: str
    pipeline_root: str
    service_account: str
    api_endpoint: str
    pipeline_parameters: dict[str, Any]
    template_cache_seconds: int

    SETTINGS = (PROJECT, REGION, PIPELINE_ROOT, SERVICE_ACCOUNT, VERTEX_API_ENDPOINT, PIPELINE_PARAMETERS,
                TEMPLATE_CACHE_SECONDS)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> VertexConfig:
        return cls(project=values[PROJECT.env], region=values[REGION.env], pipeline_root=values[PIPELINE_ROOT.env],
                   service_account=values[SERVICE_ACCOUNT.env], api_endpoint=values[VERTEX_API_ENDPOINT.env],
                   pipeline_parameters=values[PIPELINE_PARAMETERS.env],
                   template_cache_seconds=values[TEMPLATE_CACHE_SECONDS.env])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> VertexConfig:
        return cls.from_values(read(cls.SETTINGS, os.environ if environ is None else environ, scope="Vertex AI"))

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"


@dataclasses.dataclass(frozen=True)
class NewDataConfig:
    vertex: VertexConfig
    template_uri: str
    data_bucket: str
    data_prefix: str

    SETTINGS = (*VertexConfig.SETTINGS, TRAINING_TEMPLATE_URI, DATA_BUCKET, DATA_PREFIX)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NewDataConfig:
        values = read(cls.SETTINGS, os.environ if environ is None else environ, scope="new_data trigger")
        return cls(vertex=VertexConfig.from_values(values), template_uri=values[TRAINING_TEMPLATE_URI.env],
                   data_bucket=values[DATA_BUCKET.env], data_prefix=values[DATA_PREFIX.env])


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    vertex: VertexConfig
    template_uri: str
    parameter: str
    data_bucket: str
    data_prefix: str
    timezone: zoneinfo.ZoneInfo
    granularity: str
    offset: int

    SETTINGS = (*VertexConfig.SETTINGS, SCHEDULE_TEMPLATE_URI, SCHEDULE_PARAMETER, DATA_BUCKET, DATA_PREFIX,
                PARTITION_TIMEZONE, SCHEDULE_GRANULARITY, SCHEDULE_OFFSET)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScheduleConfig:
        values = read(cls.SETTINGS, os.environ if environ is None else environ, scope="schedule trigger")
        return cls(vertex=VertexConfig.from_values(values), template_uri=values[SCHEDULE_TEMPLATE_URI.env],
                   parameter=values[SCHEDULE_PARAMETER.env], data_bucket=values[DATA_BUCKET.env],
                   data_prefix=values[DATA_PREFIX.env], timezone=values[PARTITION_TIMEZONE.env],
                   granularity=values[SCHEDULE_GRANULARITY.env], offset=values[SCHEDULE_OFFSET.env])


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    vertex: VertexConfig
    template_uri: str
    data_bucket: str
    data_prefix: str
    timezone: zoneinfo.ZoneInfo
    model: str
    model_monitor: str  # as configured: a resource name, a numeric id, a display name, or empty
    cooldown_hours: int
    window_granularity: str
    window_partitions: int

    SETTINGS = (*VertexConfig.SETTINGS, TRAINING_TEMPLATE_URI, DATA_BUCKET, DATA_PREFIX, PARTITION_TIMEZONE, MODEL,
                MODEL_MONITOR, DRIFT_COOLDOWN_HOURS, DRIFT_WINDOW_GRANULARITY, DRIFT_WINDOW_PARTITIONS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DriftConfig:
        values = read(cls.SETTINGS, os.environ if environ is None else environ, scope="drift_alert trigger")
        monitor_location = re.search(r"/locations/([^/]+)/", values[MODEL_MONITOR.env])
        if monitor_location and monitor_location.group(1) != values[REGION.env]:
            # Its alerts are read from this region's Vertex AI endpoint (MLOPS_VERTEX_API_ENDPOINT).
            raise ConfigError(f"drift_alert trigger configuration is invalid:\n  - {MODEL_MONITOR.env}="
                              f"{values[MODEL_MONITOR.env]!r} is in {monitor_location.group(1)}, expected a monitor "
                              f"in {REGION.env}={values[REGION.env]}")
        return cls(vertex=VertexConfig.from_values(values), template_uri=values[TRAINING_TEMPLATE_URI.env],
                   data_bucket=values[DATA_BUCKET.env], data_prefix=values[DATA_PREFIX.env],
                   timezone=values[PARTITION_TIMEZONE.env], model=values[MODEL.env],
                   model_monitor=values[MODEL_MONITOR.env], cooldown_hours=values[DRIFT_COOLDOWN_HOURS.env],
                   window_granularity=values[DRIFT_WINDOW_GRANULARITY.env],
                   window_partitions=values[DRIFT_WINDOW_PARTITIONS.env])

    @property
    def model_monitor_name(self) -> str:
        """The monitor's resource name, in this function's project and region when only its id is set; empty
        when it is configured by display name (found at run time) or not at all."""
        if "/" in self.model_monitor or not self.model_monitor.isdigit():
            return self.model_monitor if "/" in self.model_monitor else ""
        return f"{self.vertex.parent}/modelMonitors/{self.model_monitor}"

    @property
    def model_monitor_display_name(self) -> str:
        return "" if "/" in self.model_monitor or self.model_monitor.isdigit() else self.model_monitor


CONFIGS: dict[str, type] = {"cli": VertexConfig, "new_data": NewDataConfig, "schedule": ScheduleConfig,
                            "drift_alert": DriftConfig}


def settings_table() -> str:
    """The Markdown table of every variable, in declaration order, for the docs."""
    declared: list[Setting] = []
    for config in CONFIGS.values():
        declared.extend(s for s in config.SETTINGS if s not in declared)
    lines = ["| variable | used by | default | meaning |", "|---|---|---|---|"]
    for setting in declared:
        users = ", ".join(name for name, config in CONFIGS.items() if setting in config.SETTINGS)
        default = "required" if setting.required else f"`{setting.default}`" if setting.default else "(empty)"
        lines.append(f"| `{setting.env}` | {users} | {default} | {setting.meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
