"""The training pipeline end to end with kfp.local: the same definition Vertex runs.

The runs use a copy of the shipped data set config with its own model name (the
pipeline's `model_name` parameter is left at its default, so the config's name
must be the one used) and a minimum of eval examples the small partitions can meet."""

import json
from pathlib import Path

import pytest

from contract.model_inputs import InputSpec
from contract.paths import DEFAULT_DATASET_CONFIG, PROJECT_ROOT
from pipelines.local_run import LocalRun, print_summary, run_pipeline
from registry.model_registry import CHALLENGER, CHAMPION, INPUT_CONTRACT_KEY, LocalModelRegistry
from storage.shards import list_shards
from tests.conftest import SMALL_SAMPLE_MODEL, SmallSampleRun
from tests.gcs_emulator import EMULATOR_ENV
from tests.pipeline.conftest import (
    SMALL_DATA_HYPERPARAMETERS,
    SMALL_DATA_MIN_EVAL_EXAMPLES,
    SMALL_PARTITIONS,
    copy_partitions,
    damage,
    derived_config,
    drop_columns,
    duplicate_fare,
    header_only,
    set_cells,
)
from tests.report_rendering import CANDIDATE_COLOUR, CHAMPION_COLOUR, render_report
from triggers.submission.data_version import listing_version

MODEL = SMALL_SAMPLE_MODEL
pytestmark = pytest.mark.e2e


def _runs(local_dir: Path) -> list[Path]:
    return sorted((local_dir / "pipeline_root").iterdir())


def _recorded_report(run: Path) -> Path:
    """The report file as kfp.local recorded it (what the summary prints and a browser opens)."""
    recorded = json.loads((run / "evaluate-model/executor_output.json").read_text())
    return Path(recorded["artifacts"]["report"]["artifacts"][0]["uri"])


@pytest.fixture(scope="module")
def workspace(small_sample_run: SmallSampleRun):
    return {"landing": small_sample_run.landing, "local": small_sample_run.local, "config": small_sample_run.config}


@pytest.fixture(scope="module")
def first_run(small_sample_run: SmallSampleRun):
    """The suite's shared first run (tests/conftest.py): the later runs here are judged against it."""
    return small_sample_run.result, small_sample_run.run_dir


def test_first_run_trains_evaluates_and_registers_the_champion(first_run, workspace, tmp_path, capsys):
    result, run = first_run
    assert result.succeeded
    for artifact in ("ingest-data/examples/train/part-00000.parquet", "validate-data/statistics/statistics.pbtxt",
                     "validate-data/schema/schema.pbtxt", "validate-data/anomalies/anomalies.pbtxt",
                     "transform-data/transform_graph/transform_fn/saved_model.pb",
                     "train-model/model/saved_model.pb", "train-model/model/input_spec.json",
                     "evaluate-model/report.html"):
        assert (run / artifact).exists(), artifact
    for examples in ("ingest-data/examples", "transform-data/transformed_examples"):  # Parquet shards per split
        assert all(list_shards(str(run / examples / split)) for split in ("train", "eval")), examples
    outcome = json.loads((run / "evaluate-model/evaluation/outcome.json").read_text())
    assert outcome["blessed"] and not outcome["has_champion"]
    # Ingest records the version of the bytes it read (on Vertex, part of its cache key).
    ingested = json.loads((run / "ingest-data/executor_output.json").read_text())
    (examples,) = ingested["artifacts"]["examples"]["artifacts"]
    assert examples["metadata"]["data_version"] == listing_version(str(workspace["landing"]))
    assert outcome["thresholds"]["gate"]["min_eval_examples"] == SMALL_DATA_MIN_EVAL_EXAMPLES
    report = _recorded_report(run)
    assert report == run / "evaluate-model/report.html"
    assert f"<title>Evaluation of {MODEL}</title>" in report.read_text()

    # Registered under the data set config's model name: the parameter was left to default to it.
    registry = LocalModelRegistry(workspace["local"] / "registry")
    [version] = registry.versions(MODEL)
    assert registry.versions("chicago-taxi-big-tipper") == []
    assert version.aliases == (CHALLENGER, CHAMPION)
    assert version.metadata["data_uri"] == str(workspace["landing"])
    assert version.metadata["metrics"]["auc"] == pytest.approx(outcome["metrics"]["overall"]["candidate"]["auc"])
    assert version.metadata["pipeline_run"].startswith("training-pipeline")
    assert version.metadata[INPUT_CONTRACT_KEY] == InputSpec.load(run / "train-model/model").features
    assert (Path(version.uri) / "saved_model.pb").exists()

    # Blessed and registered, so deployed (the nested deploy pipeline): alone at 100% on the local endpoint.
    deployed = json.loads((run / "deploy-model/executor_output.json").read_text())["parameterValues"]
    assert (deployed["transition"], deployed["traffic_split"]) == ("first", '{"1": 100}')
    assert deployed["smoke_test"].startswith("smoke test passed")
    endpoint = json.loads((workspace["local"] / "endpoint/endpoint.json").read_text())
    assert [m["model_uri"] for m in endpoint["deployed_models"]] == [str(Path(version.uri).resolve())]

    print_summary(LocalRun(True, run, {}, 0.0, {}), "training")
    summary = capsys.readouterr().out
    assert f"report: {report}\n" in summary and f"registered: version 1 of {MODEL} as challenger,champion" in summary
    assert 'deployed: version 1 (first) as deployed model 1; split {"1": 100}' in summary
    assert f"console: http://127.0.0.1:8095/runs/{run.name}  (serve it with: make console" in summary

    # The recorded file opens in a browser as a page, with its three plots drawn.
    rendered = render_report(report, tmp_path / "rendered")
    assert len(rendered.plots) == 3
    assert all(rendered.pixels_near(plot, CANDIDATE_COLOUR) > 100 for plot in range(3))


