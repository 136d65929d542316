"""The Vertex form of compiled/batch_prediction_pipeline.json, rehearsed on gs:// URIs in the GCS emulator.

The model is registered in the Model Registry stand-in (real aiplatform client), with its SavedModel in
the emulator; ModelGetOp and ModelBatchPredictOp run against stand-ins of their services
(vertex_batch_stand_in.py), the batch job sending its requests to the real serving container. The other
steps run their template programs as the rehearsal runs every lightweight step.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from batch_helpers import keyed, sample_rows
from vertex_batch_stand_in import BATCH_PREDICT, GET_MODEL, BatchPredictionService, get_model

from batch_prediction.output import read_manifest
from pipelines.compile import COMPILED_DIR
from pipelines.settings import SETTINGS
from registry.model_registry import CHAMPION, VertexModelRegistry
from storage import uri as storage_uri
from tests.gcs_emulator import EMULATOR_ENV, GcsEmulator
from tests.pipeline.model_registry_stand_in import LOCATION, NAME, PROJECT, stand_in_model_registry
from tests.pipeline.vertex_rehearsal import VertexRehearsal

pytestmark = pytest.mark.emulator

TEMPLATE = COMPILED_DIR / "batch_prediction_pipeline.json"
ROWS = 130  # three requests of at most 64 instances
BAD_ROW = 129  # in the last request, with row 128


@pytest.fixture(scope="module")
def rehearsal(gcs_emulator: GcsEmulator, taxi_model_dir, tmp_path_factory: pytest.TempPathFactory):
    bucket = gcs_emulator.new_bucket("batch-rehearsal")
    scratch = tmp_path_factory.mktemp("batch_rehearsal")
    with pytest.MonkeyPatch.context() as patch, stand_in_model_registry() as model_registry:
        patch.setenv(EMULATOR_ENV, gcs_emulator.url)
        model_uri = f"gs://{bucket}/models/taxi/1"
        gcs_emulator.upload_tree(taxi_model_dir, model_uri)
        VertexModelRegistry(PROJECT, LOCATION, SETTINGS.serving_image).register(NAME, model_uri, {}, (CHAMPION,))
        header, rows = keyed(*sample_rows(ROWS))
        features = [name for name in header if name != "tips"]
        lines = []
        for row in rows:
            instance = {name: _json_value(row[header.index(name)]) for name in features}
            lines.append(json.dumps(instance))
        bad = json.loads(lines[BAD_ROW])
        lines[BAD_ROW] = json.dumps(bad | {"fare": "twelve dollars"})
        gcs_emulator.upload_bytes(f"gs://{bucket}/scoring/2014-03/part-0.jsonl", "\n".join(lines[:100]).encode())
        gcs_emulator.upload_bytes(f"gs://{bucket}/scoring/2014-03/part-1.jsonl", "\n".join(lines[100:]).encode())

        # The landing layout's CSV, as the nightly schedule hands it over: staged as JSONL by the plan step.
        csv_lines = [",".join(header)] + [",".join(row) for row in rows]
        gcs_emulator.upload_bytes(f"gs://{bucket}/landing/2014/03/01/0000/batch.csv", "\n".join(csv_lines).encode())
        service = BatchPredictionService(gcs_emulator, scratch)
        runner = VertexRehearsal(TEMPLATE, f"gs://{bucket}/pipeline_root", scratch, gcs_emulator, PROJECT, LOCATION,
                                 container_ops={GET_MODEL: get_model, BATCH_PREDICT: service})
        parameters = {"source": f"gs://{bucket}/scoring/2014-03", "destination": f"gs://{bucket}/scores",
                      "key_field": "trip_id", "run_id": "2014-03", "project": PROJECT, "location": LOCATION}
        try:
            runs = [runner.run(f"batch-prediction-rehearsal-{number}", parameters) for number in (1, 2)]
            runs.append(runner.run("batch-prediction-rehearsal-csv", parameters | {
                "source": f"gs://{bucket}/landing/2014/03/01", "run_id": "2014-03-01"}))
            yield {"bucket": bucket, "runs": runs, "service": service, "registry": model_registry}
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
        assert all("trip_id" not in instance and "fare" in instance for instance in body["instances"])
    assert service.statuses[:3] == [200, 200, 400]  # the request holding the bad row is refused whole
    job = service.jobs[0]
    assert job["instances_format"] == "jsonl" and job["key_field"] == "trip_id"
    assert [uri.rsplit("/", 1)[1] for uri in job["gcs_source_uris"]] == ["part-0.jsonl", "part-1.jsonl"]


def test_the_output_is_published_in_the_one_schema_and_a_rerun_replaces_it(rehearsal):
    destination = f"gs://{rehearsal['bucket']}/scores"
    manifest = read_manifest(destination, "2014-03")
    assert manifest["rows"] == {"predictions": 128, "errors": 2}
    [part] = manifest["files"]["predictions"]
    local = storage_uri.local_dir(storage_uri.join(destination, "2014-03", part.rsplit("/", 1)[0]))
    rows = pq.read_table(local / part.rsplit("/", 1)[1]).to_pylist()
    assert {row["key"] for row in rows} == {f"trip-{index}" for index in range(128)}
    assert {(row["model_resource_name"], row["model_version"], row["run_id"]) for row in rows} == {
        (f"projects/{PROJECT}/locations/{LOCATION}/models/1", "1", "2014-03")}
    attempts = {name.split("/")[5] for name in storage_uri.list_files(storage_uri.join(destination, "2014-03"))
                if "/attempt-" in name}
    assert len(attempts) == 1 and part.startswith(attempts.pop())  # the first run's attempt was removed


def test_landing_csv_is_staged_as_jsonl_instances_for_the_job(rehearsal):
    _succeeded(rehearsal["runs"][2])
    job = rehearsal["service"].jobs[2]
    staged = f"gs://{rehearsal['bucket']}/scores/_vertex_jobs/2014-03-01/instances/part-00000.jsonl"
    assert job["gcs_source_uris"] == [staged]
    first = json.loads(storage_uri.read_text(staged).splitlines()[0])
    assert first["trip_id"] == "trip-0" and isinstance(first["fare"], float) and first["dropoff_latitude"] is None
    assert read_manifest(f"gs://{rehearsal['bucket']}/scores", "2014-03-01")["rows"] == {
        "predictions": ROWS, "errors": 0}
