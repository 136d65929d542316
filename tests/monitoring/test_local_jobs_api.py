"""The local pipelines API as a process: the triggers' own submission module talks to it as to Vertex."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import requests

from contract.paths import PROJECT_ROOT
from monitoring.local_chain import wait_for
from pipelines.local_jobs_api import FAILED, PENDING, RUNNING, SUCCEEDED
from tests.monitoring.conftest import PARENT
from triggers.submission.pipeline_jobs import RunRequest, VertexTarget, submit_run

TEMPLATE = PROJECT_ROOT / "compiled" / "training_pipeline.json"


def target(url: str) -> VertexTarget:
    return VertexTarget(project="local-project", region="us-central1", pipeline_root="gs://local-pipelines/runs",
                        api_endpoint=url, template_cache_seconds=0)


def request(job_id: str, **parameters) -> RunRequest:
    return RunRequest(template_uri=str(TEMPLATE), parameter_values=parameters, labels={"trigger": "test"},
                      service_account=None, job_id=job_id)


def finished(api, job_id: str) -> dict:
    return wait_for(lambda: (job := api.job(job_id))["state"] in (SUCCEEDED, FAILED) and job, 180,
                    f"run {job_id} to finish")


def test_create_is_idempotent_and_a_failed_step_fails_the_run_with_its_error(pipelines_api, tmp_path: Path) -> None:
    api = pipelines_api()
    empty = tmp_path / "no-batches"
    empty.mkdir()

    first = submit_run(request("run-empty", data_uri=str(empty), data_version="v1"), target(api.url))
    again = submit_run(request("run-empty", data_uri=str(empty), data_version="v2"), target(api.url))

    assert (first.created, again.created) == (True, False)
    assert first.job_name == f"{PARENT}/pipelineJobs/run-empty"
    job = finished(api, "run-empty")
    assert job["state"] == FAILED
    # The failed step's own error, not "a task failed"; the first request's parameters, not the replay's.
    assert "ingest-data failed" in job["error"]["message"] and str(empty) in job["error"]["message"]
    assert job["runtimeConfig"]["parameterValues"]["data_version"] == "v1"
    assert job["labels"] == {"trigger": "test"} and job["startTime"] <= job["endTime"]
    listed = requests.get(api.jobs_url(), timeout=10).json()["pipelineJobs"]
    assert [entry["name"] for entry in listed] == [job["name"]]


def test_bad_requests_are_refused_with_what_was_expected(pipelines_api) -> None:
    api = pipelines_api()
    spec = json.loads(TEMPLATE.read_text())
    cases = {
        "not json": (b"{truncated", 400, "not JSON"),
        "no spec": (json.dumps({"displayName": "x"}).encode(), 400, "pipelineSpec"),
        "unknown pipeline": (json.dumps({"pipelineSpec": {**spec, "pipelineInfo": {"name": "mystery"}}}).encode(),
                             400, "training-pipeline"),
        "parameters not an object": (json.dumps({"pipelineSpec": spec, "runtimeConfig": {"parameterValues": [1]}}
                                                ).encode(), 400, "runtime_config.parameter_values"),
        "a field Vertex does not define": (json.dumps({"pipelineSpec": spec, "runtimConfig": {}}).encode(), 400,
                                           'Unknown name "runtimConfig"'),
    }
    for case, (body, status, named) in cases.items():
        response = requests.post(api.jobs_url() + "?pipelineJobId=bad-one", data=body, timeout=10)
        assert response.status_code == status, case
        assert named in response.json()["error"]["message"], case
    bad_id = requests.post(api.jobs_url() + "?pipelineJobId=Bad_Id", json={"pipelineSpec": spec}, timeout=10)
    assert bad_id.status_code == 400 and "Bad_Id" in bad_id.json()["error"]["message"]
    # The triggers' rule: pipelineJobId under 128 characters (Vertex's pipelineJobs.create).
    too_long = requests.post(api.jobs_url() + "?pipelineJobId=" + "a" * 128, json={"pipelineSpec": spec}, timeout=10)
    assert too_long.status_code == 400 and "127 characters at most" in too_long.json()["error"]["message"]
    assert requests.get(api.jobs_url("nothing-here"), timeout=10).status_code == 404
    assert requests.get(api.jobs_url("../../etc"), timeout=10).status_code == 404
    assert requests.delete(api.jobs_url("x"), timeout=10).status_code == 404
    assert requests.get(api.jobs_url(), timeout=10).json() == {"pipelineJobs": []}


def test_a_wrongly_typed_parameter_fails_the_run_naming_it(pipelines_api) -> None:
    api = pipelines_api()
    spec = json.loads(TEMPLATE.read_text())
    body = {"pipelineSpec": spec, "runtimeConfig": {"parameterValues": {"data_uri": "data/processed/2014/03",
                                                                        "epochs": "eight"}}}
    assert requests.post(api.jobs_url() + "?pipelineJobId=typed", json=body, timeout=10).status_code == 200
    job = finished(api, "typed")
    assert job["state"] == FAILED and "epochs" in job["error"]["message"] and "whole number" in job["error"]["message"]


def test_kill_9_mid_run_leaves_the_run_failed_on_restart_never_running(pipelines_api) -> None:
    api = pipelines_api()
    submit_run(request("run-killed", data_uri="data/processed/2014/03"), target(api.url))
    submit_run(request("run-queued", data_uri="data/processed/2014/04"), target(api.url))
    running = wait_for(lambda: (job := api.job("run-killed"))["state"] == RUNNING and job, 60, "the run to start")
    assert api.job("run-queued")["state"] == PENDING  # one run at a time
    assert "localRun" not in running  # Vertex's PipelineJob has no such field: it stays in the state file
    local = api.local_run("run-killed")
    run_pid = local["pid"]
    # Killed while a step runs in its own process under the run's.
    wait_for(lambda: re.search(r"^\d\d:\d\d:\d\d [a-z-]+ +started$", Path(local["log"]).read_text(), re.M), 60,
             "a step to start")
    assert _group(run_pid) - {run_pid}

    api.stop(signal.SIGKILL)
    restarted = pipelines_api()

    killed = restarted.job("run-killed")
    assert killed["state"] == FAILED and "stopped while this run was running" in killed["error"]["message"]
    # Nothing of the killed run keeps running unseen: neither its process nor the step it had started.
    wait_for(lambda: not _group(run_pid), 30, "every process of the killed run to exit")
    # The queued run is picked up again by the restarted server.
    wait_for(lambda: restarted.job("run-queued")["state"] == RUNNING, 60, "the queued run to start after restart")


def _group(pgid: int) -> set[int]:
    """Live (not zombie) processes of a process group."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.add(int(stat.parent.name))
    return members


