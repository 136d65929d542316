"""Serving figures: our request path and the server against the signature in-process, and the router's cost.

    python -m bench serving        (or `make bench` for every benchmark)

1. In process, no HTTP: the exported signature called with ready tensors (the
   baseline), the way the server calls it, our own request path (parse, check,
   convert, answer: everything but the model and HTTP), and the whole request.
   Counted in process CPU time, so other work on a shared machine does not
   count; rounds taken in turns.
2. Throughput, with `wrk` (a C load generator: one pre-encoded body, keep-alive
   connections, its own process) on loopback, at 1 and at 64 instances per
   request, against the signature in this process on the same batches, measured
   in turns with each wrk run. The server runs with 1 worker and with one worker
   per core (the image's default, SERVING_WORKERS=auto). The CPU time of the
   server's processes and of wrk itself is read for every run.
3. Latency of single-instance requests at a fixed request rate, sent open-loop
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
from dataclasses import dataclass
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
BASELINE_SECONDS = 1.5
IN_PROCESS_SECONDS = 0.5
TRIALS = 3
AIM_REQUEST_PATH = 4.0  # our request path at least 4x the signature's instances/s, at 64 instances
AIM_RATIO = {1: 0.6, 2: 0.8}  # server instances/s over the signature's in-process, at 64 instances, by workers
FIXED_RATE = 200  # requests/s in all: under a tenth of one worker's single-instance capacity here
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
        in_process = _InProcess(model_uri, bodies)
        # This process is also the latency load generator: a full collection
        # over TensorFlow's objects would stall it (as in the server, frozen).
        gc.freeze()

        cpu_per_call = _request_path(in_process)
        if wrk:
            _throughput(wrk, model_uri, bodies, in_process, cpu_per_call, scratch)
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


@dataclass(frozen=True)
class _Rate:
    calls_per_s: float  # wall clock
    cpu_s_per_call: float  # this process's CPU time (all its threads, TensorFlow's included)


class _InProcess:
    """The model in this process on the same batches as the server gets, with no HTTP."""

    def __init__(self, model_uri: str, bodies: dict[int, Path]) -> None:
        import tensorflow as tf

        from serving.model import load_model, per_instance

        self.model = load_model(model_uri)
        self.per_instance = per_instance
        self.spec = self.model.spec
        self.bodies = {size: path.read_bytes() for size, path in bodies.items()}
        columns = {size: instances_to_columns(parse_predict_body(body), self.spec)
                   for size, body in self.bodies.items()}
        dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
        # The baseline: the exported signature as any client of the SavedModel calls it, one tensor per feature.
        self.keyword_tensors = {size: {name: tf.constant(batch[name], dtype=dtypes[dtype])
                                       for name, dtype in self.spec.features.items()}
                                for size, batch in columns.items()}
        self.block_tensors = {size: self.model.block_tensors(batch) for size, batch in columns.items()}
        self.outputs = {size: self.model.call_blocks(tensors) for size, tensors in self.block_tensors.items()}

    def signature(self, size: int, seconds: float = BASELINE_SECONDS) -> _Rate:
        signature, tensors = self.model._signature, self.keyword_tensors[size]
        return _rate(lambda: signature(**tensors), seconds)

    def model_call(self, size: int) -> _Rate:
        """The same graph as the server calls it: one tensor per dtype, split inside the graph."""
        model, tensors = self.model, self.block_tensors[size]
        return _rate(lambda: model.call_blocks(tensors), IN_PROCESS_SECONDS)

    def request_path(self, size: int) -> _Rate:
        """Our own work per request: parse, check, convert to tensors, write the answer; no model, no HTTP."""
        model, body, spec, outputs = self.model, self.bodies[size], self.spec, self.outputs[size]
        per_instance = self.per_instance

        def request_path() -> None:
            model.block_tensors(instances_to_columns(parse_predict_body(body), spec))
            orjson.dumps({"predictions": per_instance(outputs)})

        return _rate(request_path, IN_PROCESS_SECONDS)

    def whole_request(self, size: int) -> _Rate:
        """What the server's handler does for a request, model included, minus HTTP."""
        model, body, spec = self.model, self.bodies[size], self.spec
        return _rate(lambda: orjson.dumps({"predictions": model.predictions(
            instances_to_columns(parse_predict_body(body), spec))}), IN_PROCESS_SECONDS)


