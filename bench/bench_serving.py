"""Serving figures: server throughput against the signature in-process, and the router's latency cost.

    python -m bench serving        (or `make bench` for every benchmark)

1. Throughput, with `wrk` (a real load generator) on loopback, at 1 and at 64
   instances per request, against calling the `serving_default` signature
   in-process on the same batches, measured in this run next to each wrk run.
   The server runs with 1 worker and with one worker per core (the image's
   default, SERVING_WORKERS=auto).
2. Latency of single-instance requests at a fixed request rate, sent open-loop
   (each request leaves on schedule whatever the previous ones do), alternating
   request by request between a prediction server and the endpoint router in
   front of it, so that both paths see the same machine load.

Model: BENCH_SERVING_MODEL_URI if set (e.g. the trained model's directory), else
a demo SavedModel with the taxi data set's 14 raw features (serving.testing).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from contract.paths import PROJECT_ROOT
from serving.endpoint import EndpointStore
from serving.instances import instances_to_columns, parse_predict_body
from serving.processes import die_with_parent, free_loopback_port
from serving.testing import TAXI_FEATURES, build_demo_model, demo_instances

BATCH_SIZES = (1, 64)
WRK_SECONDS = 5
WRK_CONNECTIONS = 16
BASELINE_SECONDS = 2.0
TRIALS = 3
FIXED_RATE = 200  # requests/s in all: a quarter of one worker's single-instance capacity here
LATENCY_SECONDS = 15.0
LATENCY_ROUNDS = 2

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = file:read("*a")
file:close()
function done(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %f, "status_errors": %d, "socket_errors": %d, ' ..
    '"p50_ms": %f, "p99_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"""


def main() -> None:
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other work on this machine "
          "skews every figure)")
    wrk = _ensure_wrk()
    _same_threads_as_the_server()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch_name:
        scratch = Path(scratch_name)
        model_uri = os.environ.get("BENCH_SERVING_MODEL_URI") or str(_demo_model(scratch / "model"))
        print(f"model: {model_uri}")
        bodies = _bodies(model_uri, scratch)
        baseline = _Baseline(model_uri, bodies)
        # This process is also the latency load generator: a full collection
        # over TensorFlow's objects would stall it (as in the server, frozen).
        gc.freeze()

        if wrk:
            _throughput(wrk, model_uri, bodies, baseline, scratch)
        _latency(model_uri, bodies[1], scratch)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


# -- set-up --------------------------------------------------------------------------------------------------

def _ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get install -y wrk)...")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        print("SKIPPED throughput: wrk is not installed and could not be installed here "
              "(as root on Debian: apt-get install -y wrk)")
    return found


def _same_threads_as_the_server() -> None:
    """The baseline runs with the server's TensorFlow threading (SERVING_TF_THREADS, default 1)."""
    from serving.model import limit_tensorflow_threads

    threads = int(os.environ.get("SERVING_TF_THREADS", "1"))
    try:
        limit_tensorflow_threads(threads)
    except RuntimeError:
        print("note: TensorFlow was initialised by an earlier benchmark: the baseline keeps its default threads")
        return
    print(f"TensorFlow threads: {threads or 'default'} in the baseline and in every server process")


def _demo_model(path: Path) -> Path:
    started = time.perf_counter()
    build_demo_model(path, TAXI_FEATURES, hidden_units=64)
    print(f"built the demo model (14 taxi features) in {time.perf_counter() - started:.1f} s")
    return path


def _bodies(model_uri: str, scratch: Path) -> dict[int, Path]:
    from serving.instances import InputSpec

    features = InputSpec.load(model_uri).features if not model_uri.startswith("gs://") else TAXI_FEATURES
    paths = {}
    for size in BATCH_SIZES:
        paths[size] = scratch / f"body-{size}.json"
        paths[size].write_text(json.dumps({"instances": demo_instances(size, features, seed=size)}))
    return paths


