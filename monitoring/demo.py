"""The drift demo (`make demo-drift`): from drifting traffic to a retrained, registered model, on one machine.

1. The sample lands in a bucket of the GCS emulator; a model is trained on the 2013 partitions only,
   through the local pipelines API (the run the triggers would submit to Vertex), and becomes champion.
2. That run's nested deploy put the champion on the local endpoint at 100%; the endpoint serves and logs
   its requests.
3. 2013 traffic is replayed through the endpoint: the monitor finds no drift (no false positive).
4. 2016 traffic is replayed: the monitor finds drift and logs a drift alert entry; a Logging sink (its
   filter from the monitoring config) publishes it to a topic on the Pub/Sub emulator.
5. The topic pushes to the drift-alert function (its deploy folder, under functions-framework), which
   submits a retraining run over the recent partitions to the local pipelines API; a second alert within
   the cooldown starts no second run.
6. The retraining run registers a new version, and its nested deploy puts it beside the champion as a 10%
   canary; more 2016 traffic (labelled: the replay writes its labels to the feedback table) gives the canary
   decision its evidence, and the decision advances it a step, holds it, or rolls it back.

Replayed traffic is from the past: the drift alerts report the replayed data's own time (the end of
2016) as their end, so the retraining window is the last MLOPS_DRIFT_WINDOW_PARTITIONS months up to it.
Everything lives under `local/demo-drift/` (removed at the start of each demo).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path

import requests

from contract.paths import LANDING_PREFIX, PROJECT_ROOT
from pipelines.local_jobs_api import FAILED, LOCAL_FIELD, SUCCEEDED, read_job
from pipelines.settings import SETTINGS

PROJECT, REGION = "local-project", "us-central1"
BUCKET = "demo-landing"
TOPIC = "drift-alerts"
TEMPLATE = PROJECT_ROOT / "compiled" / "training_pipeline.json"
# The replayed 2016 traffic's own time: its alert's retraining window ends with December 2016.
REPLAYED_2016_TIME = datetime.datetime(2016, 12, 31, 12, tzinfo=datetime.UTC)
# 24 monthly partitions (2015-2016): enough labelled eval examples for the gate (a quarter of 2016 is not).
RETRAINING_PARTITIONS = 24
REPLAY_RATE_PER_S = 2000.0
# Requests sent once the canary is up: its 10% share is then above the decision's minimum (100).
CANARY_REQUESTS = 2000


@dataclasses.dataclass
class DemoResult:
    clean_drifted: tuple[str, ...]  # features the monitor flagged on 2013 traffic (expected: none)
    drifted: tuple[str, ...]  # ... on 2016 traffic
    retraining_job: dict
    versions: list[str]
    alert_to_run_started_s: float
    runs_created: int  # pipeline runs the alerts created (expected: 1)
    canary_split: dict[str, int]  # deployed model id -> percent, once the retraining run deployed its version
    canary_decision: str  # advance, promote, hold or rollback
    seconds: dict[str, float]


def _step(message: str) -> None:
    print(f"\n== {message}", flush=True)


def _wait_job(api: str, job_id: str, timeout: float = 600) -> dict:
    from monitoring.local_chain import wait_for

    url = f"{api}/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs/{job_id}"
    return wait_for(lambda: (job := requests.get(url, timeout=10).json()).get("state") in (SUCCEEDED, FAILED) and job,
                    timeout, f"run {job_id} to finish", interval=1)


def run_demo(work_dir: Path) -> DemoResult:
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from deploy import Rollout, Thresholds, decide_canary, open_backend
    from deploy.replay import replay
    from monitoring import local_chain
    from monitoring.config import load_monitoring_config
    from monitoring.local_logging import LocalLogging, PubSubSink
    from monitoring.monitor import monitor_once
    from registry.model_registry import CHAMPION, LocalModelRegistry
    from serving.client import LocalEndpoint
    from triggers.submission.data_version import listing_version
    from triggers.submission.pipeline_jobs import RunRequest, VertexTarget, submit_run

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    shutil.rmtree(work_dir, ignore_errors=True)
    local_dir = work_dir / "local"
    config = load_monitoring_config()
    with contextlib.ExitStack() as stack:
        _step("the sample lands in the GCS emulator's bucket gs://demo-landing")
        gcs_port = local_chain.free_loopback_port()
        gcs = create_server("127.0.0.1", gcs_port, in_memory=True)
        gcs.start()
        stack.callback(gcs.stop)
        gcs_url = f"http://127.0.0.1:{gcs_port}"
        os.environ["STORAGE_EMULATOR_HOST"] = gcs_url  # this process lists the bucket for data versions
        client = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": gcs_url})
        bucket = client.create_bucket(BUCKET)
        batches = sorted((PROJECT_ROOT / LANDING_PREFIX).rglob("batch.csv"))
        for path in batches:
            bucket.blob(path.relative_to(PROJECT_ROOT).as_posix()).upload_from_filename(str(path))
        print(f"{len(batches)} batches uploaded")

        emulators = {"STORAGE_EMULATOR_HOST": gcs_url}
        api = stack.enter_context(local_chain.pipelines_api(local_dir, work_dir, emulators))
        target = VertexTarget(PROJECT, REGION, "gs://demo-pipelines/runs", api, template_cache_seconds=0)
        print(f"local pipelines API on {api}")

        _step("train on the 2013 partitions only, through the local pipelines API")
        tick = time.perf_counter()
        data_2013 = f"gs://{BUCKET}/{LANDING_PREFIX}/2013"
        submit_run(RunRequest(str(TEMPLATE), {"data_uri": data_2013, "data_version": listing_version(data_2013)},
                              {"trigger": "demo"}, None, "demo-train-2013"), target)
        job = _wait_job(api, "demo-train-2013")
        seconds["train 2013"] = time.perf_counter() - tick
        run_log = read_job(local_dir / "pipeline_jobs", "demo-train-2013")[LOCAL_FIELD]["log"]
        if job["state"] != SUCCEEDED:
            raise RuntimeError(f"training on 2013 failed: {job.get('error')}; log {run_log}")
        registry = LocalModelRegistry(local_dir / "registry")
        champion = registry.get(config.model_name, CHAMPION)
        if champion is None:
            raise RuntimeError(f"the 2013 run registered no champion; see {run_log}")
        print(f"champion: version {champion.version} ({seconds['train 2013']:.0f} s)")

        _step("serve the local endpoint the run deployed the champion to (request log on)")
        backend = open_backend(str(local_dir / "registry"), config.model_name)
        live = backend.live()
        if [(model.version, model.percent) for model in live] != [(champion.version, 100)]:
            raise RuntimeError(f"expected the 2013 run to deploy version {champion.version} at 100%; the endpoint "
                               f"has {[(model.version, model.percent) for model in live]}")
        state_dir = backend.state_dir
        endpoint = LocalEndpoint(state_dir)
        stack.enter_context(local_chain.endpoint(state_dir, work_dir))
        local_chain.wait_for(lambda: all(model["state"] == "ready" for model in endpoint.describe()["deployedModels"]),
                             180, "the champion's model server to be ready", interval=0.5)

        pubsub = stack.enter_context(local_chain.pubsub_emulator(work_dir))
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub
        function_env = {
            "MLOPS_PROJECT": PROJECT, "MLOPS_REGION": REGION, "MLOPS_PIPELINE_ROOT": "gs://demo-pipelines/runs",
            "MLOPS_SERVICE_ACCOUNT": f"pipelines@{PROJECT}.iam.gserviceaccount.com",
            "MLOPS_VERTEX_API_ENDPOINT": api, "MLOPS_TRAINING_TEMPLATE_URI": str(TEMPLATE),
            "MLOPS_DATA_BUCKET": BUCKET, "MLOPS_MODEL": config.model_name,
            "MLOPS_DRIFT_WINDOW_PARTITIONS": str(RETRAINING_PARTITIONS), "STORAGE_EMULATOR_HOST": gcs_url}
        function_url = stack.enter_context(local_chain.drift_function(work_dir, function_env))
        local_chain.push_subscription(PROJECT, TOPIC, function_url)
        logging_sink = PubSubSink(config.sink_filter.format(project=PROJECT), f"projects/{PROJECT}/topics/{TOPIC}")
        logging = LocalLogging(local_dir / "logging", [logging_sink])

        def traffic(year: str, count: int = 0) -> tuple[datetime.datetime, datetime.datetime]:
            begin = datetime.datetime.now(datetime.UTC)
            sent = replay(backend, f"gs://{BUCKET}/{LANDING_PREFIX}/{year}", config.dataset.source,
                          REPLAY_RATE_PER_S, count)
            end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(milliseconds=1)
            print(f"replayed {sent.requests} {year} trips in {sent.seconds:.1f} s, by deployed model "
                  f"{sent.by_model}, {sent.errors} errors")
            return begin, end

        _step("replay 2013 traffic and monitor it: no drift expected")
        begin, end = traffic("2013")
        clean = monitor_once(config, str(local_dir / "registry"), work_dir / "monitoring-2013",
                             request_log_dir=state_dir / "request_log", window_start=begin, window_end=end,
                             logging=logging, project=PROJECT)
        print(clean.result.summary())

        _step("replay 2016 traffic and monitor it: drift expected, alert through Pub/Sub to the drift function")
        begin, end = traffic("2016")
        alerts, published = [], []
        for attempt in (1, 2):  # the second within the cooldown: no second run
            alerts.append(monitor_once(config, str(local_dir / "registry"), work_dir / f"monitoring-2016-{attempt}",
                                       request_log_dir=state_dir / "request_log", window_start=begin, window_end=end,
                                       logging=logging, project=PROJECT,
                                       alert_time=REPLAYED_2016_TIME))
            published.append(time.perf_counter())  # monitor_once returns once the sink has published
        print(alerts[0].result.summary())
        print(f"report: {alerts[0].report}")
        if not alerts[0].anomaly_entry:
            raise RuntimeError("the monitor found no drift in 2016 traffic")
        jobs_url = f"{api}/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"

        def drift_runs() -> list[dict]:
            return [job for job in requests.get(jobs_url, timeout=10).json()["pipelineJobs"]
                    if job.get("labels", {}).get("trigger") == "drift-alert"]

        (retraining,) = local_chain.wait_for(lambda: [job for job in drift_runs() if job.get("startTime")], 120,
                                             "the drift function's retraining run to start")
        alert_to_run = time.perf_counter() - published[0]
        print(f"retraining run {retraining['name']} started {alert_to_run:.1f} s after the first alert; data_uri "
              f"{retraining['runtimeConfig']['parameterValues']['data_uri'].split(',')[0]} ... (24 partitions)")

        _step("the retraining run")
        tick = time.perf_counter()
        job = _wait_job(api, retraining["name"].rsplit("/", 1)[-1])
        seconds["retrain"] = time.perf_counter() - tick
        function_log = work_dir / "drift_alert.log"
        local_chain.wait_for(lambda: function_log.read_text().count('"outcome": "already-submitted"') >= 1, 60,
                             "the drift function to answer the second alert (already submitted)")
        versions = [version.version for version in registry.versions(config.model_name)]
        print(f"retraining: {job['state']} in {seconds['retrain']:.0f} s; versions of {config.model_name}: {versions}")
        runs_created = len(drift_runs())

        _step("the new version is a 10% canary: 2016 traffic, then the canary decision")
        split = endpoint.describe()["trafficSplit"]
        print(f"split by deployed model: {split}; versions live: "
              f"{[(model.version, model.percent) for model in backend.live()]}")
        traffic("2016", CANARY_REQUESTS)
        # Replayed traffic takes seconds: the step's bake time is waived, nothing else.
        decision = decide_canary(backend, Thresholds(), Rollout(min_bake_minutes=0))
        print(f"canary decision: {decision.action}: {'; '.join(decision.reasons)}")
    seconds["total"] = time.perf_counter() - started
    return DemoResult(tuple(feature.name for feature in clean.result.drifted),
                      tuple(feature.name for feature in alerts[0].result.drifted), job, versions, alert_to_run,
                      runs_created, split, decision.action, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=SETTINGS.local_dir / "demo-drift")
    args = parser.parse_args(argv)
    from monitoring.local_chain import ChainError

    try:
        result = run_demo(args.work_dir)
    except (ChainError, RuntimeError) as error:
        print(f"\ndemo failed: {error}", file=sys.stderr)
        return 1
    ok = (not result.clean_drifted and result.drifted and result.retraining_job["state"] == SUCCEEDED
          and len(result.versions) == 2 and result.runs_created == 1
          and sorted(result.canary_split.values()) == [10, 90]
          and result.canary_decision in ("advance", "promote", "hold", "rollback"))
    print("\n" + "=" * 72)
    print(json.dumps(dataclasses.asdict(result) | {"retraining_job": result.retraining_job["name"]}, indent=1))
    print(f"drift demo: {'done' if ok else 'FAILED'} in {result.seconds['total']:.0f} s (state in {args.work_dir})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
