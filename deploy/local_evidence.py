"""The canary's evidence on this machine: deploy/evidence.py's BigQuery SQL on DuckDB.

The local stand-in for BigQuery is one DuckDB file per project (batch_prediction/local_bigquery.py),
where the feedback and canary_analyses tables live. The request-response log table is the local
endpoint's own log (serving/request_log.py: JSON lines in Vertex's columns), read where it is: its name
in the SQL is mapped to those files, so the query text is the one BigQuery runs.

Feedback is written here by the replay (deploy/replay.py) and by `python runner.py canary feedback`
(rows a person or a system labelled later), which refuses, naming them, rows whose instance id matches
no logged request: nothing is written then.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from contract.model_inputs import INSTANCE_ID_KEY
from deploy.evidence import FEEDBACK_SCHEMA, CanaryTables, EvidenceError, QueryParameter
from serving.request_log import log_files
from storage import bigquery_dialect

LOCAL_PROJECT = "local-mlops"
DEFAULT_TABLES = CanaryTables(request_log=f"bq://{LOCAL_PROJECT}.canary.request_response_logging",
                              feedback=f"bq://{LOCAL_PROJECT}.canary.feedback")
_LOG_COLUMNS = {"endpoint": "VARCHAR", "deployed_model_id": "VARCHAR", "logging_time": "TIMESTAMPTZ",
                "request_id": "VARCHAR", "request_payload": "VARCHAR[]", "response_payload": "VARCHAR[]"}
_UNMATCHED_SQL = f"""SELECT instance_id FROM UNNEST(@instance_ids) AS instance_id
WHERE instance_id NOT IN (
  SELECT JSON_VALUE(instance, '$.{INSTANCE_ID_KEY}')
  FROM `{{request_log}}`, UNNEST(IF(JSON_QUERY(request_payload[SAFE_OFFSET(0)], '$.instances') IS NULL,
    request_payload, JSON_QUERY_ARRAY(request_payload[SAFE_OFFSET(0)], '$.instances'))) AS instance
  WHERE JSON_VALUE(instance, '$.{INSTANCE_ID_KEY}') IS NOT NULL)"""


class FeedbackError(ValueError):
    """Feedback rows that cannot be taken; the message names them and says what was expected."""


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def request_log_relation(folder: Path) -> str:
    """The local endpoint's log files as a DuckDB relation in Vertex's columns (a line a crash cut short is
    skipped); no files yet: an empty relation of the same columns."""
    files = log_files(folder)
    if not files:
        columns = ", ".join(f"CAST(NULL AS {kind}) AS {name}" for name, kind in _LOG_COLUMNS.items())
        return f"(SELECT {columns} WHERE FALSE)"
    typed = ", ".join(f"{name}: {_quoted(kind)}" for name, kind in _LOG_COLUMNS.items())
    paths = ", ".join(_quoted(str(path)) for path in files)
    return f"read_json([{paths}], format = 'newline_delimited', ignore_errors = true, columns = {{{typed}}})"


class DuckDBRunner:
    """Runs the evidence SQL on the local stand-in, the request log mapped to the endpoint's log files."""

    def __init__(self, tables: CanaryTables, request_log_dir: Path, local_dir: Path | None = None) -> None:
        self.tables = tables
        self.request_log_dir = Path(request_log_dir)
        self.local_dir = local_dir
        self.where = f"the local BigQuery stand-in ({local_dir or 'local'}/bigquery) and {request_log_dir}"

    def run(self, sql: str, parameters: Sequence[QueryParameter] = ()) -> list[dict[str, Any]]:
        parsed = self.tables.parsed()
        mapping = {self.tables.dotted(self.tables.request_log): request_log_relation(self.request_log_dir)}
        projects = {table.project for table in parsed} | bigquery_dialect.referenced_projects(sql)
        with bigquery_dialect.connected(sorted(projects), self.local_dir) as connection:
            # The datasets and the feedback table exist, as Terraform makes them on Vertex.
            for table in parsed[1:]:
                connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{table.project}"."{table.dataset}"')
            bigquery_dialect.run(connection, f"CREATE TABLE IF NOT EXISTS `{self.tables.dotted(self.tables.feedback)}` "
                                             f"({FEEDBACK_SCHEMA})")
            try:
                result = bigquery_dialect.run(connection, sql, {p.name: p.value for p in parameters}, mapping)
            except Exception as error:  # duckdb.Error: the query's own failure, with DuckDB's message
                raise EvidenceError(f"the canary's evidence query failed on {self.where}: {error}") from None
        return [{name: bigquery_dialect.python_value(value) for name, value in zip(result.names, row, strict=True)}
                for row in result.rows]


