"""The CI rehearsal of the Vertex form: what a template does on Vertex AI, on this machine, twice.

Every compiled template's steps run in the order its DAG gives (tests/pipeline/vertex_rehearsal.py
says how each Vertex mechanism is stood in for): inputs and outputs are gs:// URIs in the GCS
emulator, a step sees its artifacts through a stand-in for the /gcs/ mount and nothing else, and
the registry is the Vertex backend, through the real aiplatform client, against the stand-in Model
Registry API, which hands back gs:// artifact URIs as Vertex does. The first training run registers
the champion; the second is evaluated against that champion, read from its gs:// URI, and is
registered as challenger. Locally every URI is a folder, so only a rehearsal like this shows a step
that cannot read gs:// (the second run used to fail at evaluate-model: `Path("gs://b/x")`).

Designed to grow: each template another change adds (deploy, evaluation, batch prediction, canary
decision) gets its rehearsal here, in `REHEARSED_TEMPLATES`; a template without one fails
`test_every_compiled_template_is_rehearsed`.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from contract.artifacts import OUTCOME_FILE, SCHEMA_FILE
from contract.paths import DEFAULT_DATASET_CONFIG, PROJECT_ROOT
from contract.schema import load_schema
from deploy.evidence import FEEDBACK_SCHEMA, CanaryTables
from pipelines.compile import COMPILED_DIR, pipelines_to_compile
from pipelines.settings import SETTINGS
from registry.model_registry import CHALLENGER, CHAMPION, VertexModelRegistry
from storage import bigquery_dialect
from storage import uri as storage_uri
from tests.bigquery_stand_in import BigQueryStandIn
from tests.deploy.canary_data import VertexRequestLogging
from tests.deploy.vertex_endpoint_stand_in import stand_in_vertex
from tests.gcs_emulator import EMULATOR_ENV, GcsEmulator
from tests.pipeline.conftest import SAMPLE, SMALL_DATA_HYPERPARAMETERS, SMALL_PARTITIONS
from tests.pipeline.model_registry_stand_in import LOCATION, NAME, PROJECT
from tests.pipeline.vertex_rehearsal import DEFAULT_RUN_SERVICE_ACCOUNT, RehearsedRun, VertexRehearsal

pytestmark = pytest.mark.emulator

TRAINING_TEMPLATE = COMPILED_DIR / "training_pipeline.json"
DEPLOY_TEMPLATE = COMPILED_DIR / "deploy_pipeline.json"
DECISION_TEMPLATE = COMPILED_DIR / "canary_decision_pipeline.json"
EVALUATION_TEMPLATE = COMPILED_DIR / "evaluation_pipeline.json"
REQUEST_LOG_TABLE = f"bq://{PROJECT}.mlops_logs.requests"
# batch_prediction_pipeline: tests/batch_prediction/test_batch_vertex_rehearsal.py
# The PipelineJob's serviceAccount (what the triggers set from MLOPS_SERVICE_ACCOUNT).
RUN_SERVICE_ACCOUNT = f"pipelines@{PROJECT}.iam.gserviceaccount.com"
# The decision reads the table the deploy template brings the endpoint to log into.
CANARY_TABLES = CanaryTables(REQUEST_LOG_TABLE, f"bq://{PROJECT}.canary.feedback")
REHEARSED_TEMPLATES = {"training_pipeline", "batch_prediction_pipeline", "deploy_pipeline", "canary_decision_pipeline",
                       "evaluation_pipeline"}


@pytest.fixture(scope="module")
def rehearsal(gcs_emulator: GcsEmulator, tmp_path_factory: pytest.TempPathFactory):
    """Two training runs of the compiled template on the Vertex form, shared by the tests below."""
    bucket = gcs_emulator.new_bucket("vertex-rehearsal")
    bigquery = BigQueryStandIn(tmp_path_factory.mktemp("bigquery"))
    with pytest.MonkeyPatch.context() as patch, stand_in_vertex() as model_registry, contextlib.closing(bigquery):
        patch.setenv(EMULATOR_ENV, gcs_emulator.url)
        patch.setenv("BIGQUERY_EMULATOR_HOST", bigquery.url)
        for partition in SMALL_PARTITIONS:
            gcs_emulator.upload_file(SAMPLE / partition / "batch.csv",
                                     f"gs://{bucket}/data/processed/{partition}/batch.csv")
        # The data set config from Cloud Storage, its schema beside it: a new data set is an upload and
        # a parameter. Two small partitions hold fewer eval rows than the shipped gate asks for.
        shipped = PROJECT_ROOT / DEFAULT_DATASET_CONFIG
        config_text = shipped.read_text()
        assert "min_eval_examples: 200" in config_text
        config_uri = gcs_emulator.upload_bytes(f"gs://{bucket}/configs/taxi.yaml",
                                               config_text.replace("min_eval_examples: 200",
                                                                   "min_eval_examples: 100").encode())
        gcs_emulator.upload_file(shipped.with_name("chicago_taxi.schema.pbtxt"),
                                 f"gs://{bucket}/configs/chicago_taxi.schema.pbtxt")

        runner = VertexRehearsal(TRAINING_TEMPLATE, f"gs://{bucket}/pipeline_root",
                                 tmp_path_factory.mktemp("rehearsal"), gcs_emulator, PROJECT, LOCATION)
        parameters = {"data_uri": f"gs://{bucket}/data/processed", "dataset_config": config_uri,
                      "project": PROJECT, "location": LOCATION, **SMALL_DATA_HYPERPARAMETERS}
        first = runner.run("training-pipeline-rehearsal-1", parameters, service_account=RUN_SERVICE_ACCOUNT)
        # Another seed: the same data and parameters again would be the same model, and not registered twice.
        second = runner.run("training-pipeline-rehearsal-2", parameters | {"seed": 7}) if not first.failure else None
        logging = {"after_training": _request_logging(model_registry)}
        # The deploy template on its own, after both: the canary (version 2) is deployed already; the endpoint
        # is brought to the environment's request log table.
        deploy = VertexRehearsal(DEPLOY_TEMPLATE, f"gs://{bucket}/pipeline_root", tmp_path_factory.mktemp("deploy"),
                                 gcs_emulator, PROJECT, LOCATION).run(
            "deploy-pipeline-rehearsal", {"model_name": NAME, "version": "2", "project": PROJECT,
                                          "location": LOCATION, "request_log_table": REQUEST_LOG_TABLE,
                                          "request_log_sampling_rate": 0.5}) if second and not second.failure else None
        logging["after_deploy"] = _request_logging(model_registry)
        # Then traffic through the endpoint (logged to BigQuery as its request-response logging would), and the
        # canary decision at its last step: promoted on Cloud Monitoring's and the log's evidence.
        decision, champion_after_training, endpoint_after_training = None, None, None
        if deploy and not deploy.failure:
            from deploy.vertex import VertexBackend
            from serving.testing import demo_instances

            champion_after_training = VertexModelRegistry(PROJECT, LOCATION, "").get(NAME, CHAMPION).version
            endpoint_after_training = model_registry.endpoint_state()
            model_registry.request_logging = VertexRequestLogging(bigquery.local_dir, CANARY_TABLES.dotted(
                CANARY_TABLES.request_log))
            with bigquery_dialect.connected([PROJECT], bigquery.local_dir) as connection:  # as Terraform makes it
                bigquery_dialect.run(connection, f"CREATE SCHEMA `{PROJECT}.canary`")
                bigquery_dialect.run(connection, f"CREATE TABLE `{CANARY_TABLES.dotted(CANARY_TABLES.feedback)}` "
                                                 f"({FEEDBACK_SCHEMA})")
            endpoint = VertexBackend(PROJECT, LOCATION, NAME, NAME)
            for instance in demo_instances(60, seed=3):
                endpoint.predict([instance])
            decision = VertexRehearsal(DECISION_TEMPLATE, f"gs://{bucket}/pipeline_root",
                                       tmp_path_factory.mktemp("decision"), gcs_emulator, PROJECT, LOCATION).run(
                "canary-decision-rehearsal", {"model_name": NAME, "project": PROJECT, "location": LOCATION,
                                              "request_log_table": CANARY_TABLES.request_log,
                                              "feedback_table": CANARY_TABLES.feedback, "step_weights": [10],
                                              "min_bake_minutes": 0.0, "min_requests": 3, "min_labelled": 0})
        # Version 1 against the champion on the same partitions, through training's own evaluate component.
        evaluation = VertexRehearsal(EVALUATION_TEMPLATE, f"gs://{bucket}/pipeline_root",
                                     tmp_path_factory.mktemp("evaluation"), gcs_emulator, PROJECT, LOCATION).run(
            "evaluation-rehearsal", {"data_uri": f"gs://{bucket}/data/processed", "dataset_config": config_uri,
                                     "candidate": "1", "baseline": CHAMPION, "project": PROJECT,
                                     "location": LOCATION}) if second and not second.failure else None
        yield {"evaluation": evaluation, "bucket": bucket, "config": config_uri, "runs": [first, second],
               "registry": model_registry, "bigquery": bigquery,
               "spec": runner.spec, "deploy": deploy, "decision": decision,
               "champion_after_training": champion_after_training, "endpoint_after_training": endpoint_after_training,
               "request_logging": logging}


def _request_logging(fake) -> dict | None:
    from tests.stand_in_http import message_json

    return message_json(fake.the_endpoint()).get("predictRequestResponseLoggingConfig") if fake.endpoints else None


def _succeeded(run: RehearsedRun | None) -> RehearsedRun:
    assert run is not None, "the first run failed, so the second never started"
    assert not run.failure, f"{run.job_name} stopped at {run.failure}"
    return run


def _executor_tasks(spec: dict) -> dict[str, set[str]]:
    """Every task that runs a program -> the tasks it waits for, over the root DAG and its sub-DAGs."""
    found = {}
    for dag in [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]:
        for name, task in dag["tasks"].items():
            if "executorLabel" in spec["components"][task["componentRef"]["name"]]:
                found[name] = set(task.get("dependentTasks", []))
    return found


def test_every_compiled_template_is_rehearsed():
    missing = set(pipelines_to_compile()) - REHEARSED_TEMPLATES
    assert not missing, (f"templates {sorted(missing)} have no Vertex rehearsal: add one to "
                         "tests/pipeline/test_vertex_rehearsal.py (REHEARSED_TEMPLATES)")


def test_every_step_of_the_template_runs_in_its_dag_order_both_times(rehearsal):
    expected = _executor_tasks(rehearsal["spec"])
    for run in map(_succeeded, rehearsal["runs"]):
        assert set(run.steps) == set(expected) and not run.skipped
        ran = [task.rsplit("/", 1)[-1] for task in run.order]
        for task, waits_for in expected.items():
            assert all(ran.index(before) < ran.index(task) for before in waits_for), (task, ran)
        assert run.steps["register-model"].task == "condition-1/register-model"  # inside dsl.If, which held


def test_steps_read_and_write_only_gs_uris_seen_through_the_mount(rehearsal):
    bucket = rehearsal["bucket"]
    for run in map(_succeeded, rehearsal["runs"]):
        for name, step in run.steps.items():
            for artifact in [*step.inputs.values(), *step.outputs.values()]:
                assert artifact["uri"].startswith(f"gs://{bucket}/pipeline_root/"), (name, artifact)
                assert artifact["path"] == str(step.mount / artifact["uri"].removeprefix("gs://")), (name, artifact)
            for output, artifact in step.outputs.items():
                assert artifact["uri"].startswith(f"gs://{bucket}/pipeline_root/{run.job_name}/{name}/"), output
        model = run.steps["train-model"].outputs["model"]["uri"]
        assert {"saved_model.pb", "input_spec.json"} <= {
            name.rsplit("/", 1)[-1] for name in storage_uri.list_files(model)}, "the model never reached the emulator"


def test_the_train_step_runs_its_custom_job_program_in_the_pipeline_image(rehearsal):
    steps = _succeeded(rehearsal["runs"][0]).steps
    assert steps["train-model"].program.form == "Vertex Training CustomJob"
    assert {step.program.image for step in steps.values()} == {SETTINGS.pipeline_image}


def test_the_custom_job_runs_as_the_runs_service_account_never_the_custom_code_service_agent(rehearsal):
    # An empty CustomJobSpec.service_account means Vertex's Custom Code Service Agent, which reads every
    # bucket of the project: the CustomJob must run as the PipelineJob's own identity.
    first, second = (_succeeded(run) for run in rehearsal["runs"])
    assert first.steps["train-model"].custom_job["job_spec"]["service_account"] == RUN_SERVICE_ACCOUNT
    # A run that names none: Vertex's default for the pipeline (the Compute Engine default account), still not "".
    assert second.steps["train-model"].custom_job["job_spec"]["service_account"] == DEFAULT_RUN_SERVICE_ACCOUNT
    assert first.steps["train-model"].custom_job["job_spec"]["worker_pool_specs"][0]["container_spec"][
        "image_uri"] == SETTINGS.pipeline_image


def test_the_first_run_registers_its_model_as_champion_from_its_gs_uri(rehearsal):
    first = _succeeded(rehearsal["runs"][0])
    assert first.steps["lookup-champion"].output_parameters["champion_uri"] == ""
    model_uri = first.steps["train-model"].outputs["model"]["uri"]
    registered = first.steps["register-model"].output_parameters
    assert registered["version"] == "1" and {CHALLENGER, CHAMPION} <= set(registered["aliases"].split(","))
    assert rehearsal["registry"].uploads[0]["model"]["artifactUri"] == model_uri


def test_the_second_run_is_evaluated_against_the_champion_and_registered_as_challenger(rehearsal):
    first, second = (_succeeded(run) for run in rehearsal["runs"])
    champion_uri = first.steps["train-model"].outputs["model"]["uri"]
    assert second.steps["lookup-champion"].output_parameters["champion_uri"] == champion_uri
    assert second.steps["evaluate-model"].parameters["champion_uri"] == champion_uri

    evaluation = second.steps["evaluate-model"].outputs["evaluation"]["uri"]
    outcome = json.loads(storage_uri.read_text(storage_uri.join(evaluation, OUTCOME_FILE)))
    assert outcome["has_champion"] and outcome["blessed"], outcome["failures"]
    assert set(outcome["metrics"]["overall"]) == {"candidate", "champion"}

    registered = second.steps["register-model"].output_parameters
    assert registered["version"] == "2" and CHAMPION not in registered["aliases"].split(",")
    registry = VertexModelRegistry(PROJECT, LOCATION, SETTINGS.serving_image)
    assert rehearsal["champion_after_training"] == "1"  # (the canary decision rehearsed after may promote 2)
    challenger = registry.get(NAME, CHALLENGER)
    assert (challenger.version, challenger.uri) == ("2", second.steps["train-model"].outputs["model"]["uri"])


def test_the_data_set_config_and_its_schema_were_read_from_cloud_storage(rehearsal):
    run = _succeeded(rehearsal["runs"][0])
    schema = run.steps["validate-data"].outputs["schema"]
    beside_config = storage_uri.beside(rehearsal["config"], "chicago_taxi.schema.pbtxt")
    assert schema["metadata"]["source"] == beside_config
    assert load_schema(storage_uri.join(schema["uri"], SCHEMA_FILE)) == load_schema(beside_config)
    assert run.steps["transform-data"].inputs["schema"]["uri"] == schema["uri"]  # the schema validation used


def test_the_first_run_deploys_at_100_percent_and_the_second_as_a_10_percent_canary(rehearsal):
    first, second = (_succeeded(run) for run in rehearsal["runs"])
    assert first.steps["deploy-model"].task == "condition-1/condition-2/condition-3/deploy-pipeline/deploy-model"
    assert first.steps["deploy-model"].output_parameters["transition"] == "first"
    assert second.steps["deploy-model"].output_parameters["transition"] == "canary"
    assert second.steps["deploy-model"].output_parameters["smoke_test"].startswith("smoke test passed")
    assert rehearsal["endpoint_after_training"] == {"split": {"1": 90, "2": 10}, "deployed": ["1", "2"]}


def test_the_deploy_template_alone_is_a_no_op_for_a_deployed_version(rehearsal):
    deploy = _succeeded(rehearsal["deploy"])
    assert deploy.steps["deploy-model"].output_parameters["transition"] == "no-op"
    assert deploy.steps["deploy-model"].program.image == SETTINGS.pipeline_image


def test_the_endpoint_logs_requests_as_the_templates_parameters_say(rehearsal):
    """Defect 6 through the compiled templates: training's nested deploy creates the endpoint with request-response
    logging (no table given: the project, Vertex makes the dataset), and the deploy template's parameters bring it
    to the environment's table and sampling rate."""
    _succeeded(rehearsal["deploy"])
    assert rehearsal["request_logging"] == {
        "after_training": {"enabled": True, "samplingRate": 1.0, "bigqueryDestination": {"outputUri": f"bq://{PROJECT}"}},
        "after_deploy": {"enabled": True, "samplingRate": 0.5, "bigqueryDestination": {"outputUri": REQUEST_LOG_TABLE}}}


