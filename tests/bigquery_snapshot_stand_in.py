"""BigQuery as the bq:// training source meets it, stood in on loopback over DuckDB: the REST API (the snapshot
statement as a query job, tables.get) and the Storage Read API (gRPC: CreateReadSession, ReadRows).

The clients are the real ones (google-cloud-bigquery, google-cloud-bigquery-storage) and nothing in the code
under test knows it talks to a stand-in: BIGQUERY_EMULATOR_HOST points the REST client here (the library's
own variable), MLOPS_BIGQUERY_STORAGE_HOST the read client (dataprep/bigquery_source.py).

- REST: `tests/stand_in_http.StandInServer(..., ("bigquery.v2",))`, so every request and reply is held to
  BigQuery's discovery document. Replies are built from its schemas' fields (Job, JobStatistics2, Table,
  SnapshotDefinition, ErrorProto).
- gRPC: a real grpc server whose method table is read from the official client's transport
  (`BigQueryReadGrpcTransport`: each method's path and the official proto-plus request/response classes
  that serialize it); google-cloud-bigquery-storage 2.43.0 ships no servicer, so requests arrive as the
  official message types by construction and replies are built from them.
- The data engine is the project's DuckDB stand-in (`dataprep.bigquery_source.DuckDBTables`): the same
  files local mode reads, so a test can compare the Vertex form's shards with the local form's.

Behaviour beyond shape, each with its source (docs/fidelity.md, "BigQuery snapshots and Storage Read"):
snapshot datasets must exist (Terraform makes them; the DDL does not), expiration deletes a snapshot
(tables.get answers 404 after it), a session over an empty table has no stream, streams divide the
pre-filter rows, each row is read by one stream, a stream resumes at an offset, an invalid row
restriction is refused at session creation.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pyarrow as pa

from batch_prediction.local_bigquery import BigQueryTable
from dataprep.bigquery_source import SNAPSHOT, BigQuerySourceError, DuckDBTables
from tests.stand_in_http import StandInServer

LOCATION = "US"
# The stand-in's rule for how many streams a session gets: one per this many rows before the filter, up to
# the client's max_stream_count (BigQuery decides by its own storage units: "roughly the same number of rows"
# per stream, fewer streams for small tables; CreateReadSession's docstring in the installed client).
ROWS_PER_STREAM = 5_000
# Rows per ReadRowsResponse (BigQuery sends responses of up to 10 MiB: read_rows' docstring).
ROWS_PER_RESPONSE = 2_048
_SNAPSHOT_DDL = re.compile(
    r"^CREATE SNAPSHOT TABLE `(?P<target>[^`]+)`\s+CLONE `(?P<source>[^`]+)`\s+"
    r"FOR SYSTEM_TIME AS OF CURRENT_TIMESTAMP\(\)"
    r"(\s+OPTIONS \(expiration_timestamp = TIMESTAMP_ADD\(CURRENT_TIMESTAMP\(\), INTERVAL (?P<days>\d+) DAY\)\))?"
    r"\s*;?\s*$")
# BigQuery's REST API names types by their legacy names (TableFieldSchema.type in the discovery document).
_LEGACY_TYPES = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}


def _table(dotted: str) -> BigQueryTable:
    project, dataset, table = dotted.split(".")
    return BigQueryTable(project, dataset, table)


def _millis(moment: datetime.datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def bigquery_error(status: int, code: str, reason: str, message: str) -> dict:
    """BigQuery's error body: Google's error with BigQuery's ErrorProto list (reason, message)."""
    return {"error": {"code": status, "status": code, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}]}}


