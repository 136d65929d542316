"""bq:// training data on the local stand-in: snapshots, the shards they become, and bad input named."""

from __future__ import annotations

import datetime
import threading
import time

import pandas as pd
import pytest

from contract.dataset import load_dataset_config
from contract.schema import load_schema
from dataprep import validation
from dataprep.bigquery_source import (
    SNAPSHOT,
    BigQuerySourceError,
    DuckDBTables,
    PinnedData,
    interleaved,
    key_text,
    parsed,
    pin_data,
)
from dataprep.ingest import NO_ROWS, IngestError, ingest, load_manifest, load_split
from tests.bigquery.conftest import (
    PROJECT,
    TABLE,
    append_rows,
    column_types,
    connect,
    load_table,
    sample_batches,
)
from tests.pipeline.conftest import SMALL_PARTITIONS, copy_partitions


@pytest.fixture(scope="module")
def config():
    return load_dataset_config()


def rows_of(examples, split: str) -> pd.DataFrame:
    """A split's rows in a fixed order, whatever order they were read in (BigQuery streams promise none)."""
    frame = load_split(examples, split).drop(columns="_batch")
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def snapshot_copies(local_dir) -> list[str]:
    with connect(local_dir) as connection:
        return [name for (name,) in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '_bigquery' AND "
            "table_name <> 'snapshots' ORDER BY table_name").fetchall()]


# ------------------------------------------------------------------------------------- snapshots
def test_a_table_is_pinned_to_a_new_snapshot_and_a_snapshot_stays_as_it_is(small_table):
    tables = DuckDBTables(small_table)
    pinned = pin_data(TABLE, "", 30, tables)
    assert pinned.created and pinned.data_uri.startswith(f"bq://{PROJECT}.taxi_snapshots.trips_")
    snapshot = tables.describe(parsed(pinned.data_uri))
    assert snapshot.kind == SNAPSHOT and snapshot.base_table == f"{PROJECT}.taxi.trips"
    assert pinned.data_version == f"{pinned.data_uri.removeprefix('bq://')}@{snapshot.data_version.split('@')[1]}"
    assert snapshot.expiration_time - snapshot.snapshot_time == datetime.timedelta(days=30)
    # A snapshot named in data_uri is used as it is: no new snapshot, the same version.
    assert pin_data(pinned.data_uri, "", 30, tables) == PinnedData(pinned.data_uri, pinned.data_version)
    # Files pass through: their version is the trigger's.
    assert pin_data("data/processed", "abc123", 30, tables) == PinnedData("data/processed", "abc123")


def test_rows_added_after_a_snapshot_leave_it_unchanged_and_a_new_snapshot_has_them(tmp_path, config):
    load_table(tmp_path, sample_batches(SMALL_PARTITIONS[:1]))
    tables = DuckDBTables(tmp_path)
    first = pin_data(TABLE, tables=tables)
    before = ingest_with(tables, first.data_uri, config, tmp_path / "first")
    added = append_rows(tmp_path, sample_batches(SMALL_PARTITIONS[1:]))

    rerun = ingest_with(tables, first.data_uri, config, tmp_path / "rerun")
    assert rerun.rows == before.rows < added
    for split in ("train", "eval"):
        pd.testing.assert_frame_equal(rows_of(tmp_path / "rerun", split), rows_of(tmp_path / "first", split))
    second = pin_data(TABLE, tables=tables)
    assert second.data_version != first.data_version
    assert ingest_with(tables, second.data_uri, config, tmp_path / "second").rows == added


def ingest_with(tables, data_uri, config, output, row_filter: str = ""):
    from dataprep.bigquery_source import ingest_table

    return ingest_table(data_uri, config, output, 250_000, row_filter, tables)


def test_a_second_snapshot_of_an_unchanged_table_copies_no_data(tmp_path):
    load_table(tmp_path, sample_batches(SMALL_PARTITIONS[:1]))
    tables = DuckDBTables(tmp_path)
    first, second = pin_data(TABLE, tables=tables), pin_data(TABLE, tables=tables)
    assert first.data_uri != second.data_uri  # two snapshots, each with its own time...
    assert len(snapshot_copies(tmp_path)) == 1  # ...on one copy of the rows
    append_rows(tmp_path, sample_batches(SMALL_PARTITIONS[1:]))
    pin_data(TABLE, tables=tables)
    assert len(snapshot_copies(tmp_path)) == 2