def test_the_canary_decision_template_promotes_on_monitoring_and_bigquery_evidence(rehearsal):
    decision = _succeeded(rehearsal["decision"])
    step = decision.steps["decide-canary"]
    assert step.output_parameters["Output"] == "promote"
    metrics = step.outputs["metrics"]["metadata"]
    assert metrics["canary_requests"] >= 3 and metrics["prediction_parity_value"] == 0.0
    assert {"bigquery.jobs.insert", "bigquery.jobs.getQueryResults"} <= set(rehearsal["bigquery"].server.methods)
    assert rehearsal["bigquery"].server.reply_problems == []
    assert rehearsal["registry"].endpoint_state() == {"split": {"2": 100}, "deployed": ["2"]}
    assert VertexModelRegistry(PROJECT, LOCATION, "").get(NAME, CHAMPION).version == "2"


def test_the_evaluation_template_runs_trainings_own_evaluate_component_on_registered_versions(rehearsal):
    evaluation, first = _succeeded(rehearsal["evaluation"]), _succeeded(rehearsal["runs"][0])
    step = evaluation.steps["evaluate-model"]
    assert step.program.source == first.steps["evaluate-model"].program.source  # the same component, not a copy
    resolved = evaluation.steps["resolve-versions"]
    assert resolved.output_parameters["candidate_version"] == "1"
    champion = VertexModelRegistry(PROJECT, LOCATION, "").get(NAME, CHAMPION)
    assert step.parameters["champion_uri"] == champion.uri and step.parameters["champion_version"] == champion.version
    assert {"saved_model.pb", "input_spec.json"} <= {
        name.rsplit("/", 1)[-1] for name in storage_uri.list_files(resolved.outputs["candidate_model"]["uri"])}
    outcome = json.loads(storage_uri.read_text(storage_uri.join(step.outputs["evaluation"]["uri"], OUTCOME_FILE)))
    assert outcome["has_champion"] and set(outcome["metrics"]["overall"]) == {"candidate", "champion"}
