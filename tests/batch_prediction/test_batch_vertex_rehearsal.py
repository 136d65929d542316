"""The Vertex form of compiled/batch_prediction_pipeline.json, rehearsed on gs:// URIs in the GCS emulator.

The model is registered in the Model Registry stand-in (real aiplatform client), with its SavedModel in
the emulator; ModelGetOp and ModelBatchPredictOp run against stand-ins of their services
(vertex_batch_stand_in.py), the batch job (built by GCPC's launcher code, held to aiplatform's discovery
document) sending its requests to the real serving container and writing its results as Vertex does for a
custom container: several shuffled result files, a failed request only counted in errors_stats. The other
steps run their template programs as the rehearsal runs every lightweight step. Every output and error
row is checked against the source row it names; the nightly's case (no key_field) against the local form.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batch_helpers import keyed, sample_rows
from vertex_batch_stand_in import BATCH_PREDICT, GET_MODEL, RESULT_FILES, BatchPredictionService, get_model

from batch_prediction.output import ERRORS, PREDICTIONS, output_files, read_manifest
from batch_prediction.predictor import ModelIdentity, predict_source
from batch_prediction.vertex_job import STAGED_KEY_FIELD, read_staged_key
from pipelines.compile import COMPILED_DIR
from pipelines.settings import SETTINGS
from registry.model_registry import CHAMPION, VertexModelRegistry
from storage import uri as storage_uri
from tests.gcs_emulator import EMULATOR_ENV, GcsEmulator
from tests.pipeline.model_registry_stand_in import LOCATION, NAME, PROJECT, stand_in_model_registry
from tests.pipeline.vertex_rehearsal import VertexRehearsal

pytestmark = pytest.mark.emulator

TEMPLATE = COMPILED_DIR / "batch_prediction_pipeline.json"
ROWS = 130  # JSONL: three requests of at most 64 instances
BAD_ROW = 129  # in the last request, with row 128: the container refuses that request whole
# The landing CSV (no key_field, as the nightly runs): data rows 3 and 10 are malformed (the format refuses
# them before the job), so the 22nd data row is line 23 of the file; data row 100 has text for a number,
# so the container refuses the second request (staged rows 64..127 = data rows 66..129); the third request
# (data rows 130..149) times out on Vertex's side.
CSV_ROWS = 150
MALFORMED = {3: "extra", 10: "short"}
BAD_VALUE_ROW = 100
REFUSED_REQUEST = range(66, 130)
TIMED_OUT_REQUEST = range(130, 150)


@pytest.fixture(scope="module")
def rehearsal(gcs_emulator: GcsEmulator, taxi_model_dir, tmp_path_factory: pytest.TempPathFactory):
    bucket = gcs_emulator.new_bucket("batch-rehearsal")
    scratch = tmp_path_factory.mktemp("batch_rehearsal")
    with pytest.MonkeyPatch.context() as patch, stand_in_model_registry() as model_registry:
        patch.setenv(EMULATOR_ENV, gcs_emulator.url)
        model_uri = f"gs://{bucket}/models/taxi/1"
        gcs_emulator.upload_tree(taxi_model_dir, model_uri)
        VertexModelRegistry(PROJECT, LOCATION, SETTINGS.serving_image).register(NAME, model_uri, {}, (CHAMPION,))
        header, rows = keyed(*sample_rows(CSV_ROWS))
        features = [name for name in header if name not in ("trip_id", "tips")]
        lines = [json.dumps({"trip_id": row[0]} | {name: _json_value(row[header.index(name)]) for name in features})
                 for row in rows[:ROWS]]
        lines[BAD_ROW] = json.dumps(json.loads(lines[BAD_ROW]) | {"fare": "twelve dollars"})
        gcs_emulator.upload_bytes(f"gs://{bucket}/scoring/2014-03/part-0.jsonl", "\n".join(lines[:100]).encode())
        gcs_emulator.upload_bytes(f"gs://{bucket}/scoring/2014-03/part-1.jsonl", "\n".join(lines[100:]).encode())

        # The landing layout's CSV, as the nightly schedule hands it over: staged as JSONL by the plan step.
        cells = [list(row) for row in rows]
        cells[BAD_VALUE_ROW][header.index("fare")] = "twelve dollars"
        cells[3].append("one too many")
        cells[10] = ["trip-10", "1.5"]
        csv_lines = [",".join(header)] + [",".join(row) for row in cells]
        landing = f"gs://{bucket}/landing/2014/03/01/0000/batch.csv"
        gcs_emulator.upload_bytes(landing, "\n".join(csv_lines).encode())
        service = BatchPredictionService(gcs_emulator, scratch, TEMPLATE, timed_out=frozenset({(2, 2)}))
        runner = VertexRehearsal(TEMPLATE, f"gs://{bucket}/pipeline_root", scratch, gcs_emulator, PROJECT, LOCATION,
                                 container_ops={GET_MODEL: get_model, BATCH_PREDICT: service})
        parameters = {"source": f"gs://{bucket}/scoring/2014-03", "destination": f"gs://{bucket}/scores",
                      "key_field": "trip_id", "run_id": "2014-03", "project": PROJECT, "location": LOCATION}
        nightly = {"source": f"gs://{bucket}/landing/2014/03/01", "destination": f"gs://{bucket}/scores",
                   "run_id": "2014-03-01", "project": PROJECT, "location": LOCATION}
        try:
            runs = [runner.run(f"batch-prediction-rehearsal-{number}", parameters) for number in (1, 2)]
            runs.append(runner.run("batch-prediction-rehearsal-nightly", nightly))
            yield {"bucket": bucket, "runs": runs, "service": service, "registry": model_registry,
                   "landing": landing, "csv_rows": rows}
        finally:
            service.close()


def _json_value(text: str):
    if text == "":
        return None
    try:
        return float(text) if any(mark in text for mark in ".eE") else int(text)
    except ValueError:
        return text


def _succeeded(run):
    assert not run.failure, f"{run.job_name} stopped at {run.failure}"
    return run


def _published(destination: str, run_id: str, table: str) -> list[dict]:
    return [row for uri in output_files(destination, run_id, table)
            for row in pq.read_table(pa.BufferReader(storage_uri.read_bytes(uri))).to_pylist()]


def test_the_dag_runs_resolve_plan_get_predict_publish(rehearsal):
    for run in map(_succeeded, rehearsal["runs"]):
        position = {task: index for index, task in enumerate(run.order)}
        assert set(position) == set(run.steps) and not run.skipped
        assert position["resolve-batch-model"] < position["model-get"] < position["model-batch-predict"]
        assert position["plan-batch-job"] < position["model-batch-predict"] < position["publish-batch-job-output"]
        assert run.steps["model-get"].parameters["model_name"] == "1@champion"  # ModelGetOp("ID@alias")


def test_the_batch_job_requests_reach_the_serving_container_in_its_shape(rehearsal):
    service = rehearsal["service"]
    assert [len(body["instances"]) for body in service.requests[:3]] == [64, 64, 2]
    for body in service.requests:
        assert set(body) == {"instances"}
        assert all("fare" in instance and not {"trip_id", STAGED_KEY_FIELD} & set(instance)
                   for instance in body["instances"])  # the key field is taken out of what the model sees
    assert service.statuses[:3] == [200, 200, 400]  # the request holding the bad row is refused whole
    job = service.jobs[0]  # the BatchPredictionJob GCPC's launcher would create, as JSON
    assert job["inputConfig"]["instancesFormat"] == "jsonl"
    assert job["instanceConfig"] == {"instanceType": "object", "keyField": STAGED_KEY_FIELD, "includedFields": [],
                                     "excludedFields": []}
    assert [uri.rsplit("/", 1)[1] for uri in job["inputConfig"]["gcsSource"]["uris"]] == [
        "part-00000.jsonl", "part-00001.jsonl"]  # both source files, staged
    assert job["dedicatedResources"]["maxReplicaCount"] == 2 and job["model"].endswith("/models/1@1")


def test_results_come_in_several_files_in_no_fixed_order(rehearsal):
    directory = rehearsal["service"].outputs[0]
    files = storage_uri.list_files(directory)
    results = [name for name in files if "/prediction.results-" in name]
    assert len(results) == RESULT_FILES and len(files) == RESULT_FILES + 1
    rows = [read_staged_key(json.loads(line)["key"])[1]
            for name in results for line in storage_uri.read_text(name).splitlines()]
    assert sorted(rows) != rows and len(rows) == 128
    [statistics] = [name for name in files if "/prediction.errors_stats-" in name]
    assert storage_uri.read_text(statistics).startswith(
        "('Post request fails. Cannot get predictions. Error: Exceeded retries: Non-OK result 400 (")


def test_the_output_is_published_in_the_one_schema_and_a_rerun_replaces_it(rehearsal):
    destination = f"gs://{rehearsal['bucket']}/scores"
    manifest = read_manifest(destination, "2014-03")
    assert manifest["rows"] == {"predictions": 128, "errors": 2}
    assert manifest["metrics"] == {"rows_read": 130, "rows_predicted": 128, "rows_failed": 2,
                                        "rows_not_returned": 2, "unreadable_lines": 0}
    rows = _published(destination, "2014-03", PREDICTIONS)
    assert {row["key"] for row in rows} == {f"trip-{index}" for index in range(128)}
    assert {(row["model_resource_name"], row["model_version"], row["run_id"]) for row in rows} == {
        (f"projects/{PROJECT}/locations/{LOCATION}/models/1", "1", "2014-03")}
    # The two rows of the refused request: named by key and source row, with the reason Vertex gave.
    errors = sorted(_published(destination, "2014-03", ERRORS), key=lambda error: error["key"])
    assert [(error["key"], error["shard"].rsplit("/", 1)[1], error["row"]) for error in errors] == [
        ("trip-128", "part-1.jsonl", 28), ("trip-129", "part-1.jsonl", 29)]
    assert "Non-OK result 400" in errors[0]["reason"] and "'fare' must be a number" in errors[0]["reason"]
    [part] = manifest["files"]["predictions"]
    attempts = {name.split("/")[5] for name in storage_uri.list_files(storage_uri.join(destination, "2014-03"))
                if "/attempt-" in name}
    assert len(attempts) == 1 and part.startswith(attempts.pop())  # the first run's attempt was removed


def test_the_nightly_case_keys_every_row_by_its_source_row_as_the_local_form_does(rehearsal, taxi_model, tmp_path):
    """Issue 18, defects 1 and 2, end to end without key_field: `SHARD#ROW` with ROW counting every data row,
    whichever result file a row came back in; each row sent and not returned in the errors output, named by
    its source row, with the job's reasons; the same keys and scores as the local form gives."""
    _succeeded(rehearsal["runs"][2])
    destination, landing = f"gs://{rehearsal['bucket']}/scores", rehearsal["landing"]
    job = rehearsal["service"].jobs[2]
    assert job["instanceConfig"]["keyField"] == STAGED_KEY_FIELD
    predicted = {row["key"]: row["prediction"] for row in _published(destination, "2014-03-01", PREDICTIONS)}
    errors = {error["key"]: error for error in _published(destination, "2014-03-01", ERRORS)}
    sent_and_answered = set(range(66)) - set(MALFORMED)
    assert set(predicted) == {f"{landing}#{row}" for row in sent_and_answered}
    assert set(predicted) | set(errors) == {f"{landing}#{row}" for row in range(CSV_ROWS)}  # each row, once
    assert not set(predicted) & set(errors)
    for row in MALFORMED:
        assert (errors[f"{landing}#{row}"]["row"], errors[f"{landing}#{row}"]["line"]) == (row, row + 2)
        assert "expected 19 (the header's)" in errors[f"{landing}#{row}"]["reason"]
    for row in [*REFUSED_REQUEST, *TIMED_OUT_REQUEST]:
        error = errors[f"{landing}#{row}"]
        assert (error["shard"], error["row"]) == (landing, row)
        assert error["reason"].startswith("sent to the batch job but not in its output; the job's error statistics:")
        assert "Non-OK result 400" in error["reason"] and "(64 instances)" in error["reason"]
        assert "Non-OK result 504 (upstream request timeout) (20 instances)" in error["reason"]
    assert read_manifest(destination, "2014-03-01")["metrics"] == {
        "rows_read": 150, "rows_predicted": 64, "rows_failed": 86, "rows_not_returned": 84, "unreadable_lines": 0}

    # The local form over the same gs:// file: the same keys, the same scores (it fails only the bad row).
    local = predict_source(taxi_model, ModelIdentity("local", "1"), landing, str(tmp_path / "local"), "2014-03-01")
    assert local.rows_failed == len(MALFORMED) + 1
    local_scores = {row["key"]: row["prediction"]
                    for row in pq.read_table(tmp_path / "local" / "2014-03-01" / "predictions").to_pylist()}
    assert set(local_scores) == {f"{landing}#{row}" for row in range(CSV_ROWS)} - {
        f"{landing}#{row}" for row in [*MALFORMED, BAD_VALUE_ROW]}
    np.testing.assert_allclose([predicted[key] for key in sorted(predicted)],
                               [local_scores[key] for key in sorted(predicted)], rtol=1e-5)
    assert f"{landing}#21" in predicted  # the 22nd data row, line 23 of the file