class _Baseline:
    """The signature called in this process on the same batches: no HTTP, no JSON, tensors ready."""

    def __init__(self, model_uri: str, bodies: dict[int, Path]) -> None:
        import tensorflow as tf

        from serving.model import load_model

        self.model = load_model(model_uri)
        dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
        self.columns = {size: instances_to_columns(parse_predict_body(path.read_bytes()), self.model.spec)
                        for size, path in bodies.items()}
        self.tensors = {size: {name: tf.constant(columns[name], dtype=dtypes[dtype])
                               for name, dtype in self.model.spec.features.items()}
                        for size, columns in self.columns.items()}
        self.bodies = {size: path.read_bytes() for size, path in bodies.items()}

    def signature_calls_per_s(self, size: int) -> float:
        signature, tensors = self.model._signature, self.tensors[size]
        return _rate(lambda: signature(**tensors))

    def request_path_calls_per_s(self, size: int) -> float:
        """Parse, check, convert, call, format: the server's work per request minus HTTP."""
        body, spec = self.bodies[size], self.model.spec
        return _rate(lambda: orjson.dumps({"predictions": self.model.predictions(
            instances_to_columns(parse_predict_body(body), spec))}))


def _rate(call: Any) -> float:
    for _ in range(50):
        call()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < BASELINE_SECONDS:
        call()
        calls += 1
    return calls / (time.perf_counter() - started)