def test_an_expired_snapshot_is_gone_and_its_copy_with_it(tmp_path):
    load_table(tmp_path, sample_batches(SMALL_PARTITIONS[:1]))
    clock = {"now": datetime.datetime(2026, 11, 23, tzinfo=datetime.UTC)}
    tables = DuckDBTables(tmp_path, now=lambda: clock["now"])
    pinned = pin_data(TABLE, expiration_days=7, tables=tables)
    clock["now"] = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=7, seconds=1)
    with pytest.raises(BigQuerySourceError, match=rf"{pinned.data_uri} does not exist .*expires"):
        pin_data(pinned.data_uri, tables=tables)
    assert snapshot_copies(tmp_path) == []
    never = pin_data(TABLE, expiration_days=0, tables=tables)  # 0: never expires
    assert tables.describe(parsed(never.data_uri)).expiration_time is None


# ------------------------------------------------------------------------------------- the shards
def test_a_snapshot_becomes_the_csv_paths_shards_row_for_row(sample_table, tmp_path, config):
    """The whole shipped sample, ingested from its CSV batches and from a table of the same rows: the same
    rows in each split, with the same types (the split hashes the same key text)."""
    tables = DuckDBTables(sample_table)
    summary = ingest_with(tables, pin_data(TABLE, tables=tables).data_uri, config, tmp_path / "bq")
    csv = ingest("data/processed", config, tmp_path / "csv")
    assert (summary.rows, summary.train_rows, summary.eval_rows) == (csv.rows, csv.train_rows, csv.eval_rows)
    assert summary.label_positive_rate == csv.label_positive_rate
    for split in ("train", "eval"):
        from_table, from_files = rows_of(tmp_path / "bq", split), rows_of(tmp_path / "csv", split)
        assert list(from_table.dtypes) == list(from_files.dtypes)
        pd.testing.assert_frame_equal(from_table, from_files)


def test_split_keys_hash_the_text_a_csv_writer_gives_them():
    import pyarrow as pa

    assert key_text(pa.array([46.85, 7.0, None, 41.857183858])) == ["46.85", "7.0", "", "41.857183858"]
    assert key_text(pa.array([1393723800, None])) == ["1393723800", ""]
    assert key_text(pa.array(["Cash", None, "NA"])) == ["Cash", "", "NA"]


def test_a_row_filter_selects_the_rows_read(small_table, tmp_path, config):
    tables = DuckDBTables(small_table)
    snapshot = pin_data(TABLE, tables=tables).data_uri
    condition = "trip_start_timestamp >= 1396310400"  # April 2014 onwards: the second partition
    with connect(small_table) as connection:
        expected = connection.execute(f"SELECT count(*) FROM taxi.trips WHERE {condition}").fetchone()[0]
    summary = ingest_with(tables, snapshot, config, tmp_path, condition)
    assert 0 < summary.rows == expected < tables.describe(parsed(snapshot)).rows


# ------------------------------------------------------------------------------------- bad input
def test_a_table_that_does_not_exist_is_named(small_table):
    with pytest.raises(BigQuerySourceError, match=rf"bq://{PROJECT}.taxi.nope does not exist .*no table taxi.nope"):
        pin_data(f"bq://{PROJECT}.taxi.nope", tables=DuckDBTables(small_table))
    with pytest.raises(BigQuerySourceError, match="no local BigQuery stand-in for project 'other-project'.*load"):
        pin_data("bq://other-project.taxi.trips", tables=DuckDBTables(small_table))
    with pytest.raises(BigQuerySourceError, match="is not a BigQuery table; expected bq://PROJECT.DATASET.TABLE"):
        pin_data("bq://local-project.trips", tables=DuckDBTables(small_table))


@pytest.mark.parametrize("row_filter, message", [
    ("trip_start_timestamp >=", r"syntax error"),
    ("no_such_column > 1", r"no_such_column"),
    ("1 = 1); DROP TABLE taxi.trips; SELECT (1", r"more than one SQL statement"),
])
def test_a_filter_that_is_not_a_condition_is_named_with_the_table(small_table, tmp_path, config, row_filter, message):
    tables = DuckDBTables(small_table)
    snapshot = pin_data(TABLE, tables=tables).data_uri
    with pytest.raises(BigQuerySourceError, match=rf"row_filter .* cannot filter {snapshot}: .*{message}"):
        ingest_with(tables, snapshot, config, tmp_path, row_filter)
    assert tables.describe(parsed(TABLE)).rows > 0  # nothing was dropped


def test_a_filter_that_selects_no_row_stops_the_run_at_validation_naming_the_table(small_table, tmp_path, config):
    tables = DuckDBTables(small_table)
    snapshot = pin_data(TABLE, tables=tables).data_uri
    summary = ingest_with(tables, snapshot, config, tmp_path / "examples", "fare < 0")
    assert summary.rows == 0
    (problem,) = load_manifest(tmp_path / "examples").batches[0].problems
    assert problem.rule == NO_ROWS and "row_filter 'fare < 0' selects no row" in problem.description
    with pytest.raises(validation.DataValidationError, match=rf"NO_DATA_IN_SPAN: .*\({snapshot}\)"):
        validation.validate_examples(tmp_path / "examples", config, tmp_path / "s", tmp_path / "sc", tmp_path / "a")