def test_a_run_identical_to_a_registered_version_registers_and_deploys_nothing(first_run, workspace, capsys):
    """A second `make run` on the same data with the same parameters: its register step (run here on the first
    run's own artifacts, as the rerun's would be the same) names version 1 instead of registering, and the
    template deploys only a new version (the deploy sits under `identical_to == ""`)."""
    from kfp.dsl import Artifact, Dataset, Model

    from components.register_model import register_model
    from pipelines.settings import SETTINGS

    _, run = first_run
    registry = LocalModelRegistry(workspace["local"] / "registry")
    [first] = [version for version in registry.versions(MODEL) if version.version == "1"]
    same = {"model": Model(uri=str(run / "train-model/model")),
            "evaluation": Artifact(uri=str(run / "evaluate-model/evaluation")),
            "examples": Dataset(uri=str(run / "ingest-data/examples")),
            "schema": Artifact(uri=str(run / "validate-data/schema")), "model_name": MODEL,
            "registry_uri": str(workspace["local"] / "registry"), "project": "", "location": "",
            "serving_image": SETTINGS.serving_image, "data_uri": str(workspace["landing"]),
            "data_version": listing_version(str(workspace["landing"])), "row_filter": "",
            "dataset_config": workspace["config"],
            "learning_rate": 0.001, "hidden_units": [64, 32], "seed": 42, "pipeline_run": "rerun",
            **SMALL_DATA_HYPERPARAMETERS}
    versions_before = [(v.version, v.aliases) for v in registry.versions(MODEL)]
    outcome = register_model.python_func(**same)
    assert (outcome.version, outcome.identical_to) == ("", "1") and first.metadata["lineage"]
    assert [(v.version, v.aliases) for v in registry.versions(MODEL)] == versions_before
    assert "not registered: version 1 of chicago-taxi-small-sample" in capsys.readouterr().out
    compiled = json.loads((PROJECT_ROOT / "compiled/training_pipeline.json").read_text())
    guards = [task["triggerPolicy"]["condition"] for component in compiled["components"].values()
              for task in component.get("dag", {}).get("tasks", {}).values() if "triggerPolicy" in task]
    assert "inputs.parameter_values['pipelinechannel--register-model-identical_to'] == ''" in guards


