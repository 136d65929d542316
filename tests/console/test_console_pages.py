"""The console's pages over a small real local state, read as a browser without JavaScript gets them (server-rendered
HTML), and over damaged copies of it: a half-written run, a run whose process died, a run by older code, a missing
report, a registry entry from older code, a broken endpoint state. Each gets a clear note in place, never a 500.

The state costs about two seconds: two real local runs (a canary decision that waits for evidence, and a deploy of
a version the registry lacks, which fails in its step), a registry of two versions and an endpoint with a 10%
canary. The registered model folders are placeholders (the console reads the registry's records, never a model),
as are the endpoint's (nothing serves them here)."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from console.app import build_app
from pipelines.local_run import run_pipeline
from registry.model_registry import LocalModelRegistry
from serving.endpoint import EndpointStore
from serving.metrics_log import MetricsLog
from tests.console.console_helpers import running_console

MODEL = "chicago-taxi-big-tipper"  # what the canary decision's default model_name reads


@pytest.fixture(scope="module")
def base_state(tmp_path_factory) -> Path:
    local = tmp_path_factory.mktemp("console-pages") / "local"
    registry = LocalModelRegistry(local / "registry")
    for seed in (1, 2):
        model = tmp_path_factory.mktemp(f"model-{seed}")
        (model / "saved_model.pb").write_bytes(b"placeholder")
        registry.register(MODEL, str(model), {
            "data_uri": f"data/processed/201{seed + 3}", "data_version": f"version-{seed}", "schema": "schema.pbtxt",
            "pipeline_run": f"training-pipeline-run-{seed}", "metrics": {"auc": 0.9 + seed / 100, "accuracy": 0.8}},
            ("challenger", "champion") if seed == 1 else ("challenger",))
    endpoint = EndpointStore(local / "endpoint")
    endpoint.deploy(str(local / f"registry/{MODEL}/versions/1/model"), f"{MODEL}-v1")
    endpoint.deploy(str(local / f"registry/{MODEL}/versions/2/model"), f"{MODEL}-v2", {"1": 90, "0": 10})
    metrics = MetricsLog(local / "endpoint")
    start = int(datetime.datetime(2026, 12, 1, 12, tzinfo=datetime.UTC).timestamp())
    for second in range(0, 40, 2):
        metrics.record("1", 200, 5.0 + second / 10, at=start + second)
        metrics.record("2", 500 if second == 10 else 200, 7.0, at=start + second)
    metrics.flush(everything=True)
    assert run_pipeline("canary_decision", local).succeeded  # no router serving: no evidence, so it waits
    assert not run_pipeline("deploy", local, version="3").succeeded
    return local


@pytest.fixture
def state(base_state, tmp_path) -> Path:
    """A copy to damage; the endpoint's models are the copy's registry versions, as in the original."""
    copy = Path(shutil.copytree(base_state, tmp_path / "local", symlinks=True))
    endpoint = copy / "endpoint/endpoint.json"
    endpoint.write_text(endpoint.read_text().replace(str(base_state), str(copy)))
    return copy


def _client(local: Path) -> TestClient:
    return TestClient(build_app(local), raise_server_exceptions=False)


def _run(local: Path, pipeline: str) -> Path:
    return next(path for path in sorted((local / "pipeline_root").iterdir()) if path.name.startswith(pipeline))


def _text(html: str) -> str:
    """What a person reads: the page without its tags, style and extra white space."""
    html = re.sub(r"<style>.*?</style>|<svg.*?</svg>", " ", html, flags=re.S)
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def _get(client: TestClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[-2000:])
    return response.text


def test_every_page_shows_the_state_as_server_rendered_html(base_state):
    client = _client(base_state)
    decision, deploy = _run(base_state, "canary-decision"), _run(base_state, "deploy")

    runs = _text(_get(client, "/runs"))
    assert f"{decision.name} canary_decision succeeded" in runs
    assert f"{deploy.name} deploy failed" in runs and "version=3" in runs

    failed = _get(client, f"/runs/{deploy.name}")
    error = f"RegistryError: model '{MODEL}' has no version '3'; registered: 1, 2"
    assert f"error: {error}" in _text(failed)
    assert re.search(r'<a href="#step-deploy-model" class="node no" data-task="deploy-model">', failed)
    assert "<meta http-equiv=\"refresh\"" not in failed  # finished: no refresh
    log = _text(_get(client, f"/runs/{deploy.name}/log/deploy-model"))
    assert f"registry.model_registry.{error}" in log

    models = _text(_get(client, "/models"))
    assert "Aliases: challenger → version 2, champion → version 1" in models
    assert "2 challenger" in models and "1 champion" in models
    assert "auc 0.9200 0.9100" in models and "data/processed/2015 version-2" in models

    endpoint = _text(_get(client, "/endpoint"))
    assert "Canary: version 2 (deployed model 2) at 10% beside champion version 1 at 90%" in endpoint
    assert "1: v1 20 0 0" in endpoint and "2: v2 20 1 0" in endpoint  # from the metrics log, errors counted
    assert f"{decision.name} decision: hold" in endpoint
    assert "<svg" in _get(client, "/endpoint")  # the plot over time

    assert "No drift results yet" in _text(_get(client, "/monitoring"))
    assert "No batch prediction runs yet" in _text(_get(client, "/batch"))


def test_a_run_in_progress_refreshes_itself(state):
    """The record a run writes mid-step: running, its process alive (this one), its step started."""
    run = _run(state, "canary-decision")
    record = json.loads((run / "_run.json").read_text())
    record.update(state="running", ended=None, pid=os.getpid())
    record["steps"]["decide-canary"].update(state="running", ended=None, seconds=None)
    (run / "_run.json").write_text(json.dumps(record))
    client = _client(state)

    page = _get(client, f"/runs/{run.name}")
    assert '<meta http-equiv="refresh" content="3">' in page
    assert re.search(r'class="node run" data-task="decide-canary"', page) and "running" in _text(page)
    assert '<meta http-equiv="refresh"' in _get(client, "/runs")
    assert '<meta http-equiv="refresh"' in _get(client, f"/runs/{run.name}/log/decide-canary")


def test_a_run_whose_process_died_mid_run_is_shown_interrupted(state):
    run = _run(state, "canary-decision")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = json.loads((run / "_run.json").read_text())
    record.update(state="running", ended=None, pid=int(gone.stdout))
    record["steps"]["decide-canary"].update(state="running", ended=None, seconds=None)
    (run / "_run.json").write_text(json.dumps(record))

    page = _get(_client(state), f"/runs/{run.name}")
    assert '<meta http-equiv="refresh"' not in page
    assert f"The process that ran this run (pid {int(gone.stdout)}) is gone and the run never finished" in _text(page)
    assert 'class="node no" data-task="decide-canary"' in page and "interrupted" in _text(page)


def test_a_half_written_run_record_gets_a_note_and_the_steps_show_from_their_outputs(state):
    run = _run(state, "canary-decision")
    (run / "_run.json").write_text((run / "_run.json").read_text()[:120])  # cut mid-write

    page = _text(_get(_client(state), f"/runs/{run.name}"))
    assert "The run's record is unreadable" in page and "is not readable JSON" in page
    assert "decide-canary succeeded" in page  # kfp.local wrote its outputs: it finished
    assert run.name in _text(_get(_client(state), "/runs"))


def test_a_run_by_older_code_is_drawn_from_todays_template_with_a_note(state):
    run = _run(state, "canary-decision")
    for kept in ("_run.json", "_pipeline_spec.json", "_logs"):
        shutil.rmtree(run / kept) if (run / kept).is_dir() else (run / kept).unlink()

    page = _get(_client(state), f"/runs/{run.name}")
    assert "This run has no run record (it was run by an older version of the code)" in _text(page)
    assert "Drawn from today's compiled template (canary_decision_pipeline.json)" in _text(page)
    assert 'class="node ok" data-task="decide-canary"' in page
    assert f'href="/runs/{run.name}/log/decide-canary"' not in page  # no log was kept: no link to one


def test_a_missing_report_and_a_broken_step_output_get_notes_in_place(state):
    decision, deploy = _run(state, "canary-decision"), _run(state, "deploy")
    (decision / "decide-canary/report.html").unlink()
    client = _client(state)
    page = _get(client, f"/runs/{decision.name}")
    assert "(not readable here:" in _text(page) and "decide-canary/report.html" in _text(page)
    assert client.get(f"/files/pipeline_root/{decision.name}/decide-canary/report.html").status_code == 404

    (decision / "decide-canary/executor_output.json").write_text('{"parameterValues": ')
    page = _text(_get(client, f"/runs/{decision.name}"))
    assert "step decide-canary's outputs" in page and "could not be read" in page
    assert "decision: succeeded" in _text(_get(client, "/endpoint"))  # the history still lists the run
    assert _get(client, f"/runs/{deploy.name}")


def test_registry_entries_from_older_code_or_half_written_get_notes(state):
    versions = state / "registry" / MODEL / "versions"
    older = json.loads((versions / "1/version.json").read_text())
    older["metadata"] = {"data_uri": "data/processed/2013"}  # lineage as an older registration kept it
    (versions / "1/version.json").write_text(json.dumps(older))
    shutil.copytree(versions / "2", versions / "3")
    (versions / "3/version.json").unlink()  # a registration that stopped half-way
    (versions / "2/version.json").write_text("{")

    page = _text(_get(_client(state), f"/models/{MODEL}"))
    assert "1 champion" in page and "data/processed/2013 not recorded not recorded not recorded" in page
    assert "version 3 has no version.json: it was never completely registered" in page
    assert "version 2's record" in page and "could not be read" in page
    (state / "registry" / MODEL / "aliases.json").write_text("[1, 2]")
    assert "is not a table of alias -> version" in _text(_get(_client(state), "/models"))


def test_a_broken_endpoint_state_and_an_interrupted_transition_get_notes(state):
    journal = {"kind": "promote", "version": "2", "reason": "the canary served 900 requests", "steps": []}
    (state / "endpoint/deploy_transition.json").write_text(json.dumps(journal))
    page = _text(_get(_client(state), "/endpoint"))
    assert "A transition is recorded in progress: promote of version 2" in page

    (state / "endpoint/endpoint.json").write_text('{"deployed_models": 3}')
    page = _text(_get(_client(state), "/endpoint"))
    assert "is not a valid endpoint state" in page and "restore it or remove the directory" in page


def test_a_drift_result_and_its_report_are_shown_or_noted(state):
    from monitoring.drift import FeatureDrift
    from monitoring.monitor import MonitoringResult
    from monitoring.report import drift_report

    now = datetime.datetime.now(datetime.UTC)
    result = MonitoringResult(MODEL, "1", "baseline", 100, "request log", now - datetime.timedelta(hours=1), now,
                              50, 50, 0, (FeatureDrift("trip_miles", "numeric", "jensen_shannon_divergence", 0.2,
                                                       0.03, ("0", "1"), (0.5, 0.5), (0.1, 0.9)),))
    folder = state / "monitoring" / f"{MODEL}-1"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(result.to_json()))  # as monitor_once writes them
    (folder / "report.html").write_text(drift_report(result, "Drift"))
    broken = state / "monitoring" / f"{MODEL}-2"
    broken.mkdir()
    (broken / "result.json").write_text("not json")

    page = _get(_client(state), "/monitoring")
    assert "drift in 1 feature(s)" in _text(page) and "trip_miles jensen_shannon_divergence 0.2000 0.0300 drift" in \
        _text(page)
    assert f'href="/files/monitoring/{MODEL}-1/report.html"' in page
    assert "a drift result" in _text(page) and "could not be read" in _text(page)
    assert "no report beside" in _text(page)


def test_files_outside_the_state_are_not_served(state, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    (state / "link").symlink_to(tmp_path / "secret.txt")
    client = _client(state)
    assert client.get("/files/link").status_code == 404
    assert client.get("/files/..%2Fsecret.txt").status_code == 404
    assert client.get("/files/registry").status_code == 200


def test_an_unforeseen_failure_still_answers_with_the_frame_and_the_reason(state, monkeypatch):
    from console.state import LocalState

    def broken(self, name, jobs=None):
        raise OSError("disk on fire")

    monkeypatch.setattr(LocalState, "run", broken)
    client = _client(state)
    response = client.get(f"/runs/{_run(state, 'deploy').name}")
    assert response.status_code == 200 and "This page could not be built" in response.text
    assert "OSError: disk on fire" in _text(response.text)
    runs = _text(_get(client, "/runs"))  # the list reads each run too: one note, not a broken page
    assert "the runs could not be read: OSError: disk on fire" in runs


def test_runs_started_by_the_local_pipelines_api_are_listed_with_their_job(state):
    """A canary decision submitted to the local pipelines API runs (a real run, in its child process), and a job
    the API refuses before running (a parameter of the wrong type) is listed with its reason."""
    import time

    from pipelines.compile import COMPILED_DIR
    from pipelines.local_jobs_api import FAILED, SUCCEEDED, LocalPipelineJobs

    spec = json.loads((COMPILED_DIR / "canary_decision_pipeline.json").read_text())
    parent = "projects/p/locations/l"
    jobs = LocalPipelineJobs(state)
    try:
        jobs.create(parent, "decide-now", {"pipelineSpec": spec, "runtimeConfig": {"parameterValues": {}}})
        jobs.create(parent, "refused", {"pipelineSpec": spec,
                                        "runtimeConfig": {"parameterValues": {"min_requests": "many"}}})
        deadline = time.monotonic() + 90
        while not all(job["state"] in (SUCCEEDED, FAILED) for job in jobs.list(parent)):
            assert time.monotonic() < deadline, jobs.list(parent)
            time.sleep(0.2)
        decided = jobs.get(parent, "decide-now")
    finally:
        jobs.close()
    assert decided["state"] == SUCCEEDED, decided
    page = _text(_get(_client(state), "/runs"))
    run = Path(decided["localRun"]["runDir"]).name
    assert re.search(f"{run} canary_decision succeeded .* local pipelines API: {parent}/pipelineJobs/decide-now", page)
    assert re.search(r"refused canary_decision failed .* local pipelines API \(no run yet\): .*min_requests", page)


def test_the_console_command_serves_on_loopback_and_the_run_summary_points_at_it(state, tmp_path, capsys):
    from console.address import ADDRESS_FILE, console_address

    run = _run(state, "deploy")
    with running_console(state, tmp_path / "console.log") as console:
        assert console.url.startswith("http://127.0.0.1:")
        assert json.loads((state / ADDRESS_FILE).read_text())["url"] == console.url
        assert console_address(run) == f"{console.url}/runs/{run.name}"
        status, page = console.get(f"/runs/{run.name}")
        assert status == 200 and run.name in page
        port = console.url.rsplit(":", 1)[1]
        taken = subprocess.run([sys.executable, "runner.py", "console", "--port", port, "--local-dir", str(state)],
                               capture_output=True, text=True, cwd=Path(__file__).parents[2], timeout=60)
        assert taken.returncode == 2
        assert f"error: cannot listen on 127.0.0.1:{port}" in taken.stderr and "--port PORT" in taken.stderr
    assert not (state / ADDRESS_FILE).exists()
    assert console_address(run) == (f"http://127.0.0.1:8095/runs/{run.name}  "
                                    "(serve it with: make console, or python runner.py console)")


def test_a_state_with_nothing_yet_says_how_to_start(tmp_path):
    client = _client(tmp_path / "local")  # not even the folder: a fresh clone before `make run`
    assert "No local pipeline runs in" in _text(_get(client, "/runs")) and "make run" in _text(_get(client, "/runs"))
    assert "No registered models in" in _text(_get(client, "/models"))
    assert "No model was ever deployed from this state" in _text(_get(client, "/endpoint"))
    assert "No drift results yet" in _text(_get(client, "/monitoring"))
    assert "No batch prediction runs yet" in _text(_get(client, "/batch"))
    assert client.get("/runs/training-pipeline-2026-01-01-00-00-00-000000").status_code == 404


def test_a_declared_rollout_shows_the_step_the_canary_is_at(state):
    """The progressive canary's `step_weights` (issue 20's parameter), as the newest decision run declared them."""
    run = _run(state, "canary-decision")
    record = json.loads((run / "_run.json").read_text())
    record["parameters"]["step_weights"] = [10, 25, 50]
    (run / "_run.json").write_text(json.dumps(record))
    page = _text(_get(_client(state), "/endpoint"))
    assert "Rollout steps: 10% → 25% → 50% → 100% (now at step 1 of 4)." in page