@pytest.mark.parametrize("change, rule, feature", [
    ({"fare": "VARCHAR"}, "UNEXPECTED_DATA_TYPE", "fare"),  # a retyped column
    ({"trip_start_hour": "DOUBLE"}, "UNEXPECTED_DATA_TYPE", "trip_start_hour"),  # INT held as FLOAT64
    ({"payment_type": None}, "SCHEMA_MISSING_COLUMN", "payment_type"),  # a column the schema needs
    ({"tips": None}, "SCHEMA_MISSING_COLUMN", "tips"),  # a column the label reads
])
def test_a_wrong_column_is_a_critical_anomaly_and_no_row_is_trained_on(tmp_path, config, change, rule, feature):
    types = column_types()
    files = sample_batches(SMALL_PARTITIONS[:1])
    types.update({name: kind for name, kind in change.items() if kind})
    load_table(tmp_path, files, types=types)
    with connect(tmp_path) as connection:
        for name in [name for name, kind in change.items() if kind is None]:
            connection.execute(f"ALTER TABLE taxi.trips DROP COLUMN {name}")
    tables = DuckDBTables(tmp_path)
    snapshot = pin_data(TABLE, tables=tables).data_uri
    summary = ingest_with(tables, snapshot, config, tmp_path / "examples")
    assert summary.rows == 0  # the table's rows are left out before any is read
    with pytest.raises(validation.DataValidationError, match=rf"{feature}: {rule}: .*{snapshot}"):
        validation.validate_examples(tmp_path / "examples", config, tmp_path / "s", tmp_path / "sc", tmp_path / "a")


def test_bigquery_types_against_the_schema(config):
    schema = load_schema(config.schema_uri)
    columns = {feature.name: {1: "STRING", 2: "INT64", 3: "FLOAT64"}.get(feature.type, "?")
               for feature in schema.feature}
    assert validation.bigquery_column_problems(columns | {"fare": "INT64"}, schema, "t") == []  # INT64 is a FLOAT
    assert validation.bigquery_column_problems(columns | {"trip_start_day": "BOOL"}, schema, "t") == []
    wrong = validation.bigquery_column_problems(columns | {"company": "BYTES", "trip_start_day": "NUMERIC"},
                                                schema, "bq://p.d.t")
    assert {(p.column, p.rule) for p in wrong} == {("company", "UNEXPECTED_DATA_TYPE"),
                                                    ("trip_start_day", "UNEXPECTED_DATA_TYPE")}
    assert "bq://p.d.t holds it as BigQuery NUMERIC; the schema expects INT, held as INT64 or BOOL" in {
        p.description for p in wrong}
    del columns["fare"]
    assert validation.bigquery_column_problems(columns, schema, "t", explained={"fare"}) == []


def test_a_row_filter_on_files_is_refused(tmp_path, config):
    with pytest.raises(IngestError, match="row_filter 'fare > 1' applies to a bq:// table"):
        ingest(str(copy_partitions(tmp_path)), config, tmp_path / "examples", row_filter="fare > 1")


def test_snapshot_expiration_must_be_whole_days(small_table):
    with pytest.raises(BigQuerySourceError, match="snapshot_expiration_days=-1; expected a whole number"):
        pin_data(TABLE, expiration_days=-1, tables=DuckDBTables(small_table))


# ------------------------------------------------------------------------------------- parallel streams
def test_streams_are_taken_in_turn_and_a_failure_is_raised():
    def numbers(start: int, count: int):
        return lambda: iter(range(start, start + count))

    assert list(interleaved([numbers(0, 3), numbers(10, 1), numbers(20, 2)], 2)) == [0, 10, 20, 1, 21, 2]

    def broken():
        yield 1
        raise RuntimeError("stream 2 broke")

    with pytest.raises(RuntimeError, match="stream 2 broke"):
        list(interleaved([numbers(0, 5), broken], 1))


def test_leaving_early_stops_every_reader():
    produced = []

    def endless():
        for number in range(10**9):
            produced.append(number)
            yield number

    before = threading.active_count()
    reader = interleaved([endless, endless], 2)
    assert [next(reader) for _ in range(4)] == [0, 0, 1, 1]
    reader.close()
    time.sleep(0.3)
    assert threading.active_count() == before and len(produced) < 20  # bounded read-ahead, threads gone

