"""The local endpoint process: what a Vertex AI endpoint does, on this machine.

Each deployed model runs as its own prediction server (`python -m serving.server`,
the serving image's command) on a loopback port, as each is its own container
on Vertex. The router picks a deployed model for each request at random,
weighted by the traffic split (seedable), forwards the body untouched and
records per deployed model: requests, errors and latency percentiles.

Routes (shaped after Vertex AI's REST API, on http://127.0.0.1:8090 by default):
    POST  /v1/endpoints/local:predict          {"instances": [...]} -> {"predictions", "deployedModelId"}
    GET   /v1/endpoints/local                  deployed models, their state, and the traffic split
    POST  /v1/endpoints/local:deployModel      {"deployedModel": {"model", "displayName"}, "trafficSplit"}
    POST  /v1/endpoints/local:undeployModel    {"deployedModelId", "trafficSplit"?}
    PATCH /v1/endpoints/local                  {"trafficSplit": {...}}  (the whole split)
    GET   /v1/stats, POST /v1/stats:reset      per deployed model: requests, errors, latency
    GET   /health                              200 while the router runs

While it serves, the router is the only writer of the state directory (it
holds `serve.lock`); a deploy commits the new state only once the new model's
server answers its health check, so a model that cannot load leaves the
endpoint as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson
from aiohttp import web

from contract.paths import PROJECT_ROOT
from serving.endpoint import (
    ROUTER_FILE,
    SERVE_LOCK,
    DeployedModel,
    EndpointError,
    EndpointState,
    EndpointStore,
    UndeployRefused,
    check_model_uri,
    normalize_model_uri,
    plan_deploy,
    plan_undeploy,
    plan_update_split,
)
from serving.errors import error_response, json_errors
from serving.instances import MAX_REQUEST_BYTES, oversize_message
from serving.metrics_log import INTERVAL_S, MetricsLog, nearest_rank
from serving.processes import die_with_parent, free_loopback_port
from serving.request_log import REQUEST_LOG_DIR, RequestLog, RequestLogSettings
from storage.local_files import write_json_atomically

log = logging.getLogger("serving.router")

DEFAULT_PORT = 8090
LATENCY_WINDOW = 10_000  # percentiles are over each model's most recent successful requests
# For the canary decision: the distribution of each model's predicted probability (fixed bins on [0, 1]),
# and requests per time bucket (traffic per model over the window).
PREDICTION_BINS = 20
TIMELINE_BUCKET_S = 10
TIMELINE_BUCKETS = 720  # two hours
_JSON = {"Content-Type": "application/json"}


class AlreadyServing(EndpointError):
    """Another router holds this state directory."""


@dataclass(frozen=True)
class RouterConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    seed: int | None = None
    ready_timeout_s: float = 180.0
    request_timeout_s: float = 60.0
    # Vertex-style request-response logging (serving/request_log.py); MLOPS_REQUEST_LOG=off turns it off.
    request_log: RequestLogSettings = field(default_factory=RequestLogSettings.from_env)


class ModelStats:
    """Counters since the router started (or since the last reset) for one deployed model."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.errors = 0  # 5xx answers and failed connections: the model's fault
        self.client_errors = 0  # 4xx answers: the request's fault
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.since = time.time()
        self.prediction_histogram = [0] * PREDICTION_BINS
        self.timeline: dict[int, int] = {}

    def record_predictions(self, predictions: Any) -> None:
        """Counts each answer's `probability` into its bin; answers without one are not counted."""
        if not isinstance(predictions, list):
            return
        for prediction in predictions:
            probability = prediction.get("probability") if isinstance(prediction, dict) else None
            if isinstance(probability, int | float) and 0.0 <= probability <= 1.0:
                self.prediction_histogram[min(PREDICTION_BINS - 1, int(probability * PREDICTION_BINS))] += 1

    def record(self, status: int, latency_ms: float | None) -> None:
        bucket = int(time.time()) // TIMELINE_BUCKET_S * TIMELINE_BUCKET_S
        self.timeline[bucket] = self.timeline.get(bucket, 0) + 1
        if len(self.timeline) > TIMELINE_BUCKETS:
            del self.timeline[min(self.timeline)]
        self.requests += 1
        if status >= 500:
            self.errors += 1
        elif status >= 400:
            self.client_errors += 1
        elif latency_ms is not None:
            self.latencies_ms.append(latency_ms)

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def percentile(share: float) -> float | None:
            value = nearest_rank(ordered, share)
            return None if value is None else round(value, 3)

        return {
            "requests": self.requests,
            "errors": self.errors,
            "clientErrors": self.client_errors,
            "errorRate": round(self.errors / self.requests, 6) if self.requests else 0.0,
            "latencyMs": {"p50": percentile(0.50), "p95": percentile(0.95), "p99": percentile(0.99)},
            "latencySamples": len(ordered),
            "since": self.since,
            "predictionHistogram": list(self.prediction_histogram),
            "requestsPerBucket": {str(bucket): count for bucket, count in sorted(self.timeline.items())},
            "bucketSeconds": TIMELINE_BUCKET_S,
        }


