"""The training pipeline end to end with kfp.local: the same definition Vertex runs."""

import json
from pathlib import Path

import pytest

from pipelines.local_run import run_training_locally
from registry.model_registry import CHALLENGER, CHAMPION, LocalModelRegistry
from tests.pipeline.conftest import (
    SMALL_DATA_HYPERPARAMETERS,
    SMALL_PARTITIONS,
    copy_partitions,
    damage,
    drop_columns,
    duplicate_fare,
    header_only,
    set_cells,
)

MODEL = "chicago-taxi-big-tipper"
pytestmark = pytest.mark.e2e


def _runs(local_dir: Path) -> list[Path]:
    return sorted((local_dir / "pipeline_root").iterdir())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    return {"landing": copy_partitions(root), "local": root / "local"}


@pytest.fixture(scope="module")
def first_run(workspace):
    code = run_training_locally(data_uri=str(workspace["landing"]), local_dir=workspace["local"],
                                **SMALL_DATA_HYPERPARAMETERS)
    return code, _runs(workspace["local"])[-1]


def test_first_run_trains_evaluates_and_registers_the_champion(first_run, workspace):
    code, run = first_run
    assert code == 0
    for artifact in ("ingest-data/examples/train.parquet", "validate-data/statistics/statistics.pbtxt",
                     "validate-data/schema/schema.pbtxt", "validate-data/anomalies/anomalies.pbtxt",
                     "transform-data/transform_graph/transform_fn/saved_model.pb",
                     "train-model/model/saved_model.pb", "train-model/model/input_spec.json",
                     "evaluate-model/report"):
        assert (run / artifact).exists(), artifact
    outcome = json.loads((run / "evaluate-model/evaluation/outcome.json").read_text())
    assert outcome["blessed"] and not outcome["has_champion"]
    assert "<svg" in (run / "evaluate-model/report").read_text()

    registry = LocalModelRegistry(workspace["local"] / "registry")
    [version] = registry.versions(MODEL)
    assert version.aliases == (CHALLENGER, CHAMPION)
    assert version.metadata["data_uri"] == str(workspace["landing"])
    assert version.metadata["metrics"]["auc"] == pytest.approx(outcome["metrics"]["overall"]["candidate"]["auc"])
    assert version.metadata["pipeline_run"].startswith("training-pipeline")
    assert (Path(version.uri) / "saved_model.pb").exists()


def test_second_run_is_judged_against_the_first_runs_champion(first_run, workspace, capfd):
    code = run_training_locally(data_uri=str(workspace["landing"] / SMALL_PARTITIONS[0]),
                                local_dir=workspace["local"], **SMALL_DATA_HYPERPARAMETERS)
    run = _runs(workspace["local"])[-1]
    outcome = json.loads((run / "evaluate-model/evaluation/outcome.json").read_text())
    assert code == 0 and outcome["has_champion"]
    assert "champion's auc on the same data" in capfd.readouterr().out
    registry = LocalModelRegistry(workspace["local"] / "registry")
    assert registry.get(MODEL, CHAMPION).version == "1"  # registering never promotes; deploy does
    if outcome["blessed"]:
        assert registry.get(MODEL, CHALLENGER).version == "2"
    else:
        assert len(registry.versions(MODEL)) == 1 and outcome["failures"]


# Each breaks the second partition's batch; `alone` runs on that batch only.
@pytest.mark.parametrize("breakage, alone, expected", [
    (drop_columns("payment_type"), False, "payment_type: SCHEMA_MISSING_COLUMN"),
    (set_cells("trip_miles", b"twelve"), False, "trip_miles: UNEXPECTED_DATA_TYPE"),
    (duplicate_fare, False, "fare: FEATURE_TYPE_HIGH_NUMBER_VALUES"),
    (set_cells("tips", {2: b"$1.50", 3: b"$2", 4: b"n/a"}), False, "tips: UNEXPECTED_DATA_TYPE"),
    (header_only, True, "NO_DATA_IN_SPAN"),
], ids=["column dropped", "numbers to text", "header repeats a column", "label input to text", "header only"])
def test_a_bad_batch_stops_before_training_and_leaves_the_registry_untouched(
        first_run, workspace, tmp_path, capfd, breakage, alone, expected):
    landing = copy_partitions(tmp_path)
    batch = damage(landing / SMALL_PARTITIONS[1] / "batch.csv", breakage)
    registry = LocalModelRegistry(workspace["local"] / "registry")
    versions_before = [(v.version, v.aliases) for v in registry.versions(MODEL)]

    code = run_training_locally(data_uri=str(batch.parent if alone else landing), local_dir=workspace["local"],
                                **SMALL_DATA_HYPERPARAMETERS)

    assert code == 1
    run = _runs(workspace["local"])[-1]
    assert not (run / "transform-data").exists() and not (run / "train-model").exists()
    summary = capfd.readouterr().out.split("=" * 72)[-2:]  # the summary, then what follows its closing line
    assert expected in summary[0] and str(batch) in summary[0]
    # The last line is the step's own error: its exception, the first anomaly's feature, rule and batch.
    last = summary[1].strip().splitlines()[-1]
    assert last.startswith("validate-data failed: DataValidationError: ") and expected in last and str(batch) in last
    assert [(v.version, v.aliases) for v in registry.versions(MODEL)] == versions_before
