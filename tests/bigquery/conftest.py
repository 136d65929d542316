"""bq:// fixtures: DuckDB stand-in projects filled from the shipped sample, typed as the reviewed schema says
(as a team's SQL would type the table), once per module."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from batch_prediction.local_bigquery import database_path, load_files, schema_types
from contract.dataset import load_dataset_config
from tests.pipeline.conftest import SAMPLE, SMALL_PARTITIONS

PROJECT = "local-project"
TABLE = f"bq://{PROJECT}.taxi.trips"


def sample_batches(partitions=None) -> list[str]:
    """The shipped batch files, all of them or those of some partitions (YYYY/MM/DD/HHMM), sorted."""
    if partitions is None:
        return sorted(str(path) for path in SAMPLE.glob("*/*/*/*/batch.csv"))
    return [str(SAMPLE / partition / "batch.csv") for partition in partitions]


def column_types() -> dict[str, str]:
    return schema_types(load_dataset_config().schema_uri)


def connect(local_dir: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(database_path(PROJECT, local_dir)))


def load_table(local_dir: Path, files: list[str], types: dict | None = None) -> int:
    """taxi.trips (replaced) from CSV files, typed by the reviewed schema, and taxi_snapshots beside it."""
    return load_files(files, TABLE, types or column_types(), local_dir)


def append_rows(local_dir: Path, files: list[str]) -> int:
    listed = "[" + ", ".join(f"'{name}'" for name in files) + "]"
    with connect(local_dir) as connection:
        connection.execute(f"INSERT INTO taxi.trips SELECT * FROM read_csv({listed}, types = {column_types()!r})")
        return connection.execute("SELECT count(*) FROM taxi.trips").fetchone()[0]


@pytest.fixture(scope="module")
def small_table(tmp_path_factory) -> Path:
    """A local dir whose stand-in project holds taxi.trips: the two small partitions (about 800 rows)."""
    local_dir = tmp_path_factory.mktemp("bigquery")
    load_table(local_dir, sample_batches(SMALL_PARTITIONS))
    return local_dir


@pytest.fixture(scope="module")
def sample_table(tmp_path_factory) -> Path:
    """A local dir whose stand-in project holds taxi.trips: the whole shipped sample (15,002 rows)."""
    local_dir = tmp_path_factory.mktemp("bigquery-sample")
    load_table(local_dir, sample_batches())
    return local_dir
