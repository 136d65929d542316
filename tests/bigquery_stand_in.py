"""A stand-in for the BigQuery REST API v2 (the query methods) for the real google-cloud-bigquery client.

Served by `tests/stand_in_http.StandInServer(answer, ("bigquery.v2",))`, so every request and reply is
held to BigQuery's discovery document. Queries run on DuckDB through storage/bigquery_dialect.py's tested
translation, over one DuckDB file per project in `local_dir/bigquery/` (the local `bq://` stand-in's
layout): a test creates the tables there as Terraform or Vertex would, and the client under test reads and
writes them through REST. Methods:

- `jobs.insert` (POST /projects/P/jobs) with a query configuration, what `Client.query` sends: runs the
  statement as the job the client named (`jobReference.jobId`);
- `jobs.query` (POST /projects/P/queries), what `Client.query_and_wait` sends: runs the statement and
  answers the first page of rows with the schema; with more rows, a `pageToken` and the job's reference;
- `jobs.getQueryResults` (GET /projects/P/queries/J): `pageToken`, `startIndex`, `maxResults`;
- `jobs.get` (GET /projects/P/jobs/J).

What it imitates beyond shape, and from where (docs/fidelity.md, "Canary evidence (BigQuery)"):
- rows as `{"f": [{"v": ...}]}`, every scalar a string, a repeated field a list of `{"v": ...}`; TIMESTAMP
  as integer microseconds when the request asks `formatOptions.useInt64Timestamp` (what the client asks:
  google/cloud/bigquery/_job_helpers.py `_to_query_request`), else float seconds; schema types
  STRING, INTEGER, FLOAT, NUMERIC, BOOLEAN, TIMESTAMP, JSON (REST reference, TableFieldSchema);
- named parameters (`parameterMode: NAMED`, `queryParameters` with `parameterType` and
  `parameterValue`, arrays as `arrayValues`), TIMESTAMP values as the client writes them
  (`_helpers._timestamp_to_json_parameter`: "YYYY-MM-DD HH:MM:SS.ffffff+00:00");
- a page without rows leaves `rows` out (google/cloud/bigquery/job/query.py `QueryJob.result` reads a
  page holding `rows` as the first page, and `maxResults=0` asks for none);
- a DML statement answers `numDmlAffectedRows` and no rows; a missing table or dataset is a 404 with reason
  `notFound`, any other failure of the query a 400 with reason `invalidQuery` (REST error messages
  reference: https://cloud.google.com/bigquery/docs/error-messages).
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from storage import bigquery_dialect
from tests.stand_in_http import StandInServer, google_error

# What a query job's configuration keeps of a jobs.query request (JobConfigurationQuery's fields among QueryRequest's).
_JOB_FIELDS = ("query", "useLegacySql", "parameterMode", "queryParameters", "useQueryCache", "defaultDataset",
               "maximumBytesBilled", "connectionProperties", "createSession", "preserveNulls")
_TYPES = {"VARCHAR": "STRING", "BIGINT": "INTEGER", "INTEGER": "INTEGER", "HUGEINT": "INTEGER", "DOUBLE": "FLOAT",
          "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN", "TIMESTAMP WITH TIME ZONE": "TIMESTAMP", "JSON": "JSON"}
PAGE_ROWS = 1000  # rows per page when the request sets no maxResults


def _bigquery_type(duckdb_type: str) -> tuple[str, str]:
    """(type, mode) of a result column."""
    if duckdb_type.endswith("[]"):
        return _bigquery_type(duckdb_type[:-2])[0], "REPEATED"
    if duckdb_type.startswith("DECIMAL"):
        return "NUMERIC", "NULLABLE"
    return _TYPES.get(duckdb_type, "STRING"), "NULLABLE"


def _cell(value: Any, kind: str, microseconds: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [{"v": _cell(item, kind, microseconds)} for item in value]
    if kind == "TIMESTAMP":
        instant = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        seconds = instant.timestamp()
        return str(round(seconds * 1_000_000)) if microseconds else repr(seconds)
    if kind == "BOOLEAN":
        return "true" if value else "false"
    if isinstance(value, float | decimal.Decimal):
        return repr(float(value)) if kind == "FLOAT" else str(value)
    return str(value)


def _parameter_value(kind: dict, value: dict) -> Any:
    if kind.get("type") == "ARRAY":
        return [_parameter_value(kind["arrayType"], item) for item in value.get("arrayValues", [])]
    text = value.get("value")
    if text is None:
        return None
    scalar = kind.get("type")
    if scalar in ("INT64", "INTEGER"):
        return int(text)
    if scalar in ("FLOAT64", "FLOAT", "NUMERIC"):
        return float(text)
    if scalar in ("BOOL", "BOOLEAN"):
        return text.lower() == "true"
    if scalar == "TIMESTAMP":
        return datetime.datetime.fromisoformat(text.replace(" ", "T")).astimezone(datetime.UTC)
    return text


class BigQueryStandIn:
    """The query methods of BigQuery REST v2 over DuckDB files in `local_dir/bigquery/`."""

    def __init__(self, local_dir: Path, page_rows: int = PAGE_ROWS) -> None:
        self.local_dir = Path(local_dir)
        self.page_rows = page_rows
        self.requests: list[tuple[str, str, dict]] = []
        self.queries: list[str] = []  # every SQL text received, as sent
        self.jobs: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self.server = StandInServer(self._answer, ("bigquery.v2",))
        self.url = self.server.url

    def close(self) -> None:
        self.server.close()

    # --- running a query -----------------------------------------------------------------------------
    def _run(self, project: str, configuration: dict, job_id: str = "") -> tuple[int, dict]:
        """Runs the statement; the job takes the id the client chose (jobs.insert), else one of ours."""
        sql = configuration["query"]
        self.queries.append(sql)
        if configuration.get("useLegacySql"):
            return 400, google_error(400, "INVALID_ARGUMENT", "this stand-in answers GoogleSQL only (useLegacySql)")
        parameters = {parameter["name"]: _parameter_value(parameter["parameterType"], parameter["parameterValue"])
                      for parameter in configuration.get("queryParameters", [])}
        job_id = job_id or f"job_{next(self._ids)}"
        try:
            projects = bigquery_dialect.referenced_projects(sql) | {project}
            with bigquery_dialect.connected(sorted(projects), self.local_dir) as connection:
                result = bigquery_dialect.run(connection, sql, parameters)
        except Exception as error:  # DuckDB's failure of the query, as BigQuery reports one
            text = str(error).splitlines()[0]
            missing = "does not exist" in text
            reason, status = ("notFound", 404) if missing else ("invalidQuery", 400)
            body = google_error(status, "NOT_FOUND" if missing else "INVALID_ARGUMENT", f"{text} (job {job_id})")
            body["error"]["errors"] = [{"reason": reason, "message": text, "domain": "global"}]
            return status, body
        schema = {"fields": [dict(zip(("type", "mode"), _bigquery_type(kind), strict=True)) | {"name": name}
                             for name, kind in zip(result.names, result.types, strict=True)]}
        self.jobs[job_id] = {"project": project, "configuration": configuration, "schema": schema,
                             "rows": result.rows, "changed": result.changed}
        return 200, {"jobId": job_id}

    def _reference(self, job_id: str) -> dict:
        return {"projectId": self.jobs[job_id]["project"], "jobId": job_id, "location": "US"}

    def _page(self, job_id: str, start: int, size: int | None, microseconds: bool) -> dict:
        job = self.jobs[job_id]
        size = self.page_rows if size is None else size
        rows = job["rows"][start:start + size]
        kinds = [field["type"] for field in job["schema"]["fields"]]
        page = {"jobReference": self._reference(job_id), "jobComplete": True, "totalRows": str(len(job["rows"])),
                "schema": job["schema"]}
        if rows:  # BigQuery leaves `rows` out of a page without any (the client reads its absence so)
            page["rows"] = [{"f": [{"v": _cell(value, kind, microseconds)}
                                   for value, kind in zip(row, kinds, strict=True)]} for row in rows]
        if size and start + size < len(job["rows"]):
            page["pageToken"] = str(start + size)
        if job["changed"] is not None:
            page["numDmlAffectedRows"] = str(job["changed"])
        return page

    def _job(self, job_id: str) -> dict:
        job = self.jobs[job_id]
        statement = "INSERT" if job["changed"] is not None else "SELECT"
        return {"kind": "bigquery#job", "id": f"{job['project']}:US.{job_id}", "jobReference": self._reference(job_id),
                "configuration": {"jobType": "QUERY", "query": {key: value for key, value in
                                                                job["configuration"].items() if key in _JOB_FIELDS}},
                "status": {"state": "DONE"},
                "statistics": {"query": {"statementType": statement, "totalBytesProcessed": "0"}}}

    # --- dispatch -------------------------------------------------------------------------------------
    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        url = urlsplit(path)
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        payload = json.loads(body) if body else {}
        self.requests.append((method, url.path, payload | ({"?": query} if query else {})))
        parts = url.path.strip("/").split("/")  # bigquery v2 projects P (queries|jobs) [ID]
        project, collection = parts[3], parts[4]
        if method == "POST" and collection == "queries":
            status, answer = self._run(project, payload)
            if status != 200:
                return status, answer
            microseconds = bool(payload.get("formatOptions", {}).get("useInt64Timestamp"))
            size = int(payload["maxResults"]) if "maxResults" in payload else None
            return 200, {"kind": "bigquery#queryResponse", **self._page(answer["jobId"], 0, size, microseconds)}
        if method == "POST" and collection == "jobs":
            configuration = payload.get("configuration", {}).get("query")
            if configuration is None:
                return 400, google_error(400, "INVALID_ARGUMENT", "this stand-in runs query jobs only")
            status, answer = self._run(project, configuration, payload.get("jobReference", {}).get("jobId", ""))
            return (200, self._job(answer["jobId"])) if status == 200 else (status, answer)
        job_id = parts[5] if len(parts) > 5 else ""
        if job_id not in self.jobs:
            return 404, google_error(404, "NOT_FOUND", f"Not found: Job {project}:{job_id}")
        if collection == "jobs":
            return 200, self._job(job_id)
        start = int(query.get("pageToken") or query.get("startIndex") or 0)
        size = int(query["maxResults"]) if "maxResults" in query else None
        microseconds = query.get("formatOptions.useInt64Timestamp", "").lower() == "true"
        return 200, {"kind": "bigquery#getQueryResultsResponse", **self._page(job_id, start, size, microseconds)}
