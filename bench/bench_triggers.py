"""Trigger figures: cold-start cost of each function, and event-to-request latency through Pub/Sub.

1. Cold import: a fresh process imports a function's `main.py` from its deploy
   folder (what a Cloud Run functions cold start pays before the first event),
   against the seed approach `from google.cloud import aiplatform`, measured in
   the same run. Wall time and peak RSS of each child, median of RUNS. The child
   reads its own peak (VmHWM) before it exits: the rusage that os.wait4 or
   RUSAGE_CHILDREN give starts from the parent's peak, because exec records the
   parent's address space (copied by fork, or shared by vfork) in the child's
   maximum; after the serving bench has loaded TensorFlow that is ~700 MB
   for every child, whatever it imports.
2. Drift chain: a LogEntry published to the Pub/Sub emulator, pushed to the
   drift-alert function under functions-framework, until its create request
   reaches a local Vertex stand-in. Skipped (said so) without the emulator.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contract.paths import PROJECT_ROOT
from serving.processes import free_loopback_port
from tests.gcs_emulator import running_gcs_emulator
from tests.triggers.trigger_helpers import FakeVertex, process_group, wait_until

RUNS = 3
CHAIN_ALERTS = 20
BASELINE = "from google.cloud import aiplatform"


# Appended to the measured code: the child's own peak resident set, read just before it exits.
_REPORT_PEAK_RSS = ("\nimport sys as _sys\n"
                    "_sys.stdout.write(next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')))")


def cold_process(code: str, cwd: Path, env: dict[str, str], runs: int = RUNS) -> tuple[float, float]:
    """Median wall seconds and peak RSS (MB) of fresh `python -c code` processes, each its own peak."""
    walls, peaks = [], []
    for _ in range(runs):
        started = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", code + _REPORT_PEAK_RSS], cwd=cwd, env=env,
                               capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        if child.returncode != 0:
            raise RuntimeError(f"`{code}` failed in {cwd}: {child.stderr[-2000:]}")
        report = child.stdout.splitlines()[-1].split()  # ["VmHWM:", "49152", "kB"]
        peaks.append(int(report[1]) / 1024)
    return statistics.median(walls), statistics.median(peaks)


def _function_env(vertex_url: str, storage_url: str = "http://127.0.0.1:9") -> dict[str, str]:
    # The drift and schedule functions list the landing bucket for the run's data version.
    return {"STORAGE_EMULATOR_HOST": storage_url, "PATH": os.environ.get("PATH", "/usr/bin"),
            "MLOPS_PROJECT": "bench-project", "MLOPS_REGION": "us-central1",
            "MLOPS_PIPELINE_ROOT": "gs://bench-root/runs",
            "MLOPS_SERVICE_ACCOUNT": "pipelines@bench-project.iam.gserviceaccount.com",
            "MLOPS_VERTEX_API_ENDPOINT": vertex_url,
            "MLOPS_TRAINING_TEMPLATE_URI": str(PROJECT_ROOT / "compiled" / "training_pipeline.json"),
            "MLOPS_SCHEDULE_TEMPLATE_URI": str(PROJECT_ROOT / "compiled" / "training_pipeline.json"),
            "MLOPS_DATA_BUCKET": "bench-data", "MLOPS_MODEL": "chicago-taxi-big-tipper"}


def bench_cold_imports(workdir: Path) -> None:
    from triggers.package import FUNCTIONS, build

    env = _function_env("http://127.0.0.1:9")
    print(f"cold import in a fresh process, median of {RUNS} (wall time, peak RSS):")
    base_wall, base_rss = cold_process(BASELINE, workdir, {"PATH": env["PATH"]})
    print(f"  {BASELINE:<40} {base_wall:6.2f} s {base_rss:6.0f} MB   (baseline)")
    for name in FUNCTIONS:
        folder = build(name, workdir / "functions")
        wall, rss = cold_process("import main", folder, env)
        print(f"  {name + '/main.py (deploy folder)':<40} {wall:6.2f} s {rss:6.0f} MB   "
              f"{base_wall / wall:4.1f}x faster, {base_rss / rss:3.1f}x smaller")


def bench_pubsub_chain(workdir: Path) -> None:
    gcloud = shutil.which("gcloud")
    emulator = gcloud and Path(gcloud).resolve().parent.parent / "platform" / "pubsub-emulator"
    if not (emulator and emulator.is_dir() and shutil.which("java")):
        print("drift chain: skipped, the Pub/Sub emulator (gcloud + Java) is not installed here")
        return
    from triggers.events.drift import FeatureDrift, drift_alert_payload
    from triggers.package import build

    vertex = FakeVertex()
    emulator_port, function_port = free_loopback_port(), free_loopback_port()
    folder = build("drift_alert", workdir / "functions")
    (workdir / "pubsub").mkdir()
    emulator_args = [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{emulator_port}",
                     f"--data-dir={workdir / 'pubsub'}"]
    function_args = [sys.executable, "-m", "functions_framework", "--target", "on_drift_log_entry", "--source",
                     str(folder / "main.py"), "--signature-type", "cloudevent", "--host", "127.0.0.1",
                     "--port", str(function_port)]
    latencies = []
    # The drift function lists the landing bucket (metadata only) for each run's data version.
    with running_gcs_emulator() as storage, (workdir / "pubsub.log").open("wb") as emulator_log, \
            (workdir / "function.log").open("wb") as function_log, \
            process_group(emulator_args, signal.SIGINT, stdout=emulator_log, stderr=subprocess.STDOUT) as emulator, \
            process_group(function_args, signal.SIGINT, cwd=folder, env=_function_env(vertex.url, storage.url),
                          stdout=function_log, stderr=subprocess.STDOUT) as function:
        def listening(port: int) -> bool:
            for process, log in ((emulator, workdir / "pubsub.log"), (function, workdir / "function.log")):
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[:3]} exited: {log.read_text()[-2000:]}")
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        storage.bucket("bench-data")
        wait_until(lambda: listening(emulator_port) and listening(function_port), 90, "the emulator and the function")
        from google.cloud import pubsub_v1

        # The clients read the emulator's address from the environment; restore it for the next benchmark.
        previous = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{emulator_port}"
        try:
            publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        finally:
            if previous is None:
                del os.environ["PUBSUB_EMULATOR_HOST"]
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = previous
        topic = publisher.topic_path("bench-project", "drift-alerts")
        subscription = subscriber.subscription_path("bench-project", "drift-push")
        publisher.create_topic(name=topic)
        subscriber.create_subscription(request={"name": subscription, "topic": topic, "push_config": {
            "push_endpoint": f"http://127.0.0.1:{function_port}"}})
        for day in range(CHAIN_ALERTS):  # one alert per cooldown window (a day): each one creates a run
            end = datetime.datetime(2026, 1, 1, 6, tzinfo=datetime.UTC) + datetime.timedelta(days=day)
            payload = drift_alert_payload("chicago-taxi-big-tipper", end - datetime.timedelta(days=7), end,
                                          [FeatureDrift("fare", 0.3, 0.1, "jensen_shannon")])
            published = time.perf_counter()
            publisher.publish(topic, json.dumps({"jsonPayload": payload, "timestamp": payload["window_end"]})
                              .encode()).result(30)
            arrived = vertex.wait_for_calls(day + 1, timeout=30)[day]["arrived"]
            latencies.append((arrived - published) * 1000)
    vertex.close()
    ordered = sorted(latencies[1:])
    print(f"drift chain (Pub/Sub emulator push -> functions-framework -> create request), {CHAIN_ALERTS} alerts:")
    print(f"  first (cold template cache) {latencies[0]:.0f} ms; then median {statistics.median(ordered):.0f} ms, "
          f"p90 {ordered[int(0.9 * (len(ordered) - 1))]:.0f} ms, max {ordered[-1]:.0f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-triggers-") as workdir:
        bench_cold_imports(Path(workdir))
        bench_pubsub_chain(Path(workdir))


if __name__ == "__main__":
    main()