class ModelServer:
    """The prediction server process of one deployed model."""

    def __init__(self, deployed: DeployedModel, endpoint_id: str, log_dir: Path,
                 session: aiohttp.ClientSession) -> None:
        self.deployed = deployed
        self.endpoint_id = endpoint_id
        self.log_path = log_dir / f"deployed-model-{deployed.id}.log"
        self.session = session
        self.state = "starting"  # starting -> ready; failed; stopped
        self.restarts = 0
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None
        self.supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        route = f"/v1/endpoints/{endpoint_id}/deployedModels/{deployed.id}"
        self.health_route, self.predict_route = route, f"{route}:predict"
        self.predict_url = ""

    async def spawn(self) -> None:
        self.port = free_loopback_port()
        self.predict_url = f"http://127.0.0.1:{self.port}{self.predict_route}"
        self.state = "starting"
        env = {
            **os.environ,
            "AIP_STORAGE_URI": self.deployed.model_uri,
            "AIP_HTTP_PORT": str(self.port),
            "AIP_HEALTH_ROUTE": self.health_route,
            "AIP_PREDICT_ROUTE": self.predict_route,
            "AIP_DEPLOYED_MODEL_ID": self.deployed.id,
            "AIP_ENDPOINT_ID": self.endpoint_id,
            "AIP_MODE": "PREDICTION",
            "SERVING_HOST": "127.0.0.1",
            "SERVING_WORKERS": "1",  # several models share this machine
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "serving.server", env=env, cwd=PROJECT_ROOT,
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
                # Own session: Ctrl-C on `endpoint serve` reaches the router only,
                # which then stops its models in order.
                start_new_session=True, preexec_fn=die_with_parent)

    async def wait_ready(self, timeout_s: float) -> bool:
        """Poll the health route until 200, the process exits, or the timeout passes."""
        url = f"http://127.0.0.1:{self.port}{self.health_route}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.returncode is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        self.state = "ready"
                        return True
            await asyncio.sleep(0.1)
        self.state = "failed"
        return False

    def supervise(self, ready_timeout_s: float) -> None:
        """Restart the server whenever it exits, as Vertex restarts a failed container."""
        self.supervisor = asyncio.create_task(self._supervise(ready_timeout_s))

    async def _supervise(self, ready_timeout_s: float) -> None:
        assert self.process is not None
        while not self._stopping:
            returncode = await self.process.wait()
            if self._stopping:
                return
            self.state = "failed"
            self.restarts += 1
            backoff_s = min(30.0, 2.0 ** min(self.restarts, 5))
            log.warning("deployed model %s exited with %s; restart %d in %.0f s (log: %s)",
                        self.deployed.id, returncode, self.restarts, backoff_s, self.log_path)
            await asyncio.sleep(backoff_s)
            if self._stopping:
                return
            await self.spawn()
            await self.wait_ready(ready_timeout_s)

    async def stop(self) -> None:
        self._stopping = True
        self.state = "stopped"
        if self.supervisor:
            self.supervisor.cancel()
        if self.process and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> dict[str, Any]:
        return {"id": self.deployed.id, "model": self.deployed.model_uri,
                "displayName": self.deployed.display_name, "createTime": self.deployed.create_time,
                "state": self.state, "predictUrl": self.predict_url, "restarts": self.restarts,
                "pid": self.process.pid if self.process else None, "log": str(self.log_path)}