class BigQueryRestStandIn:
    """jobs.insert (the snapshot statement), jobs.get, jobs.getQueryResults and tables.get of bigquery.v2.
    `calls` records (discovery method id, path, request body) of every call."""

    def __init__(self, tables: DuckDBTables) -> None:
        self.tables = tables
        self.jobs: dict[str, dict] = {}
        self.calls: list[tuple[str, str, dict]] = []
        self.server = StandInServer(self._answer, ("bigquery.v2",))
        self.url = self.server.url

    def close(self) -> None:
        self.server.close()

    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        route = urlsplit(path).path.removeprefix("/bigquery/v2/").split("/")
        payload = json.loads(body) if body else {}
        if method == "POST" and route[2:] == ["jobs"]:
            self.calls.append(("bigquery.jobs.insert", path, payload))
            return 200, self._insert(route[1], payload)
        if method == "GET" and len(route) == 4 and route[2] in ("jobs", "queries"):
            self.calls.append((f"bigquery.jobs.{'get' if route[2] == 'jobs' else 'getQueryResults'}", path, {}))
            return self._job_reply(route[2], route[3])
        if method == "GET" and len(route) == 6 and route[2] == "datasets" and route[4] == "tables":
            self.calls.append(("bigquery.tables.get", path, {}))
            return self._table_reply(BigQueryTable(route[1], route[3], route[5]))
        return 404, bigquery_error(404, "NOT_FOUND", "notFound", f"{method} {path} is not stood in for")

    # ---- jobs
    def _insert(self, project: str, job: dict) -> dict:
        job_id = job.get("jobReference", {}).get("jobId") or uuid.uuid4().hex
        reference = {"projectId": project, "jobId": job_id, "location": LOCATION}
        now = datetime.datetime.now(datetime.UTC)
        resource = {"kind": "bigquery#job", "id": f"{project}:{LOCATION}.{job_id}", "jobReference": reference,
                    "configuration": job.get("configuration", {}) | {"jobType": "QUERY"},
                    "statistics": {"creationTime": _millis(now), "startTime": _millis(now)}}
        sql = job.get("configuration", {}).get("query", {}).get("query", "")
        match = _SNAPSHOT_DDL.match(sql.strip())
        if not match:
            error = {"reason": "invalidQuery", "message": "the stand-in runs CREATE SNAPSHOT TABLE ... CLONE ... "
                                                          f"FOR SYSTEM_TIME AS OF CURRENT_TIMESTAMP() only: {sql[:80]}"}
        else:
            error = self._snapshot(_table(match["source"]), _table(match["target"]), int(match["days"] or 0))
        resource["statistics"]["endTime"] = _millis(datetime.datetime.now(datetime.UTC))
        if error:
            resource["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
        else:
            target = _table(match["target"])
            resource["status"] = {"state": "DONE"}
            resource["statistics"]["query"] = {
                "statementType": "CREATE_SNAPSHOT_TABLE", "ddlOperationPerformed": "CREATE",
                "ddlTargetTable": {"projectId": target.project, "datasetId": target.dataset, "tableId": target.table}}
        self.jobs[job_id] = resource
        return resource

    def _snapshot(self, source: BigQueryTable, target: BigQueryTable, days: int) -> dict | None:
        """The statement's effect, or the errorResult BigQuery's job would finish with."""
        if not self._dataset_exists(target):
            # DDL creates no dataset: "Not found: Dataset" (the dataset must exist, as Terraform makes it).
            return {"reason": "notFound", "message": f"Not found: Dataset {target.project}:{target.dataset}"}
        try:
            found = self.tables.describe(source)
        except BigQuerySourceError:
            return {"reason": "notFound", "message": f"Not found: Table {source.project}:{source.dataset}."
                                                     f"{source.table} was not found in location {LOCATION}"}
        if found.kind != "TABLE":
            return {"reason": "invalidQuery", "message": f"{source.dotted} is a {found.kind}: CLONE takes a table"}
        with contextlib.suppress(BigQuerySourceError):
            self.tables.describe(target)
            return {"reason": "duplicate", "message": f"Already Exists: Table {target.project}:{target.dataset}."
                                                      f"{target.table}"}
        self.tables.create_snapshot(source, target, days)
        return None

    def _dataset_exists(self, table: BigQueryTable) -> bool:
        with self.tables._connection(table.project) as connection:  # noqa: SLF001 - the engine's own connection
            return bool(connection.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?",
                                           [table.dataset]).fetchone()[0])

    def _job_reply(self, kind: str, job_id: str) -> tuple[int, dict]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, bigquery_error(404, "NOT_FOUND", "notFound", f"Not found: Job {job_id}")
        if kind == "jobs":
            return 200, job
        error = job["status"].get("errorResult")
        if error:  # getQueryResults answers a failed job with its error as the HTTP status
            status = 404 if error["reason"] == "notFound" else 409 if error["reason"] == "duplicate" else 400
            code = {404: "NOT_FOUND", 409: "ALREADY_EXISTS", 400: "INVALID_ARGUMENT"}[status]
            return status, bigquery_error(status, code, error["reason"], error["message"])
        return 200, {"kind": "bigquery#getQueryResultsResponse", "jobReference": job["jobReference"],
                     "jobComplete": True, "totalRows": "0"}

    # ---- tables
    def _table_reply(self, table: BigQueryTable) -> tuple[int, dict]:
        try:
            found = self.tables.describe(table)
        except BigQuerySourceError:
            return 404, bigquery_error(404, "NOT_FOUND", "notFound",
                                       f"Not found: Table {table.project}:{table.dataset}.{table.table}")
        resource = {
            "kind": "bigquery#table", "id": f"{table.project}:{table.dataset}.{table.table}",
            "tableReference": {"projectId": table.project, "datasetId": table.dataset, "tableId": table.table},
            "type": found.kind, "location": LOCATION, "numRows": str(found.rows),
            "schema": {"fields": [{"name": name, "type": _LEGACY_TYPES.get(kind, kind), "mode": "NULLABLE"}
                                  for name, kind in found.columns.items()]}}
        if found.kind == SNAPSHOT:
            base = _table(found.base_table)
            resource["snapshotDefinition"] = {
                "baseTableReference": {"projectId": base.project, "datasetId": base.dataset, "tableId": base.table},
                "snapshotTime": found.snapshot_time.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")}
            resource["creationTime"] = _millis(found.snapshot_time)
        if found.expiration_time is not None:
            resource["expirationTime"] = _millis(found.expiration_time)
        return 200, resource


# ------------------------------------------------------------------------------------------ Storage Read
class _RecordingChannel(grpc.Channel):
    """Records the stubs the official transport makes: each method's path and (de)serializers."""

    def __init__(self) -> None:
        self.methods: dict[str, tuple[str, Callable, Callable]] = {}

    def _stub(kind: str):  # noqa: N805 - a factory of the methods below
        def make(self, method, request_serializer=None, response_deserializer=None, *args, **kwargs):
            self.methods[method] = (kind, request_serializer, response_deserializer)
            return lambda *call_args, **call_kwargs: None
        return make

    unary_unary = _stub("unary_unary")
    unary_stream = _stub("unary_stream")
    stream_unary = _stub("stream_unary")
    stream_stream = _stub("stream_stream")

    def subscribe(self, *args, **kwargs) -> None:
        pass

    def unsubscribe(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def official_read_methods() -> dict[str, tuple[str, type, type]]:
    """BigQueryRead's methods as the official client calls them: path -> (kind, request type, response type)."""
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    channel = _RecordingChannel()
    transport = BigQueryReadGrpcTransport(channel=channel)
    for name in ("create_read_session", "read_rows", "split_read_stream"):
        # Through grpc's interceptor a unary stub reaches the channel only when it is called.
        with contextlib.suppress(Exception):
            getattr(transport, name)(None)
    # A proto-plus type's serialize/deserialize are class methods: the class is their __self__.
    return {path: (kind, serializer.__self__, deserializer.__self__)
            for path, (kind, serializer, deserializer) in channel.methods.items()}


class BigQueryReadStandIn:
    """BigQueryRead on a loopback gRPC server. `sessions` records every CreateReadSessionRequest received
    and `reads` every ReadRowsRequest (official message types)."""

    def __init__(self, tables: DuckDBTables, rows_per_stream: int = ROWS_PER_STREAM) -> None:
        from google.cloud.bigquery_storage_v1 import types

        self.types, self.tables, self.rows_per_stream = types, tables, rows_per_stream
        self.sessions: list = []
        self.reads: list = []
        # Break the next stream read once, after its first response, as a dropped connection would.
        self.interrupt_once = False
        self._streams: dict[str, dict] = {}
        self._lock = threading.Lock()
        implemented = {"CreateReadSession": self._create_read_session, "ReadRows": self._read_rows}
        handlers = {}
        for path, (kind, request_type, response_type) in official_read_methods().items():
            service, name = path.strip("/").split("/")
            if name not in implemented:
                continue  # SplitReadStream: never called by the code under test; grpc answers UNIMPLEMENTED
            factory = getattr(grpc, f"{kind}_rpc_method_handler")
            handlers.setdefault(service, {})[name] = factory(
                implemented[name], request_deserializer=request_type.deserialize,
                response_serializer=response_type.serialize)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers(tuple(grpc.method_handlers_generic_handler(service, methods)
                                                   for service, methods in handlers.items()))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.host = f"127.0.0.1:{self.port}"
        self.server.start()

    def close(self) -> None:
        self.server.stop(grace=None)

    def _create_read_session(self, request, context):
        self.sessions.append(request)
        match = re.fullmatch(r"projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)", request.read_session.table)
        if not match:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid table name: {request.read_session.table}")
        table = BigQueryTable(*match.groups())
        if request.read_session.data_format != self.types.DataFormat.ARROW:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the stand-in serves the ARROW data format only")
        try:
            found = self.tables.describe(table)
        except BigQuerySourceError:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"Not found: Table {table.project}:{table.dataset}.{table.table}")
        options = request.read_session.read_options
        columns = list(options.selected_fields) or list(found.columns)
        unknown = [name for name in columns if name not in found.columns]
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Field {unknown[0]} not found in table")
        row_filter = options.row_restriction
        try:  # the filter is compiled with the session: a bad one is refused here, not at the first read
            schema = self._read(table, columns, row_filter, 0, 0).schema
        except BigQuerySourceError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid row restriction: {error}")
        wanted = request.max_stream_count or 1000  # 0: the server chooses; its system maximum is 1,000
        count = min(wanted, math.ceil(found.rows / self.rows_per_stream))  # an empty table: no stream
        session = f"projects/{request.parent.removeprefix('projects/')}/locations/{LOCATION.lower()}/sessions/" \
                  f"{uuid.uuid4().hex}"
        size = math.ceil(found.rows / count) if count else 0
        streams = []
        for index in range(count):
            name = f"{session}/streams/{index}"
            with self._lock:
                self._streams[name] = {"table": table, "columns": columns, "filter": row_filter,
                                       "start": index * size, "stop": min(found.rows, (index + 1) * size),
                                       "schema": schema}
            streams.append(self.types.ReadStream(name=name))
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=6)  # sessions last 6 hours
        return self.types.ReadSession(
            name=session, table=request.read_session.table, data_format=self.types.DataFormat.ARROW,
            read_options=options, streams=streams, expire_time=expires, estimated_row_count=found.rows,
            arrow_schema=self.types.ArrowSchema(serialized_schema=schema.serialize().to_pybytes()))

    def _read(self, table: BigQueryTable, columns: list[str], row_filter: str, start: int, stop: int) -> pa.Table:
        """The rows of positions [start, stop) of the table (its insertion order) that pass the filter."""
        from dataprep.bigquery_source import _quoted

        selected = ", ".join(_quoted(name) for name in columns)
        where = f" WHERE ({row_filter})" if row_filter.strip() else ""
        sql = (f"SELECT {selected} FROM (SELECT * FROM {_quoted(table.dataset, table.table)} LIMIT {stop - start} "
               f"OFFSET {start}){where}")
        import duckdb

        with self.tables._connection(table.project) as connection:  # noqa: SLF001 - the engine's connection
            try:
                if len(duckdb.extract_statements(sql)) != 1:
                    raise BigQuerySourceError(f"{row_filter!r} is more than one condition")
                return connection.execute(sql).to_arrow_table()
            except duckdb.Error as error:
                raise BigQuerySourceError(str(error).splitlines()[0]) from None

    def _read_rows(self, request, context) -> Iterator:
        self.reads.append(request)
        with self._lock:
            stream = self._streams.get(request.read_stream)
        if stream is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: stream {request.read_stream}")
        rows = self._read(stream["table"], stream["columns"], stream["filter"], stream["start"], stream["stop"])
        rows = rows.slice(request.offset)  # resume where the client's last response ended
        total, done = max(1, rows.num_rows), 0
        for index, batch in enumerate(rows.to_batches(max_chunksize=ROWS_PER_RESPONSE)):
            # The first response carries the schema too (ReadRowsResponse.arrow_schema, a `schema` oneof).
            schema = {"arrow_schema": self.types.ArrowSchema(
                serialized_schema=stream["schema"].serialize().to_pybytes())} if index == 0 else {}
            if index == 1 and self.interrupt_once:
                self.interrupt_once = False
                context.abort(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer (the stand-in's doing)")
            yield self.types.ReadRowsResponse(
                arrow_record_batch=self.types.ArrowRecordBatch(
                    serialized_record_batch=batch.serialize().to_pybytes(), row_count=batch.num_rows),
                row_count=batch.num_rows,
                stats=self.types.StreamStats(progress=self.types.StreamStats.Progress(
                    at_response_start=done / total, at_response_end=(done + batch.num_rows) / total)),
                **schema)
            done += batch.num_rows


@contextlib.contextmanager
def bigquery_stand_in(local_dir: Path, monkeypatch, now: Callable[[], datetime.datetime] | None = None,
                      rows_per_stream: int = ROWS_PER_STREAM):
    """Both APIs on loopback over the DuckDB files under `local_dir`, the real clients pointed at them."""
    from dataprep.bigquery_source import STORAGE_HOST_ENV

    tables = DuckDBTables(local_dir, now) if now else DuckDBTables(local_dir)
    rest = BigQueryRestStandIn(tables)
    read = BigQueryReadStandIn(tables, rows_per_stream)
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", rest.url)
    monkeypatch.setenv(STORAGE_HOST_ENV, read.host)
    try:
        yield rest, read
    finally:
        read.close()
        rest.close()
