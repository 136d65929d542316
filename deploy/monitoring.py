"""Canary step evidence on Vertex AI: Cloud Monitoring's online prediction metrics per deployed model.

REST `projects.timeSeries.list` (https://monitoring.googleapis.com/v3/projects/{project}/timeSeries),
one call per figure, each grouped by the metric label `deployed_model_id` over the endpoint's
monitored resource (`aiplatform.googleapis.com/Endpoint`, label `endpoint_id`):
- requests: `prediction/online/prediction_count`, ALIGN_SUM per minute, summed per deployed model;
- errors: `prediction/online/error_count`, the same;
- latency p50 and p99: `prediction/online/prediction_latencies` (a distribution),
  ALIGN_PERCENTILE_50 / _99 over the whole window.
Credentials are the aiplatform SDK's (its `init`, else Application Default Credentials); the API
root is `MLOPS_MONITORING_API` (default the public one; tests point it at a stand-in). Prediction
distributions and labelled feedback are not in Cloud Monitoring: they come from the endpoint's
request-response log in BigQuery (deploy/evidence.py, deploy/vertex_evidence.py).
"""

from __future__ import annotations

import datetime
import os
from collections import defaultdict
from typing import Any

from deploy.decision import StepStats
from deploy.plan import Deployed

METRIC_PREFIX = "aiplatform.googleapis.com/prediction/online/"
MONITORING_API_ENV = "MLOPS_MONITORING_API"
DEFAULT_MONITORING_API = "https://monitoring.googleapis.com"
PER_MINUTE = 60


def _timestamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_series_query(endpoint_id: str, metric: str, start: float, end: float, aligner: str,
                      alignment_seconds: int) -> dict[str, str]:
    """The query parameters of one timeSeries.list call, per deployed model."""
    reducer = "REDUCE_SUM" if aligner == "ALIGN_SUM" else "REDUCE_MAX"
    return {
        "filter": f'metric.type = "{METRIC_PREFIX}{metric}" AND resource.type = "aiplatform.googleapis.com/Endpoint" '
                  f'AND resource.labels.endpoint_id = "{endpoint_id}"',
        "interval.startTime": _timestamp(start),
        "interval.endTime": _timestamp(end),
        "aggregation.alignmentPeriod": f"{alignment_seconds}s",
        "aggregation.perSeriesAligner": aligner,
        "aggregation.crossSeriesReducer": reducer,
        "aggregation.groupByFields": "metric.label.deployed_model_id",
    }


def _list(session, project: str, query: dict[str, str]) -> list[dict[str, Any]]:
    """Every page of the answer."""
    series, token = [], ""
    root = os.environ.get(MONITORING_API_ENV, DEFAULT_MONITORING_API).rstrip("/")
    while True:
        response = session.get(f"{root}/v3/projects/{project}/timeSeries",
                               params={**query, **({"pageToken": token} if token else {})}, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"Cloud Monitoring timeSeries.list answered HTTP {response.status_code}: "
                               f"{response.text[:500]}")
        body = response.json()
        series.extend(body.get("timeSeries", []))
        token = body.get("nextPageToken", "")
        if not token:
            return series


def _value(point: dict[str, Any]) -> float:
    value = point["value"]
    return float(value.get("int64Value", value.get("doubleValue", 0)))


def step_stats_from_monitoring(project: str, endpoint_name: str, live: list[Deployed], start: float, end: float,
                               session=None) -> dict[str, StepStats]:
    """Per deployed model id: requests, errors, latency p50/p99 over [start, end]."""
    if session is None:
        from google.auth.transport.requests import AuthorizedSession
        from google.cloud.aiplatform import initializer

        session = AuthorizedSession(initializer.global_config.credentials)
    endpoint_id = endpoint_name.rsplit("/", 1)[-1]
    window = max(PER_MINUTE, int(end - start))
    counts: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for figure, metric, aligner, period in (("requests", "prediction_count", "ALIGN_SUM", PER_MINUTE),
                                            ("errors", "error_count", "ALIGN_SUM", PER_MINUTE),
                                            ("p50", "prediction_latencies", "ALIGN_PERCENTILE_50", window),
                                            ("p99", "prediction_latencies", "ALIGN_PERCENTILE_99", window)):
        for series in _list(session, project, time_series_query(endpoint_id, metric, start, end, aligner, period)):
            deployed_id = series.get("metric", {}).get("labels", {}).get("deployed_model_id", "")
            for point in series.get("points", []):
                counts[deployed_id][figure][point["interval"]["endTime"]] = _value(point)
    stats = {}
    for model in live:
        figures = counts.get(model.id, {})
        stats[model.id] = StepStats(int(sum(figures.get("requests", {}).values())),
                                    int(sum(figures.get("errors", {}).values())),
                                    max(figures["p50"].values()) if figures.get("p50") else None,
                                    max(figures["p99"].values()) if figures.get("p99") else None)
    return stats
