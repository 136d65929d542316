"""The training pipeline end to end on a bq:// table (the DuckDB stand-in, as `make run DATA_URI=bq://...`):
snapshot, ingest, validate, transform, train, evaluate, register with the snapshot in the lineage, deploy."""

from __future__ import annotations

import json

import pytest

from dataprep.bigquery_source import SNAPSHOT, DuckDBTables, parsed
from dataprep.ingest import load_manifest
from pipelines.local_run import run_pipeline
from registry.model_registry import CHAMPION, LocalModelRegistry
from tests.bigquery.conftest import PROJECT, TABLE, connect, load_table, sample_batches
from tests.pipeline.conftest import (
    SMALL_DATA_HYPERPARAMETERS,
    SMALL_DATA_MIN_EVAL_EXAMPLES,
    SMALL_PARTITIONS,
    derived_config,
)

MODEL = "chicago-taxi-from-bigquery"
ROW_FILTER = "trip_start_timestamp > 0"
pytestmark = pytest.mark.e2e


def test_a_table_trains_registers_with_its_snapshot_and_deploys(tmp_path, capsys):
    local = tmp_path / "local"
    load_table(local, sample_batches(SMALL_PARTITIONS))
    config = derived_config(tmp_path / "small.yaml", model_name=MODEL,
                            gate={"min_eval_examples": SMALL_DATA_MIN_EVAL_EXAMPLES, "metric_floors": {"recall": 0.2}})
    result = run_pipeline("training", local, data_uri=TABLE, dataset_config=str(config), row_filter=ROW_FILTER,
                          **SMALL_DATA_HYPERPARAMETERS)
    assert result.succeeded, result.step_errors
    assert "snapshot-data" in result.step_seconds

    (version,) = LocalModelRegistry(local / "registry").versions(MODEL)
    assert CHAMPION in version.aliases
    lineage = version.metadata
    assert (lineage["data_uri"], lineage["row_filter"]) == (TABLE, ROW_FILTER)
    snapshot_name, _, taken = lineage["data_version"].partition("@")
    snapshot = DuckDBTables(local).describe(parsed(f"bq://{snapshot_name}"))
    assert snapshot.kind == SNAPSHOT and snapshot.base_table == f"{PROJECT}.taxi.trips"
    assert lineage["data_version"] == snapshot.data_version and taken

    examples = json.loads((result.run_dir / "ingest-data/executor_output.json").read_text())
    (artifact,) = examples["artifacts"]["examples"]["artifacts"]
    assert artifact["metadata"]["data_uri"] == f"bq://{snapshot_name}"
    assert artifact["metadata"]["row_filter"] == ROW_FILTER
    with connect(local) as connection:
        assert load_manifest(result.run_dir / "ingest-data/examples").rows == connection.execute(
            f"SELECT count(*) FROM taxi.trips WHERE {ROW_FILTER}").fetchone()[0]
    deployed = json.loads((result.run_dir / "deploy-model/executor_output.json").read_text())
    assert deployed["parameterValues"]["version"] == version.version
    assert f"data: bq://{snapshot_name} (data_version {lineage['data_version']})" in capsys.readouterr().out
