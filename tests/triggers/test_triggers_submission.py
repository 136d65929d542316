"""The submission module against the Vertex AI stand-in, with the real compiled training template."""

from __future__ import annotations

import json
import uuid

import pytest
from trigger_helpers import PROJECT, REGION, SERVICE_ACCOUNT, TRAINING_TEMPLATE, FakeVertex

from serving.processes import free_loopback_port
from tests.gcs_emulator import GcsEmulator
from triggers.submission import templates, transport
from triggers.submission.errors import InvalidRequest, ParameterError, TemplateUnavailable, TransientError
from triggers.submission.pipeline_jobs import JOB_ID_PATTERN, RunRequest, VertexTarget, make_job_id, submit_run

PIPELINE_ROOT = "gs://pipeline-root/runs"
DATA_URI = "gs://landing-data/data/processed/2014/03"


def target(endpoint: str) -> VertexTarget:
    return VertexTarget(project=PROJECT, region=REGION, pipeline_root=PIPELINE_ROOT, api_endpoint=endpoint,
                        template_cache_seconds=0)


def run_request(**overrides: object) -> RunRequest:
    fields = {"template_uri": str(TRAINING_TEMPLATE), "parameter_values": {"data_uri": DATA_URI},
              "labels": {"trigger": "test", "partition": "2014-03"}, "service_account": SERVICE_ACCOUNT,
              "job_id": "training-pipeline-test-20140301"}
    fields.update(overrides)
    return RunRequest(**fields)


def test_create_request_carries_template_parameters_labels_account_and_id(fake_vertex: FakeVertex) -> None:
    run = run_request(parameter_values={"data_uri": DATA_URI, "epochs": 3, "learning_rate": 0.01,
                                        "hidden_units": [32, 16]})
    result = submit_run(run, target(fake_vertex.url))

    (call,) = fake_vertex.calls
    assert call["path"] == f"/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"
    assert call["job_id"] == "training-pipeline-test-20140301"
    body = call["body"]
    assert body["pipelineSpec"] == json.loads(TRAINING_TEMPLATE.read_text())
    assert body["runtimeConfig"] == {"gcsOutputDirectory": PIPELINE_ROOT, "parameterValues": {
        "data_uri": DATA_URI, "epochs": 3, "learning_rate": 0.01, "hidden_units": [32, 16]}}
    assert body["labels"] == {"trigger": "test", "partition": "2014-03"}
    assert body["serviceAccount"] == SERVICE_ACCOUNT
    assert result.created
    assert result.job_name == f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/training-pipeline-test-20140301"
    assert "Authorization" not in call["headers"]  # plain http is a local stand-in: no token, ever


def test_an_https_endpoint_needs_google_credentials(fake_vertex: FakeVertex, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(transport, "_sessions", {})
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    with pytest.raises(InvalidRequest, match="no Google credentials to call https://us-central1-aiplatform"):
        submit_run(run_request(), target("https://us-central1-aiplatform.googleapis.com"))


def test_already_exists_counts_as_success(fake_vertex: FakeVertex) -> None:
    first = submit_run(run_request(), target(fake_vertex.url))
    second = submit_run(run_request(), target(fake_vertex.url))
    assert (first.created, second.created) == (True, False)
    assert [call["status"] for call in fake_vertex.calls] == [200, 409]
    assert list(fake_vertex.jobs) == ["training-pipeline-test-20140301"]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_transient(fake_vertex: FakeVertex, status: int) -> None:
    fake_vertex.fail_next(status, "backend unavailable")
    with pytest.raises(TransientError, match=f"HTTP {status}.*backend unavailable"):
        submit_run(run_request(), target(fake_vertex.url))
    # The platform's retry then succeeds, and creates the run once.
    assert submit_run(run_request(), target(fake_vertex.url)).created
    assert list(fake_vertex.jobs) == ["training-pipeline-test-20140301"]


@pytest.mark.parametrize("status", [400, 403, 404])
def test_client_errors_are_invalid_and_say_why(fake_vertex: FakeVertex, status: int) -> None:
    fake_vertex.fail_next(status, "pipeline_root must be a gs:// URI the service account can write")
    with pytest.raises(InvalidRequest, match=f"HTTP {status} .*service account can write") as refused:
        submit_run(run_request(), target(fake_vertex.url))
    assert not isinstance(refused.value, TransientError)


def test_unreachable_api_is_transient(fake_vertex: FakeVertex) -> None:
    with pytest.raises(TransientError, match="POST http://127.0.0.1"):
        submit_run(run_request(), target(f"http://127.0.0.1:{free_loopback_port()}"))


def test_unknown_parameter_is_refused_before_sending_with_the_expected_list(fake_vertex: FakeVertex) -> None:
    run = run_request(parameter_values={"data_uri": DATA_URI, "learning_rat": 0.1})
    with pytest.raises(ParameterError) as refused:
        submit_run(run, target(fake_vertex.url))
    message = str(refused.value)
    assert "unknown parameter 'learning_rat'" in message
    assert "learning_rate: NUMBER_DOUBLE = 0.001" in message and "data_uri: STRING (required)" in message
    assert fake_vertex.calls == []


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("epochs", "8", "a whole number"),
    ("epochs", 8.5, "a whole number"),
    ("epochs", True, "a whole number"),
    ("learning_rate", "0.1", "a number"),
    ("learning_rate", float("nan"), "a number"),
    ("hidden_units", "64,32", "a JSON list"),
    ("data_uri", 2014, "a string"),
])
def test_mistyped_parameter_is_refused_naming_it(fake_vertex: FakeVertex, name: str, value: object,
                                                  expected: str) -> None:
    values = {"data_uri": DATA_URI, name: value}
    with pytest.raises(ParameterError, match=rf"parameter {name}=.*expected {expected}"):
        submit_run(run_request(parameter_values=values), target(fake_vertex.url))
    assert fake_vertex.calls == []


