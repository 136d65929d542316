"""The new-data function in-process: functions-framework's test client, CloudEvents from the `cloudevents` library.

Events follow the Eventarc shape of `google.cloud.storage.object.v1.finalized`:
source `//storage.googleapis.com/projects/_/buckets/BUCKET`, subject `objects/NAME`,
data a StorageObjectData (int64 fields as strings, as proto3 JSON writes them).
"""

from __future__ import annotations

import json

import pytest
from cloudevents.http import CloudEvent, to_binary, to_structured
from trigger_helpers import DATA_BUCKET, SERVICE_ACCOUNT, TRAINING_TEMPLATE, FakeVertex, log_lines

BATCH = "data/processed/2014/03/01/0000/batch.csv"
GENERATION = "1709251200123456"


def storage_event(name: str = BATCH, *, bucket: str = DATA_BUCKET, generation: object = GENERATION,
                  event_type: str = "google.cloud.storage.object.v1.finalized", **data_overrides: object) -> CloudEvent:
    data = {
        "kind": "storage#object", "id": f"{bucket}/{name}/{generation}", "name": name, "bucket": bucket,
        "generation": generation, "metageneration": "1", "contentType": "text/csv", "size": "48213",
        "timeCreated": "2014-03-01T00:05:00.123Z", "updated": "2014-03-01T00:05:00.123Z",
        "storageClass": "STANDARD", "md5Hash": "kS0pnFfhMjp8sWuZ2eN8Ow==", "crc32c": "yZRlqg==",
        "etag": "CIDy1cb/tIQDEAE=",
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{name.replace('/', '%2F')}",
        "mediaLink": f"https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/x?alt=media",
        **data_overrides,
    }
    attributes = {"type": event_type, "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
                  "subject": f"objects/{name}", "id": f"event-{generation}", "time": "2014-03-01T00:05:00.123Z",
                  "datacontenttype": "application/json"}
    return CloudEvent(attributes, data)


def post(client, event: CloudEvent, mode: str = "binary"):
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    return client.post("/", headers=headers, data=body)


@pytest.fixture
def client(function_app):
    return function_app("new_data", "on_object_finalized").test_client()


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_batch_submits_training_on_its_partition(client, fake_vertex: FakeVertex, capsys, mode: str) -> None:
    response = post(client, storage_event(), mode)

    assert response.status_code == 200
    (call,) = fake_vertex.calls
    body = call["body"]
    assert body["runtimeConfig"]["parameterValues"] == {"data_uri": f"gs://{DATA_BUCKET}/data/processed/2014/03/01/0000",
                                                        "data_version": GENERATION}
    assert body["labels"] == {"trigger": "new-data", "partition": "2014-03-01-0000"}
    assert body["serviceAccount"] == SERVICE_ACCOUNT
    assert body["pipelineSpec"] == json.loads(TRAINING_TEMPLATE.read_text())
    assert call["job_id"].startswith("training-pipeline-new-data-201403010000-")
    (entry,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "new-data"]
    assert entry["severity"] == "INFO" and entry["outcome"] == "submitted" and entry["job_id"] == call["job_id"]


def test_redelivery_creates_no_second_run(client, fake_vertex: FakeVertex, capsys) -> None:
    assert post(client, storage_event()).status_code == 200
    assert post(client, storage_event(), "structured").status_code == 200

    assert [call["status"] for call in fake_vertex.calls] == [200, 409]
    assert fake_vertex.calls[0]["job_id"] == fake_vertex.calls[1]["job_id"]
    assert len(fake_vertex.jobs) == 1
    outcomes = [e["outcome"] for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "new-data"]
    assert outcomes == ["submitted", "already-submitted"]


def test_an_overwritten_batch_is_new_data_with_its_own_data_version(client, fake_vertex: FakeVertex) -> None:
    post(client, storage_event(generation=GENERATION))
    post(client, storage_event(generation="1709251299999999"))
    assert len(fake_vertex.jobs) == 2
    # Same data_uri, different bytes: the generation makes ingest's Vertex cache key differ.
    first, second = (call["body"]["runtimeConfig"]["parameterValues"] for call in fake_vertex.calls)
    assert first["data_uri"] == second["data_uri"]
    assert (first["data_version"], second["data_version"]) == (GENERATION, "1709251299999999")


def test_generation_as_a_json_number_is_accepted(client, fake_vertex: FakeVertex) -> None:
    # Google's sample StorageObjectData writes int64 fields as numbers.
    assert post(client, storage_event(generation=96883251)).status_code == 200
    assert len(fake_vertex.jobs) == 1


def test_one_generation_written_differently_is_one_upload(client, fake_vertex: FakeVertex) -> None:
    for generation in (96883251, "96883251", "096883251"):
        assert post(client, storage_event(generation=generation)).status_code == 200
    assert [call["status"] for call in fake_vertex.calls] == [200, 409, 409]


