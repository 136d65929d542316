"""Deploy figures, on the local endpoint with the demo model (taxi-sized inputs):

- blessing to canary serving: from a blessed model to the canary answering its share of traffic
  (the registration's smoke-test record, registration, then the deploy: plan, a model server
  started until healthy, the smoke test through the endpoint);
- requests failed while the split changes under steady load: single-instance requests from 8
  keep-alive connections while the split moves 40 times, then a promotion (split to 100%, the old
  champion undeployed) and a canary deploy; aim 0 of at least 10,000;
- the canary decision pipeline's wall time under kfp.local, against the decision called in process;
- the canary decision's cost per step on 100,000 logged requests (taxi-sized instances, every one
  labelled): the evidence SQL on DuckDB (the request log's files and the feedback table) and the
  statistics, as each decision run pays it.

Everything runs on this machine; other work on it skews every figure (the load average is printed).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from contract.paths import PROJECT_ROOT

MODEL_NAME = "bench-taxi"
LOGGED_REQUESTS = 100_000
MIN_REQUESTS = 10_000
CONNECTIONS = 8
SPLIT_CHANGES = 40


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


class SteadyLoad:
    """Single-instance predictions from keep-alive connections until stopped; answers counted by status."""

    def __init__(self, url: str, body: bytes) -> None:
        self.host, self.port = url.removeprefix("http://").split(":")
        self.body = body
        self.statuses: Counter[int] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CONNECTIONS)]

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
        while not self.stop.is_set():
            try:
                connection.request("POST", "/v1/endpoints/local:predict", body=self.body,
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0  # a failed connection counts as a failed request
                connection.close()
                connection = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
            with self.lock:
                self.statuses[status] += 1

    def total(self) -> int:
        with self.lock:
            return sum(self.statuses.values())


def decision_cost_per_step(root: Path, requests: int = LOGGED_REQUESTS) -> None:
    """The analysis a decision run does, on `requests` logged and labelled requests (90/10 split)."""
    import datetime

    import numpy as np
    import orjson
    import pyarrow as pa

    from contract.model_inputs import INSTANCE_ID_KEY
    from deploy.decision import ModelEvidence, StepStats, Thresholds, analyse, decide
    from deploy.evidence import read_logged_predictions
    from deploy.local_evidence import DEFAULT_TABLES, DuckDBRunner
    from deploy.rollout import Rollout, RolloutState
    from serving.request_log import RequestLog, RequestLogSettings
    from serving.testing import TAXI_FEATURES, demo_instances
    from storage import bigquery_dialect

    generator = np.random.default_rng(1)
    instance = demo_instances(1, TAXI_FEATURES, seed=4)[0]
    labels = (generator.random(requests) < 0.4).astype(int)
    probabilities = 1 / (1 + np.exp(-(np.where(labels == 1, 1.5, -1.5) + generator.normal(0, 1.3, requests))))
    canary = generator.random(requests) < 0.1
    log = RequestLog(root / "request_log", "bench", RequestLogSettings(max_file_bytes=2**30, max_files=100))
    started = time.perf_counter()
    for index in range(requests):
        body = orjson.dumps({"instances": [instance | {INSTANCE_ID_KEY: f"r{index}"}]})
        answer = orjson.dumps({"predictions": [{"probability": float(probabilities[index])}],
                               "deployedModelId": "2" if canary[index] else "1"})
        log.write("2" if canary[index] else "1", body, answer)
    log.close()
    size = sum(path.stat().st_size for path in (root / "request_log").iterdir())
    runner = DuckDBRunner(DEFAULT_TABLES, root / "request_log", root)
    runner.run("SELECT 1")  # creates the dataset and the feedback table
    now = datetime.datetime.now(datetime.UTC)
    feedback = pa.table({"instance_id": [f"r{index}" for index in range(requests)], "label": labels.astype("int64"),
                         "feedback_time": pa.array([now] * requests, pa.timestamp("us", tz="UTC"))})
    with bigquery_dialect.connected(["local-mlops"], root) as connection:
        connection.register("feedback_rows", feedback)
        connection.execute('INSERT INTO "local-mlops".canary.feedback SELECT * FROM feedback_rows')
    print(f"\ncanary decision cost per step: {requests:,} logged requests ({size / 2**20:.0f} MiB of log, "
          f"written in {time.perf_counter() - started:.1f} s), every one labelled, 10% on the canary")
    state = RolloutState.begin("2", time.time() - 3600)
    step = {"1": StepStats(int((~canary).sum()), 0, 5.0, 20.0), "2": StepStats(int(canary.sum()), 0, 5.0, 21.0)}
    for attempt in range(2):
        started = time.perf_counter()
        logged, _ = read_logged_predictions(runner, DEFAULT_TABLES, state.started, time.time() + 1)
        queried = time.perf_counter() - started
        evidence = {deployed_id: ModelEvidence(deployed_id, deployed_id, 10 if deployed_id == "2" else 90,
                                               step[deployed_id], logged[deployed_id]) for deployed_id in ("1", "2")}
        checks = analyse(evidence["2"], evidence["1"], state, Rollout(), Thresholds(), time.time())
        action = decide(checks, 10, state, Rollout())[0]
        total = time.perf_counter() - started
        print(f"  run {attempt + 1}: {total:.2f} s per step (evidence SQL {queried:.2f} s, statistics "
              f"{total - queried:.2f} s); {sum(e.labelled for e in logged.values()):,} labelled predictions; "
              f"action {action}")


def main() -> None:
    import pandas as pd

    from deploy import deploy_version
    from deploy.decision import Thresholds, decide_canary
    from deploy.local import LocalBackend
    from deploy.rollout import Rollout
    from deploy.smoke import record_smoke_test
    from pipelines.local_run import run_pipeline
    from registry.model_registry import LocalModelRegistry, register_blessed_model
    from serving.testing import TAXI_FEATURES, build_demo_model, demo_instances

    print(f"load average before: {_load_average()} (other work on this machine skews every figure)")
    with tempfile.TemporaryDirectory(prefix="bench-canary-") as scratch:
        decision_cost_per_step(Path(scratch))
    # The demo models answer alike only by chance: the decisions below judge health, not parity or labels.
    thresholds = Thresholds(max_p99_increase_ms=1000.0, min_labelled=0, max_js_divergence=1.0)
    rollout = Rollout((10,), min_bake_minutes=0, min_requests=10)
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as scratch:
        root = Path(scratch)
        models = [build_demo_model(root / f"model-{seed}", TAXI_FEATURES, seed=seed) for seed in range(3)]
        registry = LocalModelRegistry(root / "registry")
        backend = LocalBackend(root / "endpoint", root / "registry", MODEL_NAME)
        quiet = {"report": lambda line: None}

        def bless(model_dir: Path) -> float:
            started = time.perf_counter()
            record_smoke_test(model_dir, pd.DataFrame(demo_instances(5, TAXI_FEATURES, seed=1)))
            register_blessed_model(registry, MODEL_NAME, str(model_dir), {})
            return time.perf_counter() - started

        bless(models[0])
        router = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "runner.py"), "endpoint", "--state-dir",
                                   str(root / "endpoint"), "serve", "--port", "0"], cwd=PROJECT_ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not backend.endpoint.router_url():
                time.sleep(0.1)
            deploy_version(backend, **quiet)

            registration = bless(models[1])
            started = time.perf_counter()
            outcome = deploy_version(backend, **quiet)
            deploy_seconds = time.perf_counter() - started
            print("\nblessing to canary serving (demo model, 14 taxi features, local endpoint running)")
            print(f"  registration (smoke-test record + register): {registration:.1f} s")
            print(f"  deploy as a {outcome.split[outcome.deployed_model_id]}% canary (plan, model server until "
                  f"healthy, smoke test through the endpoint): {deploy_seconds:.1f} s")
            print(f"  total: {registration + deploy_seconds:.1f} s")

            body = json.dumps({"instances": demo_instances(1, TAXI_FEATURES, seed=2)}).encode()
            load = SteadyLoad(backend.endpoint.router_url(), body)
            for thread in load.threads:
                thread.start()
            champion, canary = sorted(outcome.split)
            changes = 0
            while changes < SPLIT_CHANGES or load.total() < MIN_REQUESTS * 2 // 3:
                percent = (changes * 7) % 99 + 1
                backend.update_split({canary: percent, champion: 100 - percent})
                changes += 1
                time.sleep(0.05)
            backend.update_split({canary: 10, champion: 90})
            send_traffic_until = load.total() + 200
            while load.total() < send_traffic_until:
                time.sleep(0.05)
            decision = decide_canary(backend, thresholds, rollout, **quiet)
            bless(models[2])
            deploy_version(backend, **quiet)  # the next canary, deployed under load
            while load.total() < MIN_REQUESTS:
                time.sleep(0.1)
            load.stop.set()
            for thread in load.threads:
                thread.join()
            failed = sum(count for status, count in load.statuses.items() if status != 200)
            print(f"\nrequests under steady load ({CONNECTIONS} connections) while the split changed {changes} "
                  f"times, then a {decision.action} (split + undeploy) and a canary deploy")
            print(f"  {load.total()} requests, {failed} failed (aim 0 of at least {MIN_REQUESTS}); "
                  f"statuses {dict(load.statuses)}")

            send = demo_instances(300, TAXI_FEATURES, seed=3)
            for instance in send:
                backend.predict([instance])
            started = time.perf_counter()
            run = run_pipeline("canary_decision", root, model_name=MODEL_NAME, min_requests=10, step_weights=[10],
                               min_bake_minutes=0.0, max_p99_increase_ms=1000.0, min_labelled=0,
                               max_js_divergence=1.0)
            pipeline_seconds = time.perf_counter() - started
            bless(models[0])  # a fourth version to decide again, in process this time
            deploy_version(backend, **quiet)
            for instance in send:
                backend.predict([instance])
            started = time.perf_counter()
            decide_canary(backend, thresholds, rollout, **quiet)
            direct_seconds = time.perf_counter() - started
            print(f"\ncanary decision: pipeline under kfp.local {pipeline_seconds:.1f} s "
                  f"({'done' if run.succeeded else 'FAILED'}); the same "
                  f"decision called in process {direct_seconds:.2f} s")
        finally:
            router.send_signal(signal.SIGTERM)
            router.wait(timeout=60)
    print(f"load average after: {_load_average()}")