def checked_feedback(rows: Iterable[Mapping[str, Any]], now: float) -> list[tuple[str, int, datetime.datetime]]:
    """Rows {instance_id, label (0/1), feedback_time (optional, epoch seconds or ISO 8601)} as table rows."""
    checked, problems = [], []
    for number, row in enumerate(rows, start=1):
        instance_id, label = row.get("instance_id"), row.get("label")
        when = row.get("feedback_time", now)
        if not isinstance(instance_id, str) or not instance_id:
            problems.append(f"row {number}: instance_id {instance_id!r} is not a non-empty string")
        elif isinstance(label, bool) or label not in (0, 1):
            problems.append(f"row {number} ({instance_id}): label {label!r} is not 0 or 1")
        else:
            try:
                instant = (datetime.datetime.fromisoformat(when) if isinstance(when, str)
                           else datetime.datetime.fromtimestamp(float(when), datetime.UTC))
            except (TypeError, ValueError, OverflowError):
                instant = None
            if instant is None or instant.tzinfo is None or not math.isfinite(instant.timestamp()):
                problems.append(f"row {number} ({instance_id}): feedback_time {when!r} is not epoch seconds or "
                                "an ISO 8601 time with its offset")
            else:
                checked.append((instance_id, int(label), instant))
    if problems:
        raise FeedbackError(f"{len(problems)} feedback row(s) refused, nothing written: {'; '.join(problems[:5])}"
                            + ("; ..." if len(problems) > 5 else ""))
    return checked


def unmatched_ids(runner: DuckDBRunner, instance_ids: Sequence[str]) -> list[str]:
    """The ids among `instance_ids` that no logged request carried."""
    rows = runner.run(_UNMATCHED_SQL.format(request_log=runner.tables.dotted(runner.tables.request_log)),
                      [QueryParameter("instance_ids", "ARRAY<STRING>", list(instance_ids))])
    return [row["instance_id"] for row in rows]


def write_feedback(runner: DuckDBRunner, rows: Iterable[Mapping[str, Any]], now: float,
                   require_logged: bool = True) -> int:
    """Appends labelled rows to the feedback table; all or nothing. With `require_logged`, every instance id
    must match a request in the endpoint's log (else FeedbackError naming them, and nothing is written)."""
    checked = checked_feedback(rows, now)
    if not checked:
        return 0
    if require_logged:
        unmatched = unmatched_ids(runner, sorted({instance_id for instance_id, _, _ in checked}))
        if unmatched:
            raise FeedbackError(f"{len(unmatched)} feedback row(s) match no request in the endpoint's log "
                                f"({runner.request_log_dir}): {', '.join(unmatched[:5])}"
                                + (", ..." if len(unmatched) > 5 else "") + "; expected the instance_id a "
                                "logged request carried. Nothing was written.")
    table = runner.tables.dotted(runner.tables.feedback)
    parameters = []
    values = []
    for index, (instance_id, label, instant) in enumerate(checked):
        values.append(f"(@i{index}, @l{index}, @t{index})")
        parameters += [QueryParameter(f"i{index}", "STRING", instance_id), QueryParameter(f"l{index}", "INT64", label),
                       QueryParameter(f"t{index}", "TIMESTAMP", instant)]
    runner.run(f"INSERT INTO `{table}` (instance_id, label, feedback_time) VALUES {', '.join(values)}", parameters)
    return len(checked)


def read_feedback_file(path: Path) -> list[dict[str, Any]]:
    """JSON lines {instance_id, label, feedback_time?}; a line that is not a JSON object is refused by number."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise FeedbackError(f"{path} line {number} is not JSON ({error}): expected "
                                '{"instance_id": "...", "label": 0 or 1}') from None
        if not isinstance(row, dict):
            raise FeedbackError(f"{path} line {number} is not a JSON object: expected "
                                '{"instance_id": "...", "label": 0 or 1}')
        rows.append(row)
    return rows
