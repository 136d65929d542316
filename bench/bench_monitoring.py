"""Monitoring figures: drift computation per 100k logged requests, request-log overhead on serving
throughput, and alert-to-run-started latency through the Pub/Sub emulator.

1. Drift: 100,000 logged requests of one instance each (the sample's trips, cycled) against the 2013
   partitions' training split: reading and parsing the log window, then the 14 features' metrics.
   Median of RUNS.
2. Request log overhead: two local endpoints on the same demo model, one with the request log on, one
   with MLOPS_REQUEST_LOG=off; wrk (as in the serving bench) against each in turns, TRIALS runs each,
   1 and 64 instances per request. Overhead = 1 - best(on) / best(off), and per pair of runs.
3. Alert to run started: the monitor's anomaly entry published by the sink to the Pub/Sub emulator,
   pushed to the drift-alert function (its deploy folder under functions-framework), submitted to the
   local pipelines API, until the run's startTime. Each alert is a day after the last (a new cooldown
   window, so a new run), on an empty landing bucket, so each run fails at ingest in seconds and the
   next starts on an idle queue. Skipped (said so) without the emulator.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import requests

from bench.bench_serving import _WRK_SCRIPT, _bodies, _demo_model, _ensure_wrk, _run_wrk
from contract.paths import LANDING_PREFIX, PROJECT_ROOT

RUNS = 3
TRIALS = 3
LOGGED_REQUESTS = 100_000
ALERTS = 5
WRITES = 20_000
PROJECT, REGION = "bench-project", "us-central1"


def main() -> None:
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other work on this machine "
          "skews every figure)")
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as scratch_name:
        scratch = Path(scratch_name)
        _drift_time(scratch)
        _request_log_overhead(scratch)
        _alert_to_run(scratch)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def _drift_time(scratch: Path) -> None:
    import pandas as pd

    from contract.artifacts import TRAIN_SPLIT
    from contract.dataset import load_dataset_config
    from dataprep.ingest import ingest, load_split
    from monitoring.config import load_monitoring_config
    from monitoring.monitor import compare, request_log_window
    from serving.request_log import RequestLog, RequestLogSettings

    config = load_monitoring_config()
    ingest(str(PROJECT_ROOT / LANDING_PREFIX / "2013"), load_dataset_config(), scratch / "examples")
    baseline = load_split(scratch / "examples", TRAIN_SPLIT)
    trips = pd.concat(pd.read_csv(path) for path in sorted((PROJECT_ROOT / LANDING_PREFIX).rglob("batch.csv")))
    bodies = [json.dumps({"instances": [{name: (None if pd.isna(value) else value) for name, value in row.items()}]})
              .encode() for row in trips[config.dataset.feature_names].to_dict(orient="records")]
    log_dir = scratch / "request_log"
    log = RequestLog(log_dir, "local", RequestLogSettings(max_file_bytes=2**40))
    start = datetime.datetime.now(datetime.UTC)
    for index in range(LOGGED_REQUESTS):
        log.write("1", bodies[index % len(bodies)], b'{"predictions": [0.5], "deployedModelId": "1"}')
    log.close()
    end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    size_mb = sum(path.stat().st_size for path in log_dir.iterdir()) / 1e6
    reads, metrics = [], []
    for _ in range(RUNS):
        started = time.perf_counter()
        current, logged, _ = request_log_window(log_dir, start, end)
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        compare(config, baseline, current)
        metrics.append(time.perf_counter() - started)
    assert logged == LOGGED_REQUESTS
    print(f"drift computation, {LOGGED_REQUESTS:,} logged requests of 1 instance ({size_mb:.0f} MB of log) "
          f"against {len(baseline)} training rows, {len(config.features)} features, median of {RUNS}:")
    print(f"  read and parse the window {statistics.median(reads):6.2f} s")
    print(f"  metrics (histograms, JS divergence, L-infinity) {statistics.median(metrics):6.2f} s")
    print(f"  total {statistics.median(reads) + statistics.median(metrics):6.2f} s per 100k requests")


def _request_log_overhead(scratch: Path) -> None:
    from monitoring import local_chain
    from serving.client import LocalEndpoint

    wrk = _ensure_wrk()
    if not wrk:
        return
    model = str(_demo_model(scratch / "model"))
    bodies = _bodies(model, scratch)
    script = scratch / "post.lua"
    script.write_text(_WRK_SCRIPT)
    with contextlib.ExitStack() as stack:
        urls = {}
        for setting in ("on", "off"):
            state_dir = scratch / f"endpoint-log-{setting}"
            endpoint = LocalEndpoint(state_dir)
            endpoint.deploy(model, f"log-{setting}")
            port = stack.enter_context(local_chain.endpoint(state_dir, scratch, {"MLOPS_REQUEST_LOG": setting}))
            local_chain.wait_for(lambda e=endpoint: all(m["state"] == "ready" for m in e.describe()["deployedModels"]),
                                 180, f"the endpoint with the request log {setting}", interval=0.5)
            urls[setting] = f"http://127.0.0.1:{port}/v1/endpoints/{endpoint.endpoint_id}:predict"
        print("\nrequest log overhead on serving throughput: the local endpoint (router + 1-worker model server, "
              f"demo model) with the log on and off, wrk runs in turns, {TRIALS} each")
        print(f"  {'instances':>9} {'log off req/s':>13} {'log on req/s':>12} {'overhead (best)':>15} "
              f"{'overhead by pair':>16} {'log bytes/request':>17}")
        best_off: dict[int, float] = {}
        for size in sorted(bodies):
            rates: dict[str, list[float]] = {"on": [], "off": []}
            log_dir = scratch / "endpoint-log-on" / "request_log"
            before = sum(path.stat().st_size for path in log_dir.iterdir())
            logged = 0
            for _ in range(TRIALS):
                for setting in ("off", "on"):
                    run = _run_wrk(wrk, script, bodies[size], urls[setting])
                    rates[setting].append(run["requests"] / run["seconds"])
                    logged += run["requests"] if setting == "on" else 0
            after = sum(path.stat().st_size for path in log_dir.iterdir())
            best_off[size] = max(rates["off"])
            pairs = [1 - on / off for on, off in zip(rates["on"], rates["off"], strict=True)]
            print(f"  {size:>9} {max(rates['off']):>13.0f} {max(rates['on']):>12.0f} "
                  f"{1 - max(rates['on']) / max(rates['off']):>14.1%} {min(pairs):>7.1%}..{max(pairs):<7.1%} "
                  f"{(after - before) / max(logged, 1):>17.0f}")
        print("  aim: under 5% (negative: the logged side was faster, i.e. within the noise)")
        # The write itself, in this process's CPU time: a figure other work on the machine does not move.
        from serving.request_log import RequestLog, RequestLogSettings

        log = RequestLog(scratch / "in-process-log", "local", RequestLogSettings())
        for size in sorted(bodies):
            body = bodies[size].read_bytes()
            answer = json.dumps({"predictions": [0.5] * size, "deployedModelId": "1"}).encode()
            started = time.process_time()
            for _ in range(WRITES):
                log.write("1", body, answer)
            per_write = (time.process_time() - started) / WRITES
            print(f"  in process: one log write of a {size}-instance request costs {per_write * 1e6:.1f} µs of CPU; "
                  f"at the log-off endpoint's best rate ({best_off[size]:.0f} req/s) that is "
                  f"{per_write * best_off[size]:.1%} of one core")
        log.close()


def _alert_to_run(scratch: Path) -> None:
    from gcp_storage_emulator.server import create_server

    from monitoring import local_chain
    from monitoring.config import load_monitoring_config
    from monitoring.local_logging import LocalLogging, PubSubSink

    try:
        local_chain.pubsub_emulator_command(0, scratch)
    except local_chain.ChainError as error:
        print(f"\nSKIPPED alert to run started: {error}")
        return
    config = load_monitoring_config()
    gcs_port = local_chain.free_loopback_port()
    gcs = create_server("127.0.0.1", gcs_port, in_memory=True, default_bucket="bench-landing")
    gcs.start()
    gcs_url = f"http://127.0.0.1:{gcs_port}"
    saved = {name: os.environ.get(name) for name in ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")}
    try:
        with contextlib.ExitStack() as stack:
            api = stack.enter_context(local_chain.pipelines_api(scratch / "local", scratch,
                                                                {"STORAGE_EMULATOR_HOST": gcs_url}))
            os.environ["PUBSUB_EMULATOR_HOST"] = stack.enter_context(local_chain.pubsub_emulator(scratch))
            url = stack.enter_context(local_chain.drift_function(scratch, {
                "MLOPS_PROJECT": PROJECT, "MLOPS_REGION": REGION, "MLOPS_PIPELINE_ROOT": "gs://bench-runs/runs",
                "MLOPS_SERVICE_ACCOUNT": f"pipelines@{PROJECT}.iam.gserviceaccount.com",
                "MLOPS_VERTEX_API_ENDPOINT": api, "MLOPS_TRAINING_TEMPLATE_URI": str(PROJECT_ROOT / "compiled" /
                                                                                     "training_pipeline.json"),
                "MLOPS_DATA_BUCKET": "bench-landing", "MLOPS_MODEL": config.model_name,
                "STORAGE_EMULATOR_HOST": gcs_url}))
            topic = local_chain.push_subscription(PROJECT, "drift-alerts", url)
            logging = LocalLogging(scratch / "logging", [PubSubSink(config.sink_filter.format(project=PROJECT),
                                                                    topic)])
            jobs_url = f"{api}/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs"
            created, started = [], []
            for index in range(ALERTS):
                entry = _entry(config, index)
                sent = time.time()
                logging.write(entry)
                job = local_chain.wait_for(
                    lambda n=index: (jobs := requests.get(jobs_url, timeout=10).json()["pipelineJobs"]) and
                    len(jobs) > n and jobs[0].get("startTime") and jobs[0], 120, "the run to start", interval=0.02)
                created.append(_epoch(job["createTime"]) - sent)
                started.append(_epoch(job["startTime"]) - sent)
                job_url = f"{jobs_url}/{job['name'].rsplit('/', 1)[-1]}"
                local_chain.wait_for(lambda u=job_url: requests.get(u, timeout=10).json()["state"].endswith(
                    ("FAILED", "SUCCEEDED")), 120, "the run to finish", interval=0.2)
        print(f"\nalert to run, {ALERTS} alerts (each a new cooldown window; the queue idle before each): "
              "sink publish -> Pub/Sub emulator push -> drift function -> local pipelines API")
        print(f"  run created: median {statistics.median(created) * 1000:.0f} ms, max {max(created) * 1000:.0f} ms")
        print(f"  run started: median {statistics.median(started) * 1000:.0f} ms, max {max(started) * 1000:.0f} ms")
    finally:
        gcs.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _entry(config, index: int) -> dict:
    from monitoring.drift import FeatureDrift
    from monitoring.monitor import MonitoringResult, drift_alert_entry

    end = datetime.datetime(2016, 12, 1, tzinfo=datetime.UTC) + datetime.timedelta(days=index)
    drifted = FeatureDrift("trip_miles", "numeric", "jensen_shannon_divergence", 0.06, 0.03, (), (), ())
    result = MonitoringResult(config.model_name, "1", "bench", 1, "bench", end - datetime.timedelta(hours=24), end,
                              1, 1, 0, (drifted,))
    return drift_alert_entry(result, config, PROJECT)


def _epoch(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