def test_second_run_is_judged_against_the_champion_and_the_gate_with_its_config_from_gcs(
        first_run, workspace, tmp_path, capfd, gcs_emulator, monkeypatch):
    """One partition holds fewer eval examples than the gate's minimum: refused, and the report says why.

    The data set config is in Cloud Storage with its schema beside it: each step (a subprocess) reads
    both from the emulator, the way a Vertex run reads dataset_config=gs://... without a new image."""
    monkeypatch.setenv(EMULATOR_ENV, gcs_emulator.url)
    bucket = gcs_emulator.new_bucket("configs")
    shipped = PROJECT_ROOT / DEFAULT_DATASET_CONFIG
    config = derived_config(tmp_path / "small_sample.yaml", model_name=MODEL, schema="chicago_taxi.schema.pbtxt",
                            gate={"min_eval_examples": SMALL_DATA_MIN_EVAL_EXAMPLES, "metric_floors": {"recall": 0.2}})
    config_uri = gcs_emulator.upload_file(config, f"gs://{bucket}/datasets/small_sample.yaml")
    gcs_emulator.upload_file(shipped.with_name("chicago_taxi.schema.pbtxt"),
                             f"gs://{bucket}/datasets/chicago_taxi.schema.pbtxt")

    result = run_pipeline("training", workspace["local"], data_uri=str(workspace["landing"] / SMALL_PARTITIONS[0]),
                          dataset_config=config_uri, **SMALL_DATA_HYPERPARAMETERS)
    run = _runs(workspace["local"])[-1]
    outcome = json.loads((run / "evaluate-model/evaluation/outcome.json").read_text())
    assert result.succeeded and outcome["has_champion"] and not outcome["blessed"]
    validated = json.loads((run / "validate-data/executor_output.json").read_text())["artifacts"]["schema"]
    assert validated["artifacts"][0]["metadata"]["source"] == f"gs://{bucket}/datasets/chicago_taxi.schema.pbtxt"
    eval_rows = int(outcome["metrics"]["overall"]["candidate"]["example_count"])
    refusal = (f"overall: only {eval_rows} labelled eval examples, at least {SMALL_DATA_MIN_EVAL_EXAMPLES} are "
               "needed (gate.min_eval_examples): metrics from so few rows are not trusted")
    assert eval_rows < SMALL_DATA_MIN_EVAL_EXAMPLES and outcome["failures"][0] == refusal
    output = capfd.readouterr().out
    assert "champion's auc on the same data" in output and refusal in output
    assert "registered: nothing (the model was not blessed)" in output
    registry = LocalModelRegistry(workspace["local"] / "registry")
    assert [(v.version, v.aliases) for v in registry.versions(MODEL)] == [("1", (CHALLENGER, CHAMPION))]
    # An unblessed model never reaches the endpoint: no deploy step ran, the split is untouched.
    assert not (run / "deploy-model").exists()
    assert json.loads((workspace["local"] / "endpoint/endpoint.json").read_text())["traffic_split"] == {"1": 100}

    report = _recorded_report(run)
    assert refusal in report.read_text()
    rendered = render_report(report, tmp_path / "rendered")
    assert len(rendered.plots) == 3
    assert all(rendered.pixels_near(plot, CANDIDATE_COLOUR) > 100 and rendered.pixels_near(plot, CHAMPION_COLOUR) > 100
               for plot in range(3))


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

    result = run_pipeline("training", workspace["local"], data_uri=str(batch.parent if alone else landing),
                          dataset_config=workspace["config"], **SMALL_DATA_HYPERPARAMETERS)

    assert not result.succeeded
    run = _runs(workspace["local"])[-1]
    assert not (run / "transform-data").exists() and not (run / "train-model").exists()
    summary = capfd.readouterr().out.split("=" * 72)[-2:]  # the summary, then what follows its closing line
    assert expected in summary[0] and str(batch) in summary[0]
    # The last line is the step's own error: its exception, the first anomaly's feature, rule and batch.
    last = summary[1].strip().splitlines()[-1]
    assert last.startswith("validate-data failed: DataValidationError: ") and expected in last and str(batch) in last
    assert [(v.version, v.aliases) for v in registry.versions(MODEL)] == versions_before
