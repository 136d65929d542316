"""The Vertex form of the bq:// source, rehearsed: the real google-cloud-bigquery and google-cloud-bigquery-storage
clients against stand-ins of BigQuery's REST API (held to its discovery document) and of the Storage Read API
(a gRPC server speaking the official message types), over the same DuckDB files local mode reads
(tests/bigquery_snapshot_stand_in.py). No BigQuery emulator runs offline (PLATFORM_NOTES)."""

from __future__ import annotations

import datetime

import pandas as pd
import pytest
from google.cloud.bigquery_storage_v1 import types

from contract.dataset import load_dataset_config
from dataprep.bigquery_source import (
    MAX_READ_STREAMS,
    SNAPSHOT,
    BigQuerySourceError,
    CloudTables,
    DuckDBTables,
    ingest_table,
    parsed,
    pin_data,
    snapshot_statement,
)
from dataprep.ingest import load_split
from tests.bigquery.conftest import PROJECT, TABLE, connect, load_table, sample_batches
from tests.bigquery_snapshot_stand_in import ROWS_PER_RESPONSE, bigquery_stand_in
from tests.pipeline.conftest import SMALL_PARTITIONS


@pytest.fixture(scope="module")
def config():
    return load_dataset_config()


@pytest.fixture(scope="module")
def cloud(sample_table):
    """The stand-ins over the whole sample's table (15,002 rows: four streams of at most 5,000 rows)."""
    with pytest.MonkeyPatch.context() as patch, bigquery_stand_in(sample_table, patch) as (rest, read):
        yield {"rest": rest, "read": read, "tables": CloudTables(PROJECT), "local_dir": sample_table}


@pytest.fixture(scope="module")
def pinned(cloud):
    return pin_data(TABLE, "", 30, cloud["tables"])


def rows_of(examples, split: str) -> pd.DataFrame:
    frame = load_split(examples, split).drop(columns="_batch")
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_the_snapshot_statement_runs_as_a_query_job_and_pins_the_table(cloud, pinned):
    rest = cloud["rest"]
    target = parsed(pinned.data_uri)
    assert pinned.created and target.dataset == "taxi_snapshots"
    (insert,) = [body for method, _, body in rest.calls if method == "bigquery.jobs.insert"]
    query = insert["configuration"]["query"]
    assert query["query"] == snapshot_statement(parsed(TABLE), target, 30)
    assert query["useLegacySql"] is False
    assert "FOR SYSTEM_TIME AS OF CURRENT_TIMESTAMP()" in query["query"]
    assert "INTERVAL 30 DAY" in query["query"]
    assert rest.server.methods[:3] == ["bigquery.tables.get", "bigquery.jobs.insert", "bigquery.jobs.getQueryResults"]
    assert rest.server.methods[-1] == "bigquery.tables.get" and rest.server.reply_problems == []
    # What the REST API reported is what the table holds: a snapshot of the base table, with its time.
    local = DuckDBTables(cloud["local_dir"]).describe(target)
    assert local.kind == SNAPSHOT and local.base_table == f"{PROJECT}.taxi.trips"
    assert pinned.data_version == local.data_version


def test_the_snapshot_is_read_through_a_session_of_several_streams_into_the_local_forms_shards(
        cloud, pinned, config, tmp_path):
    read = cloud["read"]
    sessions_before, reads_before = len(read.sessions), len(read.reads)
    summary = ingest_table(pinned.data_uri, config, tmp_path / "vertex", 250_000, "", cloud["tables"])
    (session,) = read.sessions[sessions_before:]
    target = parsed(pinned.data_uri)
    assert isinstance(session, types.CreateReadSessionRequest)
    assert session.parent == f"projects/{PROJECT}"
    assert session.read_session.table == f"projects/{PROJECT}/datasets/{target.dataset}/tables/{target.table}"
    assert session.read_session.data_format == types.DataFormat.ARROW
    assert session.max_stream_count == MAX_READ_STREAMS
    assert list(session.read_session.read_options.selected_fields)[:2] == ["pickup_community_area", "fare"]
    assert session.read_session.read_options.row_restriction == ""
    streams = {request.read_stream for request in read.reads[reads_before:]}
    assert len(streams) == 4  # 15,002 rows, at most 5,000 a stream, read in parallel

    local = ingest_table(pinned.data_uri, config, tmp_path / "local", 250_000, "", DuckDBTables(cloud["local_dir"]))
    assert (summary.rows, summary.train_rows, summary.eval_rows) == (local.rows, local.train_rows, local.eval_rows)
    assert summary.rows == 15_002
    for split in ("train", "eval"):
        pd.testing.assert_frame_equal(rows_of(tmp_path / "vertex", split), rows_of(tmp_path / "local", split))