@contextmanager
def _process(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([sys.executable, *args], env={**os.environ, **env}, cwd=PROJECT_ROOT,
                                   stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(url: str, log_path: Path, timeout_s: float = 120.0) -> None:
    async def poll() -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{url} did not answer 200 within {timeout_s} s; log: {log_path}")

    asyncio.run(poll())


# -- 1. throughput -------------------------------------------------------------------------------------------

def _throughput(wrk: str, model_uri: str, bodies: dict[int, Path], baseline: _Baseline, scratch: Path) -> None:
    script = scratch / "post.lua"
    script.write_text(_WRK_SCRIPT)
    print(f"\nthroughput: wrk -t1 -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s on loopback; baseline: the signature "
          f"called in this process on the same batches, one thread, {BASELINE_SECONDS:.0f} s before each wrk run")
    print(f"  {'workers':>7} {'instances':>9} {'server req/s':>12} {'inst/s':>9} {'p99 ms':>7} {'errors':>6} "
          f"{'baseline inst/s':>15} {'ratio':>5}   (in-process request path, no HTTP: inst/s)")
    workers_options = sorted({1, os.cpu_count() or 1})
    for workers in workers_options:
        port = free_loopback_port()
        env = {"AIP_STORAGE_URI": model_uri, "AIP_HTTP_PORT": str(port), "SERVING_HOST": "127.0.0.1",
               "SERVING_WORKERS": str(workers), "TF_CPP_MIN_LOG_LEVEL": "2"}
        log_path = scratch / f"server-{workers}.log"
        with _process(["-m", "serving.server"], env, log_path):
            _wait_for(f"http://127.0.0.1:{port}/health", log_path)
            time.sleep(3.0 if workers > 1 else 0.5)  # every worker loaded, not only the first to answer
            for size in BATCH_SIZES:
                # Other work on a shared machine only ever slows a run down, so
                # each side keeps its best of TRIALS runs, taken in turns.
                runs, signature_rates = [], []
                for _ in range(TRIALS):
                    signature_rates.append(baseline.signature_calls_per_s(size) * size)
                    runs.append(_run_wrk(wrk, script, bodies[size], f"http://127.0.0.1:{port}/predict"))
                best = max(runs, key=lambda run: run["requests"] / run["seconds"])
                requests_per_s = best["requests"] / best["seconds"]
                signature_rate = max(signature_rates)
                path_rate = baseline.request_path_calls_per_s(size) * size
                errors = sum(run["status_errors"] + run["socket_errors"] for run in runs)
                print(f"  {workers:>7} {size:>9} {requests_per_s:>12.0f} {requests_per_s * size:>9.0f} "
                      f"{best['p99_ms']:>7.2f} {errors:>6} {signature_rate:>15.0f} "
                      f"{requests_per_s * size / signature_rate:>5.2f}   ({path_rate:.0f})")
    print("  ratio = server instances/s / in-process signature instances/s (aim: >= 0.8 at 64 instances);")
    print(f"  each side is the best of {TRIALS} runs taken in turns; errors are summed over all runs")


def _run_wrk(wrk: str, script: Path, body: Path, url: str) -> dict[str, float]:
    completed = subprocess.run(
        [wrk, "-t1", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s", "--timeout", "10s", "-s", str(script), url],
        env={**os.environ, "BENCH_BODY": str(body)}, capture_output=True, text=True, timeout=WRK_SECONDS + 60,
        check=True)
    for line in completed.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line.removeprefix("WRK_JSON "))
    raise RuntimeError(f"wrk printed no summary:\n{completed.stdout}\n{completed.stderr}")


# -- 2. latency at a fixed rate, with and without the router ------------------------------------------------

def _latency(model_uri: str, body_path: Path, scratch: Path) -> None:
    state_dir = scratch / "endpoint"
    EndpointStore(state_dir).deploy(model_uri, "bench")
    port = free_loopback_port()
    log_path = scratch / "router.log"
    with _process(["runner.py", "endpoint", "--state-dir", str(state_dir), "serve", "--port", str(port)],
                  {"TF_CPP_MIN_LOG_LEVEL": "2"}, log_path):
        router_url = f"http://127.0.0.1:{port}"
        _wait_for(f"{router_url}/health", log_path)
        described = _ready_endpoint(router_url, log_path)
        paths = {"direct": described["deployedModels"][0]["predictUrl"],
                 "router": f"{router_url}/v1/endpoints/local:predict"}
        print(f"\nlatency: single-instance requests, open loop at a fixed {FIXED_RATE} requests/s in all, "
              f"alternating request by request between the prediction server itself and the endpoint router "
              f"in front of it (so both see the same machine), {LATENCY_ROUNDS} x {LATENCY_SECONDS:.0f} s")
        samples: dict[str, list[float]] = {name: [] for name in paths}
        failures = dict.fromkeys(paths, 0)
        for _ in range(LATENCY_ROUNDS):
            latencies, failed = asyncio.run(_fixed_rate(paths, body_path.read_bytes(), FIXED_RATE,
                                                        LATENCY_SECONDS))
            for name in paths:
                samples[name] += latencies[name]
                failures[name] += failed[name]
        print(f"  {'path':<8} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7}")
        figures = {}
        for name in paths:
            figures[name] = _percentiles(samples[name])
            print(f"  {name:<8} {len(samples[name]) + failures[name]:>8} {failures[name]:>6} "
                  f"{figures[name][0]:>7.2f} {figures[name][1]:>7.2f}")
        print(f"  the router adds {figures['router'][0] - figures['direct'][0]:.2f} ms at p50 and "
              f"{figures['router'][1] - figures['direct'][1]:.2f} ms at p99 (aim: under 2 ms at p99)")


def _ready_endpoint(router_url: str, log_path: Path) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            for _ in range(1200):
                async with session.get(f"{router_url}/v1/endpoints/local") as response:
                    described = await response.json()
                if all(model["state"] == "ready" for model in described["deployedModels"]):
                    return described
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the deployed model did not become ready; log: {log_path}")

    return asyncio.run(poll())


async def _fixed_rate(urls: dict[str, str], body: bytes, rate: float,
                      seconds: float) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Send a request every 1/rate s whatever the earlier ones are doing, cycling through `urls`;
    per URL name: latencies in ms (from send to the whole answer) and failures.
    The first second warms connections up and is not counted."""
    names = list(urls)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    failures = dict.fromkeys(names, 0)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one(name: str, counted: bool) -> None:
            started = time.perf_counter()
            try:
                async with session.post(urls[name], data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if counted and ok:
                latencies[name].append((time.perf_counter() - started) * 1000.0)
            elif counted:
                failures[name] += 1

        loop = asyncio.get_running_loop()
        warm_up = int(rate)
        start = loop.time() + 0.05
        tasks = []
        for index in range(warm_up + int(rate * seconds)):
            delay = start + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(names[index % len(names)], counted=index >= warm_up)))
        await asyncio.gather(*tasks)
    return latencies, failures


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 100:
        return float("nan"), float("nan")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[98]


if __name__ == "__main__":
    main()