@pytest.mark.parametrize("name", [
    "data/raw/2014/03/01/0000/batch.csv",                      # another prefix
    "data/processed/2014/03/01/0000/batch.csv.tmp",             # temporary upload
    "data/processed/2014/03/01/0000/_COPYING_",
    "data/processed/2014/03/01/0000/",                           # folder placeholder
    "data/processed/2014/03/01/0000/part-00000.csv",
    "data/processed/2014/03/01/batch.csv",                       # missing HHMM
    "data/processed/2014/13/01/0000/batch.csv",                  # month 13
    "data/processed/2014/02/30/0000/batch.csv",                  # 30 February
    "data/processed/2014/03/01/2400/batch.csv",                  # hour 24
    "data/processed/2014/3/1/0000/batch.csv",                    # not zero-padded
    "data/processed/2014/03/01/0000/../0000/batch.csv",          # dot-dot
    "data/processed/../processed/2014/03/01/0000/batch.csv",
    "data/processed//2014/03/01/0000/batch.csv",
    # Other scripts' digits name the same partition to `\d` and int(): only ASCII digits are a date.
    "data/processed/\uff12\uff10\uff11\uff14/\uff10\uff13/\uff10\uff11/\uff10\uff10\uff10\uff10/batch.csv",
    "data/processed/\u0662\u0660\u0661\u0664/03/01/0000/batch.csv",   # Arabic-Indic year
    "data/processed/2014/03/01/\u0966\u0966\u0966\u0966/batch.csv",   # Devanagari HHMM
])
def test_other_objects_are_acknowledged_and_not_submitted(client, fake_vertex: FakeVertex, capsys, name: str) -> None:
    response = post(client, storage_event(name))
    assert response.status_code == 200
    assert fake_vertex.calls == []
    (entry,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "new-data"]
    assert entry["outcome"] == "ignored" and entry["severity"] == "INFO"
    assert repr(name) in entry["message"]


def test_an_object_in_another_bucket_is_not_ours(client, fake_vertex: FakeVertex) -> None:
    assert post(client, storage_event(bucket="someone-elses-bucket")).status_code == 200
    assert fake_vertex.calls == []


@pytest.mark.parametrize(("event", "reason"), [
    (storage_event(event_type="google.cloud.storage.object.v1.deleted"),
     "is not google.cloud.storage.object.v1.finalized"),
    (storage_event(generation="not-a-number"), "expected digits"),
    (storage_event(generation=None), "expected digits"),
    (storage_event(generation="\uff11\uff17\uff10\uff19"), "expected digits"),    # fullwidth
    (storage_event(generation="\u0661\u0667\u0660\u0669"), "expected digits"),    # Arabic-Indic
    (storage_event(generation="17\u00b2"), "expected digits"),                        # superscript two
    (storage_event(generation="9" * 20), "expected digits"),                           # beyond int64
    (storage_event(generation=1.5), "expected digits"),
    (storage_event(name=""), "without bucket and name"),
    (CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "source": "//storage.googleapis.com/x",
                 "datacontenttype": "text/plain"}, b"not json"), "not JSON"),
    (CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "source": "//storage.googleapis.com/x"},
                ["a", "list"]), "expected a JSON object"),
])
def test_malformed_events_are_acknowledged_and_logged(client, fake_vertex: FakeVertex, capsys, event: CloudEvent,
                                                      reason: str) -> None:
    response = post(client, event)
    assert response.status_code == 200
    assert fake_vertex.calls == []
    (entry,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "new-data"]
    assert entry["outcome"] == "ignored" and reason in entry["message"]


def test_a_transient_api_error_asks_the_platform_to_retry(client, fake_vertex: FakeVertex, capsys) -> None:
    fake_vertex.fail_next(503, "The service is currently unavailable.")
    response = post(client, storage_event())
    assert response.status_code == 500
    assert response.headers["X-Google-Status"] == "crash"  # functions-framework's marker of a failed invocation
    (entry,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "new-data"]
    assert entry["severity"] == "WARNING" and entry["outcome"] == "retry"

    assert post(client, storage_event()).status_code == 200  # the platform's redelivery
    assert [call["status"] for call in fake_vertex.calls] == [503, 200]
    assert len(fake_vertex.jobs) == 1


def test_an_invalid_request_is_logged_with_the_reason_and_not_retried(client, fake_vertex: FakeVertex,
                                                                      capsys) -> None:
    fake_vertex.fail_next(400, "Service account pipelines@test-project.iam.gserviceaccount.com does not exist.")
    response = post(client, storage_event())
    assert response.status_code == 200
    (entry,) = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "new-data"]
    assert entry["severity"] == "ERROR" and entry["outcome"] == "invalid"
    assert "INVALID_ARGUMENT" in entry["message"] and "does not exist" in entry["message"]


def test_fixed_parameters_from_the_environment_are_checked_against_the_template(
        function_app, fake_vertex: FakeVertex, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLOPS_PIPELINE_PARAMETERS", '{"project": "test-project", "epochs": 2}')
    post(function_app("new_data", "on_object_finalized").test_client(), storage_event())
    assert fake_vertex.calls[0]["body"]["runtimeConfig"]["parameterValues"] == {
        "project": "test-project", "epochs": 2, "data_uri": f"gs://{DATA_BUCKET}/data/processed/2014/03/01/0000",
        "data_version": GENERATION}

    fake_vertex.reset()
    monkeypatch.setenv("MLOPS_PIPELINE_PARAMETERS", '{"epoch": 2}')
    assert post(function_app("new_data", "on_object_finalized").test_client(), storage_event()).status_code == 200
    assert fake_vertex.calls == []
    errors = [e for e in log_lines(capsys.readouterr().out) if e["severity"] == "ERROR"]
    assert "unknown parameter 'epoch'" in errors[-1]["message"] and "epochs: NUMBER_INTEGER" in errors[-1]["message"]


def test_a_template_compiled_before_data_version_still_gets_its_run(function_app, fake_vertex: FakeVertex,
                                                                    monkeypatch, tmp_path) -> None:
    # During a deploy the functions may be new and the template old: the run must not be refused.
    old = json.loads(TRAINING_TEMPLATE.read_text())
    del old["root"]["inputDefinitions"]["parameters"]["data_version"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    monkeypatch.setenv("MLOPS_TRAINING_TEMPLATE_URI", str(tmp_path / "old.json"))
    assert post(function_app("new_data", "on_object_finalized").test_client(), storage_event()).status_code == 200
    (call,) = fake_vertex.calls
    assert call["status"] == 200 and "data_version" not in call["body"]["runtimeConfig"]["parameterValues"]
