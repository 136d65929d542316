"""compiled/ is what the code compiles to; Vertex accepts it; local and Vertex forms share one DAG."""

import json

import pytest
from google.auth.credentials import AnonymousCredentials
from google.protobuf import json_format
from kfp import compiler
from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines.compile import COMPILED_DIR, compile_all
from pipelines.training_pipeline import build_training_pipeline

TEMPLATE = COMPILED_DIR / "training_pipeline.json"


def test_compiled_dir_is_what_the_code_compiles_to(tmp_path):
    written = compile_all(tmp_path)
    assert {path.name for path, _ in written} == {path.name for path in COMPILED_DIR.glob("*.json")}
    for path, _ in written:
        assert path.read_bytes() == (COMPILED_DIR / path.name).read_bytes(), (
            f"compiled/{path.name} is stale: run `make compile` and commit the result")


def test_template_parses_strictly_as_a_pipeline_spec():
    spec = json_format.Parse(TEMPLATE.read_text(), pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    assert spec.pipeline_info.name == "training-pipeline"
    parameters = spec.root.input_definitions.parameters
    assert parameters["data_uri"].parameter_type == pipeline_spec_pb2.ParameterType.STRING
    assert not parameters["data_uri"].is_optional  # every run must say which data it trains on
    assert parameters["hidden_units"].parameter_type == pipeline_spec_pb2.ParameterType.LIST


def test_the_real_aiplatform_client_builds_the_request_offline_and_refuses_unknown_parameters():
    from google.cloud import aiplatform

    common = dict(template_path=str(TEMPLATE), project="test-project", location="us-central1",
                  pipeline_root="gs://test-bucket/pipeline-root", credentials=AnonymousCredentials())
    job = aiplatform.PipelineJob(
        display_name="training", job_id="training-2016-01",
        parameter_values={"data_uri": "gs://test-bucket/data/processed/2016/01/01/0000", "epochs": 3,
                          "hidden_units": [32, 16]}, **common)
    request = json_format.MessageToDict(job._gca_resource._pb)  # the request submit() would send
    values = request["runtimeConfig"]["parameterValues"]
    assert values["data_uri"] == "gs://test-bucket/data/processed/2016/01/01/0000"
    assert values["epochs"] == 3 and values["hidden_units"] == [32, 16]
    assert request["pipelineSpec"]["pipelineInfo"]["name"] == "training-pipeline"
    with pytest.raises(ValueError, match="no_such_parameter"):
        aiplatform.PipelineJob(display_name="training", parameter_values={"data_uri": "x", "no_such_parameter": 1},
                               **common)


def _dag_shape(spec: dict) -> dict:
    """Tasks, what each waits for and where each input comes from: the DAG without implementations."""
    shape = {}
    for dag_name, dag in [("root", spec["root"]["dag"])] + [
            (name, component["dag"]) for name, component in spec["components"].items() if "dag" in component]:
        for task_name, task in dag["tasks"].items():
            inputs = {}
            for kind in ("artifacts", "parameters"):
                for name, source in task.get("inputs", {}).get(kind, {}).items():
                    inputs[name] = json.dumps(source, sort_keys=True)
            shape[f"{dag_name}/{task_name}"] = {"after": sorted(task.get("dependentTasks", [])), "inputs": inputs,
                                                "condition": task.get("triggerPolicy", {}).get("condition")}
    return shape


def test_local_and_vertex_forms_have_the_same_dag(tmp_path):
    forms = {}
    for platform in ("vertex", "local"):
        path = tmp_path / f"{platform}.json"
        compiler.Compiler().compile(build_training_pipeline(platform), str(path))
        forms[platform] = json.loads(path.read_text())
    assert _dag_shape(forms["vertex"]) == _dag_shape(forms["local"])
    # ...and the forms do differ where they should: on Vertex the train step is a Vertex Training job.
    vertex_train = forms["vertex"]["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    local_train = forms["local"]["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert "custom_job" in json.dumps(vertex_train) and "custom_job" not in json.dumps(local_train)
    for platform in forms:
        outputs = forms[platform]["components"]["comp-train-model"]["outputDefinitions"]["artifacts"]
        assert set(outputs) == {"model"}


def test_the_train_custom_job_runs_as_the_pipeline_runs_service_account():
    # GCPC's default `service_account=""` is Vertex's Custom Code Service Agent (GCPC v1/custom_job/utils.py),
    # which can read every bucket of the project; the placeholder is the PipelineJob's own serviceAccount.
    # tests/pipeline/test_vertex_rehearsal.py resolves it in the CustomJob request, as Vertex does.
    from google_cloud_pipeline_components._placeholders import SERVICE_ACCOUNT_PLACEHOLDER

    spec = json.loads(TEMPLATE.read_text())
    definitions = spec["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    assert SERVICE_ACCOUNT_PLACEHOLDER == "{{$.pipeline_service_account}}"
    assert definitions["service_account"]["defaultValue"] == SERVICE_ACCOUNT_PLACEHOLDER
    assert "service_account" not in spec["root"]["dag"]["tasks"]["train-model"]["inputs"]["parameters"]
