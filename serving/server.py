"""The prediction server: Vertex AI's custom-container contract, on aiohttp.

    AIP_STORAGE_URI=path/or/gs://prefix python -m serving.server

The same command is the serving image's CMD (serving/Dockerfile), what the
local endpoint starts for each deployed model, and what the tests start.

Environment (Vertex AI sets the AIP_* variables on its nodes):
    AIP_STORAGE_URI    the exported model: a local directory or a gs:// prefix (required)
    AIP_HTTP_PORT      port to listen on (default 8080)
    AIP_HEALTH_ROUTE   GET: 200 once the model is loaded, 503 before (default /health)
    AIP_PREDICT_ROUTE  POST {"instances": [...], "parameters": {...}} (default /predict)
    SERVING_HOST       interface to bind (default 0.0.0.0, which Vertex requires;
                       the local endpoint and the tests use 127.0.0.1)
    SERVING_WORKERS    server processes sharing the port (default 1; "auto": one per
                       CPU, as the serving image sets). One Python process uses one
                       core; the kernel spreads connections over the workers
                       (SO_REUSEPORT), each with its own copy of the model. The
                       health route of every worker answers 200 only once every
                       worker has loaded its model: Vertex sends predictions from the
                       first 200 on, to whichever worker the kernel picks.
    SERVING_TF_THREADS TensorFlow intra- and inter-op threads per process (default 1;
                       0 keeps TensorFlow's default, one per core). A request's graph
                       is small: its pools' spinning threads cost more CPU than they
                       save, and parallelism comes from the workers instead.

The port is bound before TensorFlow is even imported; the model loads in a
background thread while the health route answers 503. A model that fails to
load ends the process with exit code 1 (Vertex then restarts the container; the
local endpoint reports the failed deploy).

Vertex's contract (https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements):
the container listens on 0.0.0.0:AIP_HTTP_PORT, answers GET AIP_HEALTH_ROUTE with
200 only when it is ready to serve predictions (other statuses: Vertex sends it
none), and POST AIP_PREDICT_ROUTE with the predictions (docs/fidelity.md, "Serving
container").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from serving.errors import error_response, json_errors
from serving.faults import fault_middleware, faults_for_tests, slow_load_for_tests
from serving.instances import (
    MAX_REQUEST_BYTES,
    Columns,
    InputSpec,
    RequestError,
    instances_to_columns,
    oversize_message,
    parse_predict_body,
)
from serving.processes import die_with_parent

log = logging.getLogger("serving.server")


class PredictionModel(Protocol):
    """What the server needs from a model (serving.model.ServingModel in production)."""

    spec: InputSpec

    def predictions(self, columns: Columns) -> list[dict[str, Any]]: ...


# Set by the worker supervisor in its workers' environment: bind with SO_REUSEPORT, and share readiness.
_WORKER_ENV = "SERVING_WORKER_OF"
_WORKER_INDEX_ENV, _WORKER_COUNT_ENV = "SERVING_WORKER_INDEX", "SERVING_WORKER_COUNT"
_READY_DIR_ENV = "SERVING_READY_DIR"


@dataclass
class WorkerGroup:
    """The workers of one container: each marks itself ready in a folder they share, and each one's health
    route waits for all of them. Without this, the first worker to load answers 200, Vertex starts sending
    predictions, and the kernel hands some to workers still loading, which answer 503."""

    ready_dir: Path
    size: int
    index: int
    _all_ready: bool = False  # once every worker is ready it stays so: one that exits stops the container

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerGroup | None:
        if _READY_DIR_ENV not in env:
            return None
        return cls(Path(env[_READY_DIR_ENV]), int(env[_WORKER_COUNT_ENV]), int(env[_WORKER_INDEX_ENV]))

    def mark_ready(self) -> None:
        (self.ready_dir / f"worker-{self.index}.ready").touch()

    def ready_count(self) -> int:
        return len(list(self.ready_dir.glob("worker-*.ready")))

    def all_ready(self) -> bool:
        self._all_ready = self._all_ready or self.ready_count() >= self.size
        return self._all_ready


@dataclass(frozen=True)
class ServerConfig:
    storage_uri: str
    port: int = 8080
    host: str = "0.0.0.0"
    health_route: str = "/health"
    predict_route: str = "/predict"
    workers: int = 1
    tf_threads: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerConfig:
        storage_uri = env.get("AIP_STORAGE_URI", "")
        if not storage_uri:
            raise ValueError("AIP_STORAGE_URI is not set: point it at the exported model "
                             "(a local directory or a gs:// prefix)")
        port_text = env.get("AIP_HTTP_PORT", "8080")
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"AIP_HTTP_PORT={port_text!r}: expected a port number 0-65535")
        routes = {key: env.get(key, default) for key, default in
                  (("AIP_HEALTH_ROUTE", "/health"), ("AIP_PREDICT_ROUTE", "/predict"))}
        for key, route in routes.items():
            if not route.startswith("/"):
                raise ValueError(f"{key}={route!r}: expected a path starting with /")
        if routes["AIP_HEALTH_ROUTE"] == routes["AIP_PREDICT_ROUTE"]:
            raise ValueError("AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE must differ")
        workers_text = env.get("SERVING_WORKERS", "1")
        if workers_text == "auto":
            workers = os.cpu_count() or 1
        elif workers_text.isdigit() and int(workers_text) > 0:
            workers = int(workers_text)
        else:
            raise ValueError(f"SERVING_WORKERS={workers_text!r}: expected a positive number or 'auto'")
        if workers > 1 and port_text == "0":
            raise ValueError("SERVING_WORKERS > 1 needs a fixed AIP_HTTP_PORT: the workers share it")
        threads_text = env.get("SERVING_TF_THREADS", "1")
        if not threads_text.isdigit():
            raise ValueError(f"SERVING_TF_THREADS={threads_text!r}: expected a number of threads (0: one per core)")
        return cls(storage_uri=storage_uri, port=int(port_text), host=env.get("SERVING_HOST", "0.0.0.0"),
                   health_route=routes["AIP_HEALTH_ROUTE"], predict_route=routes["AIP_PREDICT_ROUTE"],
                   workers=workers, tf_threads=int(threads_text))


class _ServerState:
    def __init__(self, group: WorkerGroup | None) -> None:
        self.group = group
        self.model: PredictionModel | None = None
        self.load_error: str | None = None
        self.load_failed = asyncio.Event()
        # Only the load runs in a thread. Predictions run inline on the event
        # loop: a thread hop per request measured 15-55% slower here (GIL
        # hand-offs cost more than the overlap gains; docs/serving.md), and a
        # call blocks the loop for well under a millisecond.
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self.loader_task: asyncio.Task[None] | None = None


STATE = web.AppKey("state", _ServerState)


def create_app(load: Callable[[], PredictionModel], *, health_route: str = "/health",
               predict_route: str = "/predict", group: WorkerGroup | None = None) -> web.Application:
    """The server as an aiohttp app; `load` runs in a thread after start-up. In a `group` of workers the
    health route answers 200 only once every worker of the group has loaded its model."""

    # Only a server fault reaches the 500: client mistakes are answered as 400s by the handlers.
    errors = json_errors(lambda: f"predictions go to POST {predict_route}, health checks to GET {health_route}",
                         "internal error while predicting: see the server log", log)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[errors])
    app[STATE] = _ServerState(group)
    app.router.add_get(health_route, _health)
    app.router.add_post(predict_route, _predict)

    async def start_loading(app: web.Application) -> None:
        app[STATE].loader_task = asyncio.create_task(_load_in_background(app[STATE], load))

    async def stop(app: web.Application) -> None:
        state = app[STATE]
        if state.loader_task and not state.loader_task.done():
            state.loader_task.cancel()
        state.loader.shutdown(wait=False, cancel_futures=True)

    app.on_startup.append(start_loading)
    app.on_cleanup.append(stop)
    return app


async def _load_in_background(state: _ServerState, load: Callable[[], PredictionModel]) -> None:
    started = time.perf_counter()
    try:
        state.model = await asyncio.get_running_loop().run_in_executor(state.loader, load)
    except Exception as error:
        state.load_error = f"{type(error).__name__}: {error}"
        log.error("the model failed to load: %s", state.load_error)
        state.load_failed.set()
        return
    # TensorFlow and the model leave some 400k long-lived objects; one full
    # garbage collection over them took 300 ms here, a stall for every request
    # in flight. Frozen, they are never scanned again.
    gc.freeze()
    worker = f"worker {state.group.index}: " if state.group else ""
    log.info("%smodel ready in %.1f s", worker, time.perf_counter() - started)
    if state.group:
        state.group.mark_ready()


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.load_error:
        return error_response(503, f"the model failed to load: {state.load_error}")
    if state.model is None:
        return error_response(503, "the model is loading")
    if state.group and not state.group.all_ready():
        return error_response(503, f"the model is loaded here; {state.group.ready_count()} of {state.group.size} "
                                   "workers are ready")
    return web.json_response({"status": "ready"})


async def _predict(request: web.Request) -> web.Response:
    state = request.app[STATE]
    model = state.model
    if model is None:
        return error_response(503, "the model is not loaded yet: wait for the health route to answer 200")
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        return error_response(400, oversize_message(request.content_length))
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # a chunked body with no Content-Length
        return error_response(400, f"request body is over Vertex AI's limit of {MAX_REQUEST_BYTES} bytes")
    try:
        columns = instances_to_columns(parse_predict_body(body), model.spec)
    except RequestError as error:
        return error_response(400, str(error))
    return web.Response(body=orjson.dumps({"predictions": model.predictions(columns)}),
                        content_type="application/json")


def _load_from_storage(storage_uri: str, tf_threads: int) -> PredictionModel:
    if not storage_uri.startswith("gs://"):
        InputSpec.load(storage_uri)  # a wrong path fails now, not after seconds of importing TensorFlow
    from serving.model import limit_tensorflow_threads, load_model  # TensorFlow: after the port is bound

    limit_tensorflow_threads(tf_threads)
    return load_model(storage_uri)


async def serve(config: ServerConfig) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until the model fails to load (exit 1)."""
    group = WorkerGroup.from_env(os.environ)
    load = slow_load_for_tests(lambda: _load_from_storage(config.storage_uri, config.tf_threads),
                               config.storage_uri, group.index if group else 0)
    app = create_app(load, health_route=config.health_route, predict_route=config.predict_route, group=group)
    faults = faults_for_tests(config.storage_uri)  # tests only: see serving/faults.py
    if faults:
        app.middlewares.append(fault_middleware(faults, config.predict_route))
        log.warning("FAULT INJECTION FOR TESTS is on: %s", faults)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024, reuse_port=_WORKER_ENV in os.environ)
    await site.start()
    port = runner.addresses[0][1]
    print(f"serving {config.storage_uri} on http://{config.host}:{port} "
          f"(health {config.health_route}, predict {config.predict_route}, pid {os.getpid()})", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    failed = app[STATE].load_failed
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(failed.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    await runner.cleanup()
    return 1 if failed.is_set() else 0


def run_workers(config: ServerConfig) -> int:
    """Run `config.workers` single-process servers on one port; stop them all when one fails or on SIGTERM."""
    ready_dir = tempfile.mkdtemp(prefix="serving-workers-")
    try:
        return _supervise(config, ready_dir)
    finally:
        shutil.rmtree(ready_dir, ignore_errors=True)


def _supervise(config: ServerConfig, ready_dir: str) -> int:
    env = {**os.environ, "SERVING_WORKERS": "1", _WORKER_ENV: str(os.getpid()), _READY_DIR_ENV: ready_dir,
           _WORKER_COUNT_ENV: str(config.workers)}
    workers = [subprocess.Popen([sys.executable, "-m", "serving.server"], env={**env, _WORKER_INDEX_ENV: str(index)},
                                preexec_fn=die_with_parent)
               for index in range(config.workers)]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    exit_code = 0
    while not stopping:
        exited = [worker for worker in workers if worker.poll() is not None]
        if exited:
            # Stop all: the container restarts whole, rather than serve on at part capacity.
            exit_code = 1
            log.error("worker %d exited with %s: stopping the others", exited[0].pid, exited[0].returncode)
            break
        time.sleep(0.2)
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return exit_code


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServerConfig.from_env(os.environ)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if config.workers > 1:
        return run_workers(config)
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
