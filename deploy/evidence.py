"""Canary evidence from the endpoint's request-response log joined with the feedback table, in SQL.

The same SQL text runs on Vertex AI (BigQuery, through google-cloud-bigquery: deploy/vertex_evidence.py)
and on this machine (DuckDB, through storage/bigquery_dialect.py's tested translation: deploy/
local_evidence.py, over the local endpoint's request log and the local feedback table). Three tables:

- **request-response log** (`request_log_table`): what Vertex AI's request-response logging writes, one
  row per logged request: `endpoint`, `deployed_model_id`, `logging_time`, `request_id`,
  `request_payload` and `response_payload` (repeated strings; see docs/fidelity.md, "Canary evidence
  (BigQuery)"). A payload is read in either form it may take: one string holding the whole body
  (`{"instances": [...]}` / `{"predictions": [...]}`, as the local endpoint logs it) or one string per
  instance and per prediction.
- **feedback** (`feedback_table`): labels that arrive later, one row per label: `instance_id` STRING (the
  `instance_id` key the client put in the instance), `label` INT64 (0 or 1), `feedback_time` TIMESTAMP;
  the latest row of an id wins.
- **canary_analyses** (beside the feedback table, same dataset): one row per decision, the history the
  report plots (each check per step, with its interval and threshold).

Evidence for a rollout covers the whole rollout (since the canary went live): the predicted-probability
histogram per deployed model, its traffic over time, and every labelled prediction in time order.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from batch_prediction.local_bigquery import BigQueryTable, parse_table
from contract.model_inputs import INSTANCE_ID_KEY, PROBABILITY_OUTPUT

PREDICTION_BINS = 20  # as the local router's histograms
MAX_TRAFFIC_BUCKETS = 120  # points of the traffic-over-time plot, whatever the rollout's length
ANALYSES_TABLE = "canary_analyses"


@dataclasses.dataclass(frozen=True)
class QueryParameter:
    name: str
    type: str  # BigQuery's: STRING, INT64, FLOAT64, TIMESTAMP
    value: Any


class QueryRunner(Protocol):
    where: str  # for messages: which engine and tables
    tables: CanaryTables

    def run(self, sql: str, parameters: Sequence[QueryParameter] = ()) -> list[dict[str, Any]]:
        """The rows of one query or statement, each a dict by column name."""


class EvidenceError(RuntimeError):
    """The evidence could not be read (a table missing, a query refused); the message says which and why."""


@dataclasses.dataclass(frozen=True)
class CanaryTables:
    request_log: str  # bq://PROJECT.DATASET.TABLE
    feedback: str  # bq://PROJECT.DATASET.TABLE

    def __post_init__(self) -> None:
        for name in ("request_log", "feedback"):
            value = getattr(self, name)
            if not value:
                raise EvidenceError(f"{name}_table is empty: expected bq://PROJECT.DATASET.TABLE")
            parse_table(value)  # BigQueryUriError (a ValueError) names what was wrong

    @property
    def analyses(self) -> str:
        feedback = parse_table(self.feedback)
        return f"bq://{feedback.project}.{feedback.dataset}.{ANALYSES_TABLE}"

    def dotted(self, uri: str) -> str:
        return parse_table(uri).dotted

    def parsed(self) -> list[BigQueryTable]:
        return [parse_table(uri) for uri in (self.request_log, self.feedback, self.analyses)]


# Every logged prediction in the window, one row per instance: which deployed model answered, when, the
# predicted probability, and the instance id the client sent (NULL without one).
_PREDICTED = f"""
logged AS (
  SELECT deployed_model_id, logging_time, CAST(request_id AS STRING) AS request_id,
    -- a payload is one string holding the whole body, or one string per instance and per prediction
    IF(JSON_QUERY(request_payload[SAFE_OFFSET(0)], '$.instances') IS NULL, request_payload,
       JSON_QUERY_ARRAY(request_payload[SAFE_OFFSET(0)], '$.instances')) AS instances,
    IF(JSON_QUERY(response_payload[SAFE_OFFSET(0)], '$.predictions') IS NULL, response_payload,
       JSON_QUERY_ARRAY(response_payload[SAFE_OFFSET(0)], '$.predictions')) AS predictions
  FROM `{{request_log}}`
  WHERE logging_time >= @window_start AND logging_time < @window_end
),
predicted AS (
  SELECT deployed_model_id, logging_time, request_id, position,
    JSON_VALUE(instances[SAFE_OFFSET(position)], '$.{INSTANCE_ID_KEY}') AS instance_id,
    SAFE_CAST(JSON_VALUE(prediction, '$.{PROBABILITY_OUTPUT}') AS FLOAT64) AS probability
  FROM logged, UNNEST(predictions) AS prediction WITH OFFSET AS position
)"""

PREDICTIONS_SQL = f"""WITH {_PREDICTED}
SELECT deployed_model_id,
  CAST(FLOOR(UNIX_SECONDS(logging_time) / @bucket_seconds) AS INT64) * @bucket_seconds AS bucket,
  LEAST(CAST(FLOOR(probability * @bins) AS INT64), @bins - 1) AS bin,
  COUNT(*) AS predictions