def test_a_landed_batch_runs_locally_through_the_new_data_function(pipelines_api, gcs_emulator, monkeypatch) -> None:
    """A GCS finalize event to the new-data function (in process, as the trigger tests run it) submits to the
    local pipelines API, whose run reads the batch from the GCS emulator. Followed until its data steps have
    run (the drift demo follows a run to its registered version)."""
    import functions_framework
    from cloudevents.http import CloudEvent, to_binary

    bucket = gcs_emulator.new_bucket("landing")
    name = "data/processed/2014/03/01/0000/batch.csv"
    gcs_emulator.upload_file(PROJECT_ROOT / name, f"gs://{bucket}/{name}")
    generation = str(gcs_emulator.client.bucket(bucket).get_blob(name).generation)
    api = pipelines_api({"STORAGE_EMULATOR_HOST": gcs_emulator.url})
    for variable in [name for name in os.environ if name.startswith("MLOPS_")]:
        monkeypatch.delenv(variable)
    for variable, value in {"MLOPS_PROJECT": "local-project", "MLOPS_REGION": "us-central1",
                            "MLOPS_PIPELINE_ROOT": "gs://local-pipelines/runs",
                            "MLOPS_SERVICE_ACCOUNT": "pipelines@local-project.iam.gserviceaccount.com",
                            "MLOPS_VERTEX_API_ENDPOINT": api.url, "MLOPS_TRAINING_TEMPLATE_URI": str(TEMPLATE),
                            "MLOPS_DATA_BUCKET": bucket}.items():
        monkeypatch.setenv(variable, value)
    app = functions_framework.create_app("on_object_finalized", str(PROJECT_ROOT / "triggers/new_data/main.py"))
    event = CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "id": "landed-1",
                        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
                        "subject": f"objects/{name}", "datacontenttype": "application/json"},
                       {"bucket": bucket, "name": name, "generation": generation})
    headers, body = to_binary(event)

    assert app.test_client().post("/", headers=headers, data=body).status_code == 200

    (job,) = requests.get(api.jobs_url(), timeout=10).json()["pipelineJobs"]
    assert job["runtimeConfig"]["parameterValues"]["data_uri"] == f"gs://{bucket}/data/processed/2014/03/01/0000"
    job_id = job["name"].rsplit("/", 1)[-1]
    run_log = Path(api.local_run(job_id)["log"])
    wait_for(lambda: re.search(r"validate-data +succeeded in", run_log.read_text()) or
             api.job(job_id)["state"] == FAILED, 120, "the run to ingest and validate the batch")
    assert api.job(job_id)["state"] == RUNNING, run_log.read_text()[-3000:]
    assert f"gs://{bucket}/data/processed/2014/03/01/0000" in run_log.read_text()


def test_one_server_per_state_folder_and_a_busy_port_is_named(pipelines_api, tmp_path: Path) -> None:
    import subprocess
    import sys

    from serving.processes import free_loopback_port

    api = pipelines_api()
    port = api.url.rsplit(":", 1)[1]
    for args, named in ((["--port", str(free_loopback_port()), "--local-dir", str(api.local_dir)], "already serves"),
                        (["--port", port, "--local-dir", str(tmp_path / "other")], f"127.0.0.1:{port}")):
        second = subprocess.run([sys.executable, "runner.py", "pipelines", "serve", *args], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and named in second.stderr and "Traceback" not in second.stderr