def routing_table(split: Mapping[str, int]) -> tuple[str, ...]:
    """100 slots, one per percent: a uniform slot is a draw weighted by the split."""
    return tuple(deployed_id for deployed_id, percent in split.items() for _ in range(percent))


class Router:
    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.store = EndpointStore(config.state_dir)
        self.state = EndpointState()
        self.servers: dict[str, ModelServer] = {}
        self.stats: dict[str, ModelStats] = {}
        self.table: tuple[str, ...] = ()
        self.rng = random.Random(config.seed)
        self.url = ""
        self._mutations = asyncio.Lock()
        self._lock_file: IO[str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.request_log: RequestLog | None = None
        self.metrics_log: MetricsLog | None = None
        self._metrics_flusher: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._hold_serve_lock()
        self.state = self.store.read()
        if self.config.request_log.enabled:
            self.request_log = RequestLog(self.config.state_dir / REQUEST_LOG_DIR, self.state.endpoint_id,
                                          self.config.request_log)
        self.metrics_log = MetricsLog(self.config.state_dir)
        self._metrics_flusher = asyncio.create_task(self._flush_metrics())
        # One pooled keep-alive client for all forwarding: a new connection per
        # request would cost more than the whole routing decision.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_s), auto_decompress=False)
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=10.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.host, self.config.port, backlog=1024).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.config.host}:{port}"
        write_json_atomically(self.config.state_dir / ROUTER_FILE, {"url": self.url, "pid": os.getpid()})
        for deployed in self.state.deployed_models:
            self.servers[deployed.id] = await self._spawn(deployed)
        self._install(self.state)
        await asyncio.gather(*(self._await_ready(server) for server in self.servers.values()))

    async def _await_ready(self, server: ModelServer) -> None:
        if await server.wait_ready(self.config.ready_timeout_s):
            log.info("deployed model %s ready on port %d", server.deployed.id, server.port)
        else:
            log.error("deployed model %s did not become ready:\n%s", server.deployed.id, server.log_tail())
        server.supervise(self.config.ready_timeout_s)

    async def stop(self) -> None:
        if self._lock_file is None:
            return  # never started: the state directory belongs to someone else
        (self.config.state_dir / ROUTER_FILE).unlink(missing_ok=True)
        await asyncio.gather(*(server.stop() for server in self.servers.values()))
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()
        if self.request_log:
            self.request_log.close()
        if self._metrics_flusher:
            self._metrics_flusher.cancel()
        if self.metrics_log:
            self.metrics_log.flush(everything=True)
        if self._lock_file:
            self._lock_file.close()  # releases serve.lock

    async def _flush_metrics(self) -> None:
        """Writes each interval soon after it ends, also when no request comes to close it."""
        while True:
            await asyncio.sleep(INTERVAL_S)
            self.metrics_log.flush()

    def _record(self, deployed_id: str, stats: ModelStats, status: int, latency_ms: float | None) -> None:
        """Into the counters since the last reset (taken before the request: an undeploy may drop them
        meanwhile), and into the metrics kept over time."""
        stats.record(status, latency_ms)
        if self.metrics_log:
            self.metrics_log.record(deployed_id, status, latency_ms)

    def _hold_serve_lock(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.config.state_dir / SERVE_LOCK, "a+")  # noqa: SIM115 (held for the router's life)
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise AlreadyServing(f"an endpoint is already serving from {self.config.state_dir} "
                                 f"(see {self.config.state_dir / ROUTER_FILE})") from None
        self._lock_file = lock_file

    async def _spawn(self, deployed: DeployedModel) -> ModelServer:
        assert self._session is not None
        server = ModelServer(deployed, self.state.endpoint_id, self.config.state_dir / "logs", self._session)
        await server.spawn()
        return server

    def _install(self, state: EndpointState) -> None:
        """Switch to a new state in one assignment each: a request sees the old split or the new one."""
        for deployed_id in state.ids():
            self.stats.setdefault(deployed_id, ModelStats())
        self.state = state
        self.table = routing_table(state.traffic_split)

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        def endpoint_error(error: Exception) -> web.Response | None:
            if isinstance(error, UndeployRefused):
                return error_response(400, str(error), "FAILED_PRECONDITION")
            if isinstance(error, EndpointError):
                return error_response(400, str(error))
            return None

        errors = json_errors(lambda: f"predictions go to POST /v1/endpoints/{self.state.endpoint_id}:predict",
                             "internal error in the endpoint router: see its log", log, endpoint_error)
        app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[errors])
        app.router.add_post("/v1/endpoints/{endpoint_id}:predict", self._predict)
        app.router.add_post("/v1/endpoints/{endpoint_id}:deployModel", self._deploy)
        app.router.add_post("/v1/endpoints/{endpoint_id}:undeployModel", self._undeploy)
        app.router.add_get("/v1/endpoints/{endpoint_id}", self._describe)
        app.router.add_patch("/v1/endpoints/{endpoint_id}", self._update_split)
        app.router.add_get("/v1/stats", self._stats)
        app.router.add_post("/v1/stats:reset", self._reset_stats)
        app.router.add_get("/health", self._health)
        return app

    def _check_endpoint(self, request: web.Request) -> None:
        if request.match_info["endpoint_id"] != self.state.endpoint_id:
            raise web.HTTPNotFound()

    async def _predict(self, request: web.Request) -> web.Response:
        self._check_endpoint(request)
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            return error_response(400, oversize_message(request.content_length))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(400, f"request body is over Vertex AI's limit of {MAX_REQUEST_BYTES} bytes")
        table = self.table
        if not table:
            return error_response(503, f"endpoint {self.state.endpoint_id!r} has no deployed model with "
                                       "traffic: deploy one (python runner.py endpoint deploy MODEL_URI)")
        deployed_id = table[int(self.rng.random() * len(table))]
        server, stats = self.servers[deployed_id], self.stats[deployed_id]
        headers = {"X-Vertex-AI-Deployed-Model-Id": deployed_id}
        if server.state != "ready":
            self._record(deployed_id, stats, 503, None)
            return _with_headers(error_response(503, f"deployed model {deployed_id} is {server.state}"),
                                 headers)
        assert self._session is not None
        started = time.perf_counter()
        try:
            async with self._session.post(server.predict_url, data=body, headers=_JSON) as response:
                status, payload = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            self._record(deployed_id, stats, 503, None)
            return _with_headers(error_response(
                503, f"deployed model {deployed_id} is unavailable: {type(error).__name__} {error}"), headers)
        self._record(deployed_id, stats, status, (time.perf_counter() - started) * 1000.0)
        if status == 200:
            # Vertex names the deployed model that answered in the response body.
            answer = orjson.loads(payload)
            stats.record_predictions(answer.get("predictions"))
            answer["deployedModelId"] = deployed_id
            payload = orjson.dumps(answer)
            if self.request_log:
                self.request_log.write(deployed_id, body, payload)
        return web.Response(status=status, body=payload, content_type="application/json", headers=headers)

    async def _describe(self, request: web.Request) -> web.Response:
        self._check_endpoint(request)
        return web.json_response(self.describe())

    def describe(self) -> dict[str, Any]:
        return {"name": self.state.endpoint_id, "url": self.url, "revision": self.state.revision,
                "trafficSplit": self.state.traffic_split,
                "deployedModels": [self.servers[deployed_id].describe() for deployed_id in self.state.ids()]}

    async def _deploy(self, request: web.Request) -> web.Response:
        self._check_endpoint(request)
        body = await _json_body(request)
        deployed_spec = body.get("deployedModel")
        if not isinstance(deployed_spec, dict) or not isinstance(deployed_spec.get("model"), str):
            raise EndpointError('expected {"deployedModel": {"model": "<model uri>", "displayName": "..."}, '
                                '"trafficSplit": {...}}')
        model_uri = normalize_model_uri(deployed_spec["model"])
        check_model_uri(model_uri)
        async with self._mutations:
            # Check the rules before paying for a model start; re-planned below
            # against the same state (no other writer while we hold the lock).
            planned, new_id = plan_deploy(self.state, model_uri, str(deployed_spec.get("displayName") or ""),
                                          body.get("trafficSplit"))
            server = await self._spawn(planned.deployed_model(new_id))
            if not await server.wait_ready(self.config.ready_timeout_s):
                await server.stop()
                raise EndpointError(f"deployed model {new_id} ({model_uri}) did not become ready; the "
                                    f"endpoint is unchanged. Its log ({server.log_path}) ends:\n"
                                    f"{server.log_tail()}")
            with self.store.locked():
                self.store.write(planned)
            self.servers[new_id] = server
            server.supervise(self.config.ready_timeout_s)
            self._install(planned)
        log.info("deployed %s as %s; split %s", model_uri, new_id, planned.traffic_split)
        return web.json_response({"deployedModel": server.describe(), "trafficSplit": planned.traffic_split})

    async def _update_split(self, request: web.Request) -> web.Response:
        self._check_endpoint(request)
        body = await _json_body(request)
        if "trafficSplit" not in body:
            raise EndpointError('expected {"trafficSplit": {deployed model id: percent, ...}}')
        async with self._mutations:
            updated = plan_update_split(self.state, body["trafficSplit"])
            with self.store.locked():
                self.store.write(updated)
            self._install(updated)
        log.info("traffic split is now %s", updated.traffic_split)
        return web.json_response(self.describe())

    async def _undeploy(self, request: web.Request) -> web.Response:
        self._check_endpoint(request)
        body = await _json_body(request)
        deployed_id = body.get("deployedModelId")
        if not isinstance(deployed_id, str):
            raise EndpointError('expected {"deployedModelId": "<id>", "trafficSplit": {...} (optional)}')
        async with self._mutations:
            updated = plan_undeploy(self.state, deployed_id, body.get("trafficSplit"))
            with self.store.locked():
                self.store.write(updated)
            self._install(updated)
            server = self.servers.pop(deployed_id)
            self.stats.pop(deployed_id, None)
        # In-flight requests to it finish: the server drains before it exits.
        await server.stop()
        log.info("undeployed %s; split %s", deployed_id, updated.traffic_split)
        return web.json_response(self.describe())

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats_snapshot())

    def stats_snapshot(self) -> dict[str, Any]:
        per_model = {deployed_id: self.stats[deployed_id].snapshot() for deployed_id in self.state.ids()}
        return {"endpoint": self.state.endpoint_id, "trafficSplit": self.state.traffic_split,
                "deployedModels": per_model}

    async def _reset_stats(self, request: web.Request) -> web.Response:
        for stats in self.stats.values():
            stats.reset()
        return web.json_response(self.stats_snapshot())

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "revision": self.state.revision})


def _with_headers(response: web.Response, headers: Mapping[str, str]) -> web.Response:
    response.headers.update(headers)
    return response


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as error:
        raise EndpointError(f"request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise EndpointError("request body must be a JSON object")
    return body


async def run_router(config: RouterConfig, on_ready: Callable[[Router], None] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the state directory keeps everything for the next start."""
    router = Router(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    starting = asyncio.create_task(router.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        # Ctrl-C while models are still loading stops at once, not after them.
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # raises what start-up raised
            if on_ready:
                on_ready(router)
            await stopping
    finally:
        for task in (starting, stopping):
            task.cancel()
        await asyncio.gather(starting, stopping, return_exceptions=True)
        await router.stop()
    return 0