FROM predicted
WHERE probability BETWEEN 0 AND 1
GROUP BY deployed_model_id, bucket, bin
ORDER BY deployed_model_id, bucket, bin"""

LABELLED_SQL = f"""WITH {_PREDICTED},
latest_feedback AS (
  SELECT instance_id, label
  FROM `{{feedback}}`
  WHERE instance_id IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY instance_id ORDER BY feedback_time DESC) = 1
)
SELECT predicted.deployed_model_id, predicted.logging_time, predicted.probability, latest_feedback.label
FROM predicted JOIN latest_feedback ON latest_feedback.instance_id = predicted.instance_id
WHERE predicted.probability BETWEEN 0 AND 1 AND latest_feedback.label IN (0, 1)
ORDER BY predicted.logging_time, predicted.request_id, predicted.position"""

# Vertex AI's request-response logging table (docs/fidelity.md, "Canary evidence (BigQuery)"), and ours.
REQUEST_LOG_SCHEMA = ("endpoint STRING, deployed_model_id STRING, logging_time TIMESTAMP, request_id NUMERIC, "
                      "request_payload ARRAY<STRING>, response_payload ARRAY<STRING>")
FEEDBACK_SCHEMA = "instance_id STRING NOT NULL, label INT64 NOT NULL, feedback_time TIMESTAMP NOT NULL"
ANALYSES_SCHEMA = ("decided_at TIMESTAMP, endpoint STRING, model_name STRING, canary_version STRING, "
                   "champion_version STRING, canary_deployed_model_id STRING, canary_percent INT64, action STRING, "
                   "next_percent INT64, checks STRING, reasons STRING")
_ANALYSES_COLUMNS = [part.split()[0] for part in ANALYSES_SCHEMA.split(", ")]
CREATE_ANALYSES_SQL = "CREATE TABLE IF NOT EXISTS `{analyses}` (" + ANALYSES_SCHEMA + ")"
INSERT_ANALYSIS_SQL = ("INSERT INTO `{analyses}` (" + ", ".join(_ANALYSES_COLUMNS) + ") VALUES ("
                       + ", ".join(f"@{name}" for name in _ANALYSES_COLUMNS) + ")")
HISTORY_SQL = ("SELECT " + ", ".join(_ANALYSES_COLUMNS) + " FROM `{analyses}` "
               "WHERE endpoint = @endpoint AND canary_deployed_model_id = @canary ORDER BY decided_at")


@dataclasses.dataclass(frozen=True, eq=False)
class LoggedPredictions:
    """What the log says about one deployed model over the rollout."""

    histogram: tuple[int, ...] = (0,) * PREDICTION_BINS  # predicted probabilities in PREDICTION_BINS bins
    traffic: Mapping[int, int] = dataclasses.field(default_factory=dict)  # bucket start (epoch s) -> predictions
    times: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))  # labelled ones, in time order
    probabilities: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    labels: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    @property
    def predictions(self) -> int:
        return int(sum(self.histogram))

    @property
    def labelled(self) -> int:
        return len(self.labels)


def _instant(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def _seconds(value: Any) -> float:
    if isinstance(value, datetime.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=datetime.UTC)).timestamp()
    return float(value)


_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def bucket_seconds(start: float, end: float) -> int:
    """A round width, so that the rollout spans at most MAX_TRAFFIC_BUCKETS buckets (days: whole days)."""
    wanted = (end - start) / MAX_TRAFFIC_BUCKETS
    return next((width for width in _BUCKETS if width >= wanted), 86400 * -(-int(wanted) // 86400))


def read_logged_predictions(runner: QueryRunner, tables: CanaryTables, start: float, end: float
                            ) -> tuple[dict[str, LoggedPredictions], int]:
    """Per deployed model, its logged predictions over [start, end); and the traffic buckets' width."""
    bucket = bucket_seconds(start, end)
    window = [QueryParameter("window_start", "TIMESTAMP", _instant(start)),
              QueryParameter("window_end", "TIMESTAMP", _instant(end))]
    histograms: dict[str, list[int]] = {}
    traffic: dict[str, dict[int, int]] = {}
    for row in runner.run(PREDICTIONS_SQL.format(request_log=tables.dotted(tables.request_log)),
                          [*window, QueryParameter("bucket_seconds", "INT64", bucket),
                           QueryParameter("bins", "INT64", PREDICTION_BINS)]):
        deployed_id, count = str(row["deployed_model_id"]), int(row["predictions"])
        histograms.setdefault(deployed_id, [0] * PREDICTION_BINS)[int(row["bin"])] += count
        per_bucket = traffic.setdefault(deployed_id, {})
        per_bucket[int(row["bucket"])] = per_bucket.get(int(row["bucket"]), 0) + count
    labelled: dict[str, list[tuple[float, float, int]]] = {}
    for row in runner.run(LABELLED_SQL.format(request_log=tables.dotted(tables.request_log),
                                              feedback=tables.dotted(tables.feedback)), window):
        labelled.setdefault(str(row["deployed_model_id"]), []).append(
            (_seconds(row["logging_time"]), float(row["probability"]), int(row["label"])))
    evidence = {}
    for deployed_id in set(histograms) | set(labelled):
        rows = np.array(labelled.get(deployed_id, []), dtype=float).reshape(-1, 3)
        evidence[deployed_id] = LoggedPredictions(tuple(histograms.get(deployed_id, [0] * PREDICTION_BINS)),
                                                  traffic.get(deployed_id, {}), rows[:, 0], rows[:, 1], rows[:, 2])
    return evidence, bucket