def test_a_row_filter_is_the_sessions_row_restriction(cloud, pinned, config, tmp_path):
    condition = "trip_start_timestamp >= 1420070400"  # 2015 onwards
    summary = ingest_table(pinned.data_uri, config, tmp_path, 250_000, condition, cloud["tables"])
    assert cloud["read"].sessions[-1].read_session.read_options.row_restriction == condition
    with connect(cloud["local_dir"]) as connection:
        assert summary.rows == connection.execute(f"SELECT count(*) FROM taxi.trips WHERE {condition}").fetchone()[0]


def test_an_invalid_filter_is_refused_at_the_session_and_named_with_the_table(cloud, pinned, config, tmp_path):
    with pytest.raises(BigQuerySourceError, match=rf"row_filter 'fare >' cannot filter {pinned.data_uri}: "
                                                  r"Invalid row restriction"):
        ingest_table(pinned.data_uri, config, tmp_path, 250_000, "fare >", cloud["tables"])


def test_a_missing_table_is_named(cloud):
    with pytest.raises(BigQuerySourceError, match=rf"bq://{PROJECT}.taxi.nope does not exist \(.*Not found: Table"):
        pin_data(f"bq://{PROJECT}.taxi.nope", tables=cloud["tables"])


def test_a_broken_stream_resumes_where_it_stopped(cloud, pinned, config, tmp_path):
    """ReadRowsStream reconnects after UNAVAILABLE with the offset it had reached (reader.py): the stand-in
    breaks the first stream once after one response; no row is lost or read twice."""
    read = cloud["read"]
    read.interrupt_once = True
    before = len(read.reads)
    summary = ingest_table(pinned.data_uri, config, tmp_path, 250_000, "", cloud["tables"])
    assert summary.rows == 15_002
    assert ROWS_PER_RESPONSE in [request.offset for request in read.reads[before:]]


def test_an_expired_snapshot_and_a_missing_snapshot_dataset_are_named(tmp_path, config):
    load_table(tmp_path, sample_batches(SMALL_PARTITIONS[:1]))
    clock = {"now": datetime.datetime.now(datetime.UTC)}
    with pytest.MonkeyPatch.context() as patch, bigquery_stand_in(tmp_path, patch, now=lambda: clock["now"]):
        tables = CloudTables(PROJECT)
        snapshot = pin_data(TABLE, "", 1, tables).data_uri
        clock["now"] += datetime.timedelta(days=1, seconds=1)  # BigQuery deletes it at its expiration
        with pytest.raises(BigQuerySourceError, match=rf"{snapshot} does not exist .*expires"):
            ingest_table(snapshot, config, tmp_path / "examples", 250_000, "", tables)
        with connect(tmp_path) as connection:
            connection.execute("DROP SCHEMA taxi_snapshots CASCADE")
        with pytest.raises(BigQuerySourceError, match=rf"cannot snapshot {TABLE} into .*: Not found: Dataset "
                                                      rf"{PROJECT}:taxi_snapshots; expected the dataset "
                                                      rf"{PROJECT}.taxi_snapshots beside the table"):
            pin_data(TABLE, "", 1, tables)


def test_a_session_over_an_empty_table_has_no_stream_and_the_table_is_named(cloud, config, tmp_path):
    with connect(cloud["local_dir"]) as connection:
        connection.execute("CREATE OR REPLACE TABLE taxi.empty AS SELECT * FROM taxi.trips LIMIT 0")
    snapshot = pin_data(f"bq://{PROJECT}.taxi.empty", "", 1, cloud["tables"]).data_uri
    reads_before = len(cloud["read"].reads)
    summary = ingest_table(snapshot, config, tmp_path, 250_000, "", cloud["tables"])
    assert summary.rows == 0 and len(cloud["read"].reads) == reads_before  # nothing to read
    (problem,) = summary.batches[0].problems
    assert (problem.rule, summary.batches[0].uri) == ("NO_DATA_IN_SPAN", snapshot)
    assert problem.description.startswith("it has no rows")


def test_the_rest_stand_in_is_held_to_bigquerys_discovery_document(cloud):
    import requests

    url = f"{cloud['rest'].url}/bigquery/v2/projects/{PROJECT}/jobs"
    reply = requests.post(url, json={"configuration": {"query": {"querry": "SELECT 1"}}}, timeout=10)
    assert reply.status_code == 400 and 'Unknown name "querry"' in reply.json()["error"]["message"]
    assert cloud["rest"].server.reply_problems == []  # every reply so far fits the response schemas