def test_required_parameter_must_be_set(fake_vertex: FakeVertex) -> None:
    with pytest.raises(ParameterError, match="required parameter.*not set: data_uri"):
        submit_run(run_request(parameter_values={"epochs": 2}), target(fake_vertex.url))


def test_a_whole_number_is_a_valid_double(fake_vertex: FakeVertex) -> None:
    submit_run(run_request(parameter_values={"data_uri": DATA_URI, "learning_rate": 1}), target(fake_vertex.url))
    assert fake_vertex.calls[0]["body"]["runtimeConfig"]["parameterValues"]["learning_rate"] == 1


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"job_id": "Training_Pipeline"}, "job id 'Training_Pipeline'"),
    ({"job_id": "9-starts-with-a-digit"}, "job id"),
    ({"labels": {"Trigger": "new-data"}}, "label key 'Trigger'"),
    ({"labels": {"partition": "2014/03/01"}}, "label partition='2014/03/01'"),
    ({"display_name": "x" * 129}, "display name"),
])
def test_invalid_ids_and_labels_are_refused_locally(fake_vertex: FakeVertex, overrides: dict, expected: str) -> None:
    with pytest.raises(InvalidRequest, match=expected):
        submit_run(run_request(**overrides), target(fake_vertex.url))
    assert fake_vertex.calls == []


def test_job_ids_are_valid_and_long_ones_stay_unique() -> None:
    assert make_job_id("training-pipeline", "new-data", "201403010000") == "training-pipeline-new-data-201403010000"
    assert make_job_id("2014", "x").startswith("run-2014")
    long_a, long_b = make_job_id("m" * 200, "a"), make_job_id("m" * 200, "b")
    # pipelineJobId "should be less than 128 characters" (aiplatform v1 discovery document, pipelineJobs.create).
    assert len(long_a) == len(long_b) == 127 and long_a != long_b
    assert all(JOB_ID_PATTERN.fullmatch(job_id) for job_id in (long_a, long_b))
    assert JOB_ID_PATTERN.fullmatch("a" * 127) and not JOB_ID_PATTERN.fullmatch("a" * 128)


def test_a_128_character_job_id_is_refused_locally(fake_vertex: FakeVertex) -> None:
    with pytest.raises(InvalidRequest, match="127 characters at most"):
        submit_run(run_request(job_id="a" * 128), target(fake_vertex.url))
    assert fake_vertex.calls == []


def test_template_is_read_from_cloud_storage(fake_vertex: FakeVertex, gcs: GcsEmulator) -> None:
    uri = gcs.upload("templates", f"{uuid.uuid4().hex}/training_pipeline.json", TRAINING_TEMPLATE.read_bytes())
    submit_run(run_request(template_uri=uri), target(fake_vertex.url))
    assert fake_vertex.calls[0]["body"]["pipelineSpec"] == json.loads(TRAINING_TEMPLATE.read_text())


def test_a_missing_template_is_named_and_retried(fake_vertex: FakeVertex, gcs: GcsEmulator, tmp_path) -> None:
    # A deploy may be writing it while a batch lands: retried (a TransientError), never acknowledged as invalid.
    with pytest.raises(TemplateUnavailable, match=r"reading template gs://templates/nowhere.json: HTTP 404"):
        submit_run(run_request(template_uri="gs://templates/nowhere.json"), target(fake_vertex.url))
    with pytest.raises(TemplateUnavailable, match="does not exist") as missing:
        submit_run(run_request(template_uri=str(tmp_path / "nowhere.json")), target(fake_vertex.url))
    assert isinstance(missing.value, TransientError)
    assert fake_vertex.calls == []


def test_warm_instances_reuse_the_template_until_it_is_too_old(gcs: GcsEmulator) -> None:
    name = f"{uuid.uuid4().hex}/training_pipeline.json"
    uri = gcs.upload("templates", name, TRAINING_TEMPLATE.read_bytes())
    first = templates.load_template(uri, max_age_seconds=300)
    gcs.delete("templates", name)
    assert templates.load_template(uri, max_age_seconds=300) is first  # no read: the object is gone
    with pytest.raises(TemplateUnavailable, match="HTTP 404"):
        templates.load_template(uri, max_age_seconds=0)


@pytest.mark.parametrize(("text", "expected"), [
    ("pipeline_name: x", "is not JSON"),
    ('{"components": {}}', "expected pipelineInfo and root"),
    ('{"pipelineInfo": {"name": "p"}, "root": {}, "schemaVersion": "2.0.0"}', "expected 2.1.0 or later"),
    ('{"pipelineInfo": {"name": "p"}, "root": {}, "schemaVersion": "\uff12.1.0"}', "expected 2.1.0 or later"),
    ('{"pipelineInfo": {"name": "p"}, "root": {}, "schemaVersion": "2.1.0\u00b2"}', "expected 2.1.0 or later"),
])
def test_a_file_that_is_not_a_kfp_v2_template_is_refused_and_retried(tmp_path, text: str, expected: str) -> None:
    path = tmp_path / "template.json"
    path.write_text(text)
    with pytest.raises(TemplateUnavailable, match=expected):  # perhaps half-written: retried
        templates.load_template(str(path), max_age_seconds=0)
