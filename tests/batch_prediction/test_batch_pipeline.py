"""The batch prediction template: compiled strictly, accepted by aiplatform offline, run locally by runner.py."""

from __future__ import annotations

import duckdb
import pytest
from batch_helpers import keyed, sample_rows, write_csv
from google.auth.credentials import AnonymousCredentials
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from batch_prediction.local_bigquery import connect, database_path
from pipelines.compile import COMPILED_DIR
from pipelines.local_run import run_local_cli
from registry.model_registry import LocalModelRegistry, register_blessed_model

TEMPLATE = COMPILED_DIR / "batch_prediction_pipeline.json"


def test_template_parses_strictly_and_names_its_steps():
    spec = json_format.Parse(TEMPLATE.read_text(), pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    assert spec.pipeline_info.name == "batch-prediction-pipeline"
    parameters = spec.root.input_definitions.parameters
    assert not parameters["source"].is_optional and not parameters["destination"].is_optional
    assert parameters["version_or_alias"].default_value.string_value == "champion"
    assert parameters["max_replica_count"].parameter_type == pipeline_spec_pb2.ParameterType.NUMBER_INTEGER
    tasks = spec.root.dag.tasks
    assert tasks["model-get"].inputs.parameters["model_name"].task_output_parameter.output_parameter_key == "model_ref"
    assert tasks["model-batch-predict"].inputs.artifacts["model"].task_output_artifact.producer_task == "model-get"
    assert [tasks[name].task_info.name for name in sorted(tasks)] == [
        "4. Batch predict (Vertex AI)", "3. Get the model", "2. Plan the job", "5. Publish in the one schema",
        "1. Resolve the model"]


def test_the_real_aiplatform_client_accepts_the_template_offline():
    from google.cloud import aiplatform

    common = dict(template_path=str(TEMPLATE), project="test-project", location="us-central1",
                  pipeline_root="gs://test-bucket/pipeline-root", credentials=AnonymousCredentials())
    job = aiplatform.PipelineJob(display_name="nightly-scores", parameter_values={
        "source": "bq://test-project.taxi.trips_2016_01_01", "destination": "bq://test-project.scores",
        "key_field": "unique_key", "run_id": "2016-01-01", "max_replica_count": 4}, **common)
    values = json_format.MessageToDict(job._gca_resource._pb)["runtimeConfig"]["parameterValues"]
    assert values["source"] == "bq://test-project.taxi.trips_2016_01_01" and values["max_replica_count"] == 4
    with pytest.raises(ValueError, match="data_uri"):
        aiplatform.PipelineJob(display_name="x", parameter_values={"source": "s", "destination": "d",
                                                                   "data_uri": "x"}, **common)


@pytest.mark.e2e
def test_runner_runs_the_local_form_from_bigquery_to_bigquery(taxi_model_dir, tmp_path, capsys):
    """`runner.py --run local --pipeline batch_prediction` with bq:// in and out: DuckDB under the local dir."""
    register_blessed_model(LocalModelRegistry(tmp_path / "registry"), "chicago-taxi-big-tipper",
                           str(taxi_model_dir), {})
    header, rows = keyed(*sample_rows(25))
    write_csv(tmp_path / "trips.csv", header, rows)
    with connect("taxi-project", tmp_path) as connection:
        connection.execute("CREATE SCHEMA raw")
        connection.execute(f"CREATE TABLE raw.trips AS SELECT * FROM read_csv('{tmp_path / 'trips.csv'}')")

    texts = {"source": "bq://taxi-project.raw.trips", "destination": "bq://taxi-project.scores",
             "key_field": "trip_id", "run_id": "2014-03-01"}
    assert run_local_cli("batch_prediction", texts, None, None, local_dir=tmp_path) == 0
    summary = capsys.readouterr().out
    assert "rows: 25 predicted, 0 in errors" in summary and "output: bq://taxi-project.scores" in summary
    with duckdb.connect(str(database_path("taxi-project", tmp_path)), read_only=True) as connection:
        rows_out = connection.execute("SELECT key, model_version, run_id FROM scores.predictions ORDER BY key"
                                      ).fetchall()
    assert len(rows_out) == 25 and rows_out[0] == ("trip-0", "1", "2014-03-01")
    # The console's batch page reads the run as the summary tells it: counts, model and where the output is.
    from console.state import LocalState, batch_runs

    state = LocalState(tmp_path)
    [batch] = batch_runs(state, state.runs())
    assert (batch.run.state, batch.rows_predicted, batch.rows_failed) == ("succeeded", 25, 0)
    assert batch.output == "bq://taxi-project.scores" and batch.output_link is None and not batch.notes
    assert batch.model == f"version 1 of {tmp_path / 'registry' / 'chicago-taxi-big-tipper'}"


def test_runner_refuses_training_flags_for_batch_prediction(capsys):
    assert run_local_cli("batch_prediction", {"source": "x", "destination": "y"}, "data/processed", None) == 2
    assert "--data-uri: pipeline 'batch_prediction' has no parameter data_uri" in capsys.readouterr().err


def test_runner_names_an_empty_destination_before_anything_runs(capsys):
    assert run_local_cli("batch_prediction", {"source": "data/processed/2014/03", "destination": ""}, None, None) == 2
    assert "destination is empty (set by: --param); expected a folder, a gs:// prefix or bq://" in \
        capsys.readouterr().err
