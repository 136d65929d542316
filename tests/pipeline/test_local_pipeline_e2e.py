"""The training pipeline end to end with kfp.local: the same definition Vertex runs."""

import json
from pathlib import Path

import pandas as pd
import pytest

from contract.paths import DEFAULT_DATASET_CONFIG, PROJECT_ROOT
from pipelines.local_run import run_training_locally
from registry.model_registry import CHALLENGER, CHAMPION, LocalModelRegistry
from tests.gcs_emulator import EMULATOR_ENV
from tests.pipeline.conftest import SMALL_DATA_HYPERPARAMETERS, SMALL_PARTITIONS, copy_partitions

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


def test_second_run_is_judged_against_the_first_runs_champion_with_its_config_from_gcs(
        first_run, workspace, capfd, gcs_emulator, monkeypatch):
    # A data set config in Cloud Storage, its schema beside it: each step (a subprocess) reads both from the
    # emulator, the way a Vertex run reads dataset_config=gs://... without a new pipeline image.
    monkeypatch.setenv(EMULATOR_ENV, gcs_emulator.url)
    bucket = gcs_emulator.new_bucket("configs")
    shipped = PROJECT_ROOT / DEFAULT_DATASET_CONFIG
    config_uri = gcs_emulator.upload_file(shipped, f"gs://{bucket}/datasets/taxi.yaml")
    gcs_emulator.upload_file(shipped.with_name("chicago_taxi.schema.pbtxt"),
                             f"gs://{bucket}/datasets/chicago_taxi.schema.pbtxt")

    code = run_training_locally(data_uri=str(workspace["landing"] / SMALL_PARTITIONS[0]), dataset_config=config_uri,
                                local_dir=workspace["local"], **SMALL_DATA_HYPERPARAMETERS)
    run = _runs(workspace["local"])[-1]
    outcome = json.loads((run / "evaluate-model/evaluation/outcome.json").read_text())
    assert code == 0 and outcome["has_champion"]
    validated = json.loads((run / "validate-data/executor_output.json").read_text())["artifacts"]["schema"]
    assert validated["artifacts"][0]["metadata"]["source"] == f"gs://{bucket}/datasets/chicago_taxi.schema.pbtxt"
    assert "champion's auc on the same data" in capfd.readouterr().out
    registry = LocalModelRegistry(workspace["local"] / "registry")
    assert registry.get(MODEL, CHAMPION).version == "1"  # registering never promotes; deploy does
    if outcome["blessed"]:
        assert registry.get(MODEL, CHALLENGER).version == "2"
    else:
        assert len(registry.versions(MODEL)) == 1 and outcome["failures"]


@pytest.mark.parametrize("breakage, expected", [
    (lambda frame: frame.drop(columns=["payment_type"]), "payment_type: SCHEMA_MISSING_COLUMN"),
    (lambda frame: frame.assign(trip_miles="twelve"), "trip_miles: UNEXPECTED_DATA_TYPE"),
])
def test_a_bad_batch_stops_before_training_and_leaves_the_registry_untouched(
        first_run, workspace, tmp_path, capfd, breakage, expected):
    landing = copy_partitions(tmp_path)
    batch = landing / SMALL_PARTITIONS[1] / "batch.csv"
    breakage(pd.read_csv(batch, dtype=str, keep_default_na=False)).to_csv(batch, index=False)
    registry = LocalModelRegistry(workspace["local"] / "registry")
    versions_before = [(v.version, v.aliases) for v in registry.versions(MODEL)]

    code = run_training_locally(data_uri=str(landing), local_dir=workspace["local"], **SMALL_DATA_HYPERPARAMETERS)

    assert code == 1
    run = _runs(workspace["local"])[-1]
    assert not (run / "transform-data").exists() and not (run / "train-model").exists()
    output = capfd.readouterr().out
    assert expected in output and str(batch) in output
    assert [(v.version, v.aliases) for v in registry.versions(MODEL)] == versions_before
