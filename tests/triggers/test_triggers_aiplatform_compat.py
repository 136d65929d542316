"""Wire compatibility: for the same inputs, our request is the one `aiplatform.PipelineJob.submit()` sends.

Both clients talk to the same Vertex stand-in (aiplatform through its REST
transport) and read the template from the same gs:// object in the GCS
emulator. The product path never imports aiplatform; this test does, once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from trigger_helpers import PROJECT, REGION, SERVICE_ACCOUNT, TRAINING_TEMPLATE, FakeVertex

from tests.gcs_emulator import GcsEmulator
from triggers.cli import main as cli_main
from triggers.submission.errors import ParameterError
from triggers.submission.pipeline_jobs import RunRequest, VertexTarget, submit_run

PARAMETERS = {"data_uri": "gs://landing-data/data/processed/2014/03", "epochs": 3, "learning_rate": 0.01,
              "hidden_units": [32, 16], "model_name": "chicago-taxi-big-tipper"}
LABELS = {"trigger": "new-data", "partition": "2014-03-01-0000"}


@pytest.fixture
def aiplatform(fake_vertex: FakeVertex, gcs: GcsEmulator) -> Iterator[object]:
    """aiplatform pointed at the stand-ins; its process-wide settings are restored afterwards."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))
    aiplatform.init(api_endpoint=fake_vertex.url, api_transport="rest")
    yield aiplatform
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


def _pipeline_job(aiplatform, template_uri: str, pipeline_root: str, parameters: dict, job_id: str,
                  enable_caching: bool | None = None):
    from google.auth.credentials import AnonymousCredentials

    return aiplatform.PipelineJob(display_name="compat", template_path=template_uri, job_id=job_id,
                                  pipeline_root=pipeline_root, parameter_values=parameters, labels=LABELS,
                                  project=PROJECT, location=REGION, credentials=AnonymousCredentials(),
                                  enable_caching=enable_caching)


def test_our_request_matches_aiplatform_on_the_wire(aiplatform, fake_vertex: FakeVertex, gcs: GcsEmulator) -> None:
    template_uri = gcs.upload("templates", f"{uuid.uuid4().hex}/training_pipeline.json",
                              TRAINING_TEMPLATE.read_bytes())
    # A bucket aiplatform has to create: for an existing one it checks ownership through the
    # Resource Manager API, which is not reachable here.
    pipeline_root = f"gs://pipeline-root-{uuid.uuid4().hex[:12]}/runs"
    job_id = "training-pipeline-compat-20140301"

    _pipeline_job(aiplatform, template_uri, pipeline_root, PARAMETERS, job_id).submit(service_account=SERVICE_ACCOUNT)
    ours = submit_run(
        RunRequest(template_uri=template_uri, parameter_values=PARAMETERS, labels=LABELS,
                   service_account=SERVICE_ACCOUNT, job_id=job_id, display_name="compat"),
        VertexTarget(project=PROJECT, region=REGION, pipeline_root=pipeline_root, api_endpoint=fake_vertex.url))

    theirs_call, our_call = fake_vertex.calls
    assert our_call["path"] == theirs_call["path"] == f"/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"
    assert our_call["job_id"] == theirs_call["job_id"] == job_id
    # Same fields, same values (aiplatform sends numbers as protobuf doubles: 3.0 == 3).
    assert set(our_call["body"]) == set(theirs_call["body"])
    for field in ("displayName", "pipelineSpec", "runtimeConfig", "labels", "serviceAccount"):
        assert our_call["body"][field] == theirs_call["body"][field], field
    assert our_call["body"]["runtimeConfig"]["parameterValues"] == PARAMETERS
    # One id, one run: whichever client came second got 409, which we count as success.
    assert [call["status"] for call in fake_vertex.calls] == [200, 409]
    assert not ours.created


def test_both_refuse_an_unknown_parameter_ours_also_refuses_a_wrong_type(aiplatform, fake_vertex: FakeVertex,
                                                                           gcs: GcsEmulator) -> None:
    template = str(TRAINING_TEMPLATE)
    target = VertexTarget(project=PROJECT, region=REGION, pipeline_root="gs://root/runs", api_endpoint=fake_vertex.url)
    unknown = {**PARAMETERS, "learning_rat": 0.1}
    with pytest.raises(ValueError, match="learning_rat"):
        _pipeline_job(aiplatform, template, "gs://root/runs", unknown, "unknown-parameter")
    with pytest.raises(ParameterError, match="unknown parameter 'learning_rat'.*Expected: .*learning_rate"):
        submit_run(RunRequest(template, unknown, LABELS, SERVICE_ACCOUNT, "unknown-parameter"), target)

    # aiplatform builds a job with a string where the template wants an integer; Vertex would fail the run.
    mistyped = {**PARAMETERS, "epochs": "3"}
    _pipeline_job(aiplatform, template, "gs://root/runs", mistyped, "mistyped-parameter")
    with pytest.raises(ParameterError, match="parameter epochs='3'.*expected a whole number"):
        submit_run(RunRequest(template, mistyped, LABELS, SERVICE_ACCOUNT, "mistyped-parameter"), target)
    assert fake_vertex.calls == []


@pytest.mark.parametrize(("flag", "enable_caching"), [("--cache", True), ("--no-cache", False), (None, None)])
def test_the_cache_switch_sends_what_aiplatforms_enable_caching_sends(aiplatform, trigger_env, fake_vertex: FakeVertex,
                                                                      gcs: GcsEmulator, flag: str | None,
                                                                      enable_caching: bool | None) -> None:
    template_uri = gcs.upload("templates", f"{uuid.uuid4().hex}/training_pipeline.json",
                              TRAINING_TEMPLATE.read_bytes())
    pipeline_root = f"gs://pipeline-root-{uuid.uuid4().hex[:12]}/runs"
    parameters = {**PARAMETERS, "data_version": "1709251200123456"}
    _pipeline_job(aiplatform, template_uri, pipeline_root, parameters, "theirs", enable_caching).submit(
        service_account=SERVICE_ACCOUNT)
    as_text = {name: value if isinstance(value, str) else json.dumps(value) for name, value in parameters.items()}
    assert cli_main(["--template", template_uri, "--pipeline-root", pipeline_root, "--job-id", "ours",
                     "--display-name", "compat", *[f"--param={name}={text}" for name, text in as_text.items()],
                     *[f"--label={key}={value}" for key, value in LABELS.items()], *([flag] if flag else [])]) == 0

    theirs, ours = (call["body"] for call in fake_vertex.calls)
    assert ours["pipelineSpec"] == theirs["pipelineSpec"]
    assert ours["runtimeConfig"] == theirs["runtimeConfig"] and ours["labels"] == theirs["labels"]
    if enable_caching is None:  # as compiled: ingest caches, the champion lookup does not
        assert ours["pipelineSpec"] == json.loads(TRAINING_TEMPLATE.read_text())
    else:
        spec = ours["pipelineSpec"]
        def tasks(template: dict) -> list[dict]:  # every task, nested pipelines' and branches' too
            return [task for component in [template["root"], *template["components"].values()]
                    for task in component.get("dag", {}).get("tasks", {}).values()]

        assert len(tasks(spec)) == len(tasks(json.loads(TRAINING_TEMPLATE.read_text()))) > 8
        assert all(task["cachingOptions"] == {"enableCache": enable_caching} for task in tasks(spec))