def _rate(call: Any, seconds: float) -> _Rate:
    for _ in range(50):
        call()
    calls, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        call()
        calls += 1
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return _Rate(calls / wall, cpu / calls)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


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


# -- 1. in process --------------------------------------------------------------------------------------------

def _request_path(in_process: _InProcess) -> dict[int, dict[str, float]]:
    """Print the in-process figures; return the median CPU seconds per call, by batch size and path."""
    print(f"\nin process, no HTTP: instances per second of CPU time (this process's, so other work on the machine "
          f"does not count), median of {TRIALS} rounds taken in turns")
    print("  signature: the exported serving_default called with ready tensors, one per feature (the baseline)")
    print("  model call: the same graph as the server calls it, one tensor per dtype")
    print("  request path: ours alone, parse + check + convert to tensors + write the answer (no model, no HTTP)")
    print(f"  {'instances':>9} {'signature':>10} {'model call':>10} {'request path':>12} {'whole request':>13}   "
          "request path / signature, median (range)")
    cpu_per_call: dict[int, dict[str, float]] = {}
    for size in BATCH_SIZES:
        rounds: dict[str, list[float]] = {"signature": [], "model call": [], "request path": [], "whole": []}
        for _ in range(TRIALS):
            rounds["signature"].append(size / in_process.signature(size, IN_PROCESS_SECONDS).cpu_s_per_call)
            rounds["model call"].append(size / in_process.model_call(size).cpu_s_per_call)
            rounds["request path"].append(size / in_process.request_path(size).cpu_s_per_call)
            rounds["whole"].append(size / in_process.whole_request(size).cpu_s_per_call)
        ratios = [path / signature for path, signature in zip(rounds["request path"], rounds["signature"],
                                                               strict=True)]
        aim = f"   (aim >= {AIM_REQUEST_PATH:.0f}x: {'met' if min(ratios) >= AIM_REQUEST_PATH else 'not met'})" \
            if size == 64 else ""
        print(f"  {size:>9} {statistics.median(rounds['signature']):>10.0f} "
              f"{statistics.median(rounds['model call']):>10.0f} {statistics.median(rounds['request path']):>12.0f} "
              f"{statistics.median(rounds['whole']):>13.0f}   {_spread(ratios)}{aim}")
        cpu_per_call[size] = {path: size / statistics.median(rates) for path, rates in rounds.items()}
    return cpu_per_call


# -- 2. throughput -------------------------------------------------------------------------------------------