def record_analysis(runner: QueryRunner, tables: CanaryTables, row: Mapping[str, Any]) -> None:
    """Appends one decision to the analyses table (created on first use)."""
    analyses = tables.dotted(tables.analyses)
    runner.run(CREATE_ANALYSES_SQL.format(analyses=analyses))
    types = {"decided_at": "TIMESTAMP", "canary_percent": "INT64", "next_percent": "INT64"}
    values = dict(row) | {"decided_at": _instant(row["decided_at"]), "checks": json.dumps(row["checks"]),
                          "reasons": json.dumps(list(row["reasons"]))}
    runner.run(INSERT_ANALYSIS_SQL.format(analyses=analyses),
               [QueryParameter(name, types.get(name, "STRING"), values[name]) for name in _ANALYSES_COLUMNS])


def analysis_history(runner: QueryRunner, tables: CanaryTables, endpoint: str, canary_id: str
                     ) -> list[dict[str, Any]]:
    """Every recorded decision about this canary on this endpoint, oldest first (checks and reasons parsed)."""
    rows = runner.run(HISTORY_SQL.format(analyses=tables.dotted(tables.analyses)),
                      [QueryParameter("endpoint", "STRING", endpoint), QueryParameter("canary", "STRING", canary_id)])
    return [row | {"decided_at": _seconds(row["decided_at"]), "checks": json.loads(row["checks"]),
                   "reasons": json.loads(row["reasons"])} for row in rows]