def _throughput(wrk: str, model_uri: str, bodies: dict[int, Path], in_process: _InProcess,
                cpu_per_call: dict[int, dict[str, float]], scratch: Path) -> None:
    script = scratch / "post.lua"
    script.write_text(_WRK_SCRIPT)
    print(f"\nthroughput: wrk -t1 -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s on loopback, against the signature in this "
          f"process on the same batches ({BASELINE_SECONDS} s, one thread) measured before each wrk run; "
          f"{TRIALS} runs each")
    print(f"  {'workers':>7} {'instances':>9} {'server inst/s':>13} {'p99 ms':>7} {'errors':>6} "
          f"{'signature inst/s':>16} {'ratio':>5} {'ratio by run':>12}   "
          "CPU per request: server, wrk (load generator)")
    workers_options = sorted({1, os.cpu_count() or 1})
    server_cpu: dict[int, float] = {}  # 1 worker: CPU seconds per request, by batch size
    for workers in workers_options:
        port = free_loopback_port()
        env = {"AIP_STORAGE_URI": model_uri, "AIP_HTTP_PORT": str(port), "SERVING_HOST": "127.0.0.1",
               "SERVING_WORKERS": str(workers), "TF_CPP_MIN_LOG_LEVEL": "2"}
        log_path = scratch / f"server-{workers}.log"
        with _process(["-m", "serving.server"], env, log_path) as server:
            _wait_for(f"http://127.0.0.1:{port}/health", log_path)
            time.sleep(3.0 if workers > 1 else 0.5)  # every worker loaded, not only the first to answer
            server_pids = _server_pids(server.pid)
            for size in BATCH_SIZES:
                # Other work on a shared machine only ever slows a run down, so
                # each side keeps its best of TRIALS runs, taken in turns.
                runs, signature_rates = [], []
                for _ in range(TRIALS):
                    signature_rates.append(in_process.signature(size).calls_per_s * size)
                    cpu_before = _cpu_seconds(server_pids)
                    runs.append(_run_wrk(wrk, script, bodies[size], f"http://127.0.0.1:{port}/predict"))
                    runs[-1]["server_cpu_s"] = _cpu_seconds(server_pids) - cpu_before
                rates = [run["requests"] / run["seconds"] * size for run in runs]
                if workers == 1:
                    server_cpu[size] = sum(run["server_cpu_s"] for run in runs) / sum(run["requests"] for run in runs)
                best = runs[rates.index(max(rates))]
                errors = sum(run["status_errors"] + run["socket_errors"] for run in runs)
                requests = sum(run["requests"] for run in runs)
                by_run = [rate / signature for rate, signature in zip(rates, signature_rates, strict=True)]
                ratio = max(rates) / max(signature_rates)
                aim = f"  aim >= {AIM_RATIO[workers]}: {'met' if min(by_run) >= AIM_RATIO[workers] else 'not met'}" \
                    if size == 64 and workers in AIM_RATIO else ""
                print(f"  {workers:>7} {size:>9} {max(rates):>13.0f} {best['p99_ms']:>7.2f} {errors:>6} "
                      f"{max(signature_rates):>16.0f} {ratio:>5.2f} {min(by_run):>5.2f}-{max(by_run):<5.2f}   "
                      f"{sum(run['server_cpu_s'] for run in runs) / requests * 1e6:>5.0f} µs, "
                      f"{sum(run['wrk_cpu_s'] for run in runs) / requests * 1e6:>3.0f} µs{aim}")
    print("  ratio = the best server run over the best signature run; by run: each wrk run over the signature "
          "measured just before it;")
    print("  errors are summed over all runs; CPU is the server's processes' and wrk's own, per request")
    for size, server_s in server_cpu.items():
        model_us, path_us = (cpu_per_call[size][path] * 1e6 for path in ("model call", "request path"))
        print(f"  1 worker, batch of {size}: a request's CPU {server_s * 1e6:.0f} µs = model call "
              f"{model_us:.0f} + request path {path_us:.0f} (as measured in process above) + "
              f"{server_s * 1e6 - model_us - path_us:.0f} µs of HTTP, the kernel, TensorFlow's thread hand-off "
              "and colder caches between requests")


def _server_pids(pid: int) -> list[int]:
    """The processes that serve: the workers if the server started any, else the server itself."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    workers = [int(child) for child in children.read_text().split()] if children.exists() else []
    return workers or [pid]


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads) so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


def _run_wrk(wrk: str, script: Path, body: Path, url: str) -> dict[str, float]:
    """One wrk run's summary, with wrk's own CPU time (its rusage, read when it is reaped)."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [wrk, "-t1", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s", "--timeout", "10s", "-s", str(script), url],
            env={**os.environ, "BENCH_BODY": str(body)}, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        printed = output.read().decode(errors="replace")
    for line in printed.splitlines():
        if process.returncode == 0 and line.startswith("WRK_JSON "):
            return {**json.loads(line.removeprefix("WRK_JSON ")), "wrk_cpu_s": usage.ru_utime + usage.ru_stime}
    raise RuntimeError(f"wrk exited with {process.returncode} and no summary:\n{printed}")


# -- 3. latency at a fixed rate, with and without the router ------------------------------------------------

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
