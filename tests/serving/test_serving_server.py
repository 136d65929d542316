"""The prediction server over real HTTP on loopback: Vertex's custom-container contract."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from serving_helpers import (
    Answer,
    ChildProcess,
    http_call,
    post_many,
    start_server,
    try_status,
    wait_healthy,
    wait_until,
)

from serving.faults import ALLOW_ENV, FAULTS_FILE
from serving.instances import MAX_REQUEST_BYTES, Columns, InputSpec
from serving.processes import free_loopback_port
from serving.server import create_app
from serving.testing import demo_instances

PREDICT = "/predict"


def test_health_answers_503_while_loading_then_200(model_server: ChildProcess) -> None:
    # The fixture polled from process start: the port is bound before
    # TensorFlow is imported, so the loading phase is seconds long.
    seen = model_server.statuses_seen
    assert seen[-1] == 200
    assert 503 in seen and seen.index(503) < seen.index(200), seen
    assert set(seen) == {503, 200}, seen


def test_predictions_equal_the_saved_model_called_directly(
        model_server: ChildProcess, direct_predict: Callable[[list[dict[str, Any]]], list[float]]) -> None:
    instances = demo_instances(50, seed=3, missing_share=0.2)
    assert any(value is None for instance in instances for value in instance.values())

    answer = http_call("POST", model_server.url + PREDICT, {"instances": instances, "parameters": {}})

    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    predictions = answer.json()["predictions"]
    assert [set(prediction) for prediction in predictions] == [{"probability"}] * 50
    # Same batch, same graph: bit-for-bit equal, in instance order.
    assert [prediction["probability"] for prediction in predictions] == direct_predict(instances)


def test_each_instance_is_predicted_as_in_any_other_batch(
        model_server: ChildProcess, direct_predict: Callable[[list[dict[str, Any]]], list[float]]) -> None:
    instances = demo_instances(5, seed=4)

    singles = [http_call("POST", model_server.url + PREDICT, {"instances": [instance]}).json()["predictions"][0]
               for instance in instances]

    assert [single["probability"] for single in singles] == pytest.approx(direct_predict(instances), rel=1e-6)


VALID = demo_instances(1, seed=5, missing_share=0.0)[0]


def with_value(feature: str, value: object) -> dict[str, object]:
    return {**VALID, feature: value}


BAD_REQUESTS = [
    pytest.param({"instances": [VALID, {k: v for k, v in VALID.items() if k != "fare"}]},
                 "instance 1: feature 'fare' is missing", id="missing-feature"),
    pytest.param({"instances": [with_value("trip_miles", "far")]},
                 "instance 0: feature 'trip_miles' must be a number (float32), got string", id="string-for-float"),
    pytest.param({"instances": [VALID, VALID, with_value("trip_start_hour", 7.5)]},
                 "instance 2: feature 'trip_start_hour' must be an integer (int64), got 7.5", id="float-for-int"),
    pytest.param({"instances": [with_value("pickup_community_area", True)]},
                 "instance 0: feature 'pickup_community_area' must be an integer (int64), got boolean",
                 id="bool-for-int"),
    pytest.param({"instances": [with_value("payment_type", 1)]},
                 "instance 0: feature 'payment_type' must be a string, got number", id="number-for-string"),
    pytest.param({"instances": [VALID, [1, 2]]}, "instance 1 must be a JSON object", id="instance-not-object"),
    pytest.param({"instances": []}, '"instances" is empty', id="empty-instances"),
    pytest.param({"inputs": [VALID]}, 'request body has no "instances"', id="no-instances"),
    pytest.param(b'{"instances": [', "request body is not valid JSON", id="not-json"),
    pytest.param(b"\xc3\x28", "request body is not valid JSON", id="not-utf8"),
    pytest.param(b"[" * 100_000, "request body is not valid JSON", id="nested-too-deep"),
    pytest.param(b'{"instances": [' + b" " * MAX_REQUEST_BYTES + b"]}",
                 f"request body is {MAX_REQUEST_BYTES + 17} bytes, over Vertex AI's limit", id="over-1.5MB"),
]


@pytest.mark.parametrize(("body", "expected"), BAD_REQUESTS)
def test_bad_requests_get_400_naming_what_was_wrong(model_server: ChildProcess, body: dict[str, Any] | bytes,
                                                    expected: str) -> None:
    answer = http_call("POST", model_server.url + PREDICT, body)

    assert answer.status == 400, answer.body[:300]
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert answer.message.startswith(expected), answer.message


def test_oversize_body_without_content_length_is_refused_too(model_server: ChildProcess) -> None:
    chunks = [b'{"instances": ['] + [b" " * 65536] * 25 + [b"]}"]  # 1.6 MB, chunked

    answer = http_call("POST", model_server.url + PREDICT, iter(chunks))

    assert answer.status == 400
    assert "over Vertex AI's limit of 1572864 bytes" in answer.message


def test_unknown_routes_are_404_and_wrong_methods_405(model_server: ChildProcess) -> None:
    unknown = http_call("POST", model_server.url + "/v1/models/x:predict", {"instances": [VALID]})
    wrong_method = http_call("GET", model_server.url + PREDICT)

    assert unknown.status == 404 and "predictions go to POST /predict" in unknown.message
    assert wrong_method.status == 405 and "use POST" in wrong_method.message


def test_client_mistakes_never_kill_the_server(model_server: ChildProcess) -> None:
    # Run after the bad-request tests in this module: the process is the same one.
    assert model_server.process.poll() is None
    answer = http_call("POST", model_server.url + PREDICT, {"instances": [VALID]})
    assert answer.status == 200
    assert "Traceback" not in model_server.log()


def test_bounded_load_run_has_zero_errors(model_server: ChildProcess) -> None:
    batches = [demo_instances(size, seed=seed) for seed, size in enumerate([1, 8, 64] * 200)]
    bodies = [json.dumps({"instances": batch}).encode() for batch in batches]

    results = post_many(model_server.url + PREDICT, bodies, concurrency=16)

    assert [status for status, _, _ in results] == [200] * len(bodies)
    assert [len(json.loads(body)["predictions"]) for _, _, body in results] == [len(batch) for batch in batches]


def test_missing_storage_uri_is_a_clear_start_up_error(tmp_path: Path) -> None:
    server = start_server("", tmp_path / "server.log")

    assert server.process.wait(timeout=30) == 2
    assert "AIP_STORAGE_URI is not set" in server.log()


def test_a_model_that_cannot_load_ends_the_process_with_exit_code_1(tmp_path: Path) -> None:
    server = start_server(tmp_path / "no-model-here", tmp_path / "server.log")
    try:
        assert server.process.wait(timeout=30) == 1
    finally:
        server.stop()
    assert "input_spec.json is missing" in server.log()


# -- in-process: the load is gated by the test, so "before load" is deterministic ---------------------------

class _GatedModel:
    spec = InputSpec(features={"x": "float32"}, outputs=("double",))

    def predictions(self, columns: Columns) -> list[dict[str, Any]]:
        return [{"double": 2 * value} for value in columns["x"].tolist()]


@pytest.fixture
def gated_server() -> Iterator[tuple[str, threading.Event]]:
    """The server app with a loader that waits for the test's signal, on its own event loop thread."""
    release = threading.Event()
    port = free_loopback_port()
    loop = asyncio.new_event_loop()

    def load() -> _GatedModel:
        assert release.wait(timeout=30), "the test never released the loader"
        return _GatedModel()

    runner = web.AppRunner(create_app(load, health_route="/ready", predict_route="/score"))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", release
    finally:
        release.set()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def test_health_and_predict_wait_for_the_model_on_the_configured_routes(
        gated_server: tuple[str, threading.Event]) -> None:
    url, release = gated_server

    assert try_status(url + "/ready") == 503
    early = http_call("POST", url + "/score", {"instances": [{"x": 1.5}]})
    assert early.status == 503 and "not loaded yet" in early.message

    release.set()
    wait_until(lambda: try_status(url + "/ready") == 200, 10, "the gated model to load")
    answer = http_call("POST", url + "/score", {"instances": [{"x": 1.5}, {"x": None}, {"x": 4}]})
    assert answer.status == 200
    predictions = answer.json()["predictions"]
    assert predictions[0] == {"double": 3.0} and predictions[2] == {"double": 8.0}
    assert predictions[1] == {"double": None}  # NaN: orjson writes null, valid JSON


# -- several workers on one port ---------------------------------------------------------------------------

def test_workers_share_the_port_and_stop_together(demo_model_dir: Path, tmp_path: Path) -> None:
    server = start_server(demo_model_dir, tmp_path / "server.log", {"SERVING_WORKERS": "2"})
    try:
        wait_healthy(server)
        workers = wait_until(lambda: _children(server.process.pid) if len(_children(server.process.pid)) == 2
                             else None, 10, "two worker processes")
        # Fresh connections are spread by the kernel; every worker must be ready.
        wait_until(lambda: all(try_status(server.url + "/health") == 200 for _ in range(20)), 60,
                   "every worker to load the model")
        bodies = [json.dumps({"instances": demo_instances(4, seed=seed)}).encode() for seed in range(100)]
        assert [status for status, _, _ in post_many(server.url + PREDICT, bodies, concurrency=8)] == [200] * 100
    finally:
        assert server.stop() == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def test_with_workers_health_waits_for_the_slowest_and_no_prediction_after_the_first_200_gets_503(
        demo_model_dir: Path, tmp_path: Path) -> None:
    # Vertex sends predictions from the first 200 of the health route on, and the kernel gives each new
    # connection to any worker: a worker still loading would answer them 503. Worker 1 loads 5 s late here.
    model = Path(shutil.copytree(demo_model_dir, tmp_path / "model"))
    (model / FAULTS_FILE).write_text(json.dumps({"load_delay_ms_by_worker": {"1": 5000}}))
    server = start_server(model, tmp_path / "server.log", {"SERVING_WORKERS": "2", ALLOW_ENV: "1"})
    waiting_on_the_slow_one = []  # 503s answered while one worker had its model already

    def healthy() -> bool:
        assert server.process.poll() is None, server.log()[-3000:]
        answer = _try_call("GET", server.url + "/health")
        if answer is None or answer.status != 200:
            if answer is not None and server.log().count("model ready in") == 1:
                waiting_on_the_slow_one.append(answer.message)
            return False
        return True

    try:
        wait_until(healthy, 90, "the health route to answer 200", interval_s=0.02)
        # Every worker had its model when health first said 200 (each logs before it marks itself ready).
        assert re.findall(r"worker (\d): model ready", server.log()) in (["0", "1"], ["1", "0"]), server.log()
        # ...and the loaded worker said 503 while the other loaded (where it used to say 200).
        assert "the model is loaded here; 1 of 2 workers are ready" in waiting_on_the_slow_one, waiting_on_the_slow_one
        # Fresh connections, so both workers get some; not one may answer 503.
        statuses = [http_call("POST", server.url + PREDICT, {"instances": demo_instances(2, seed=seed)}).status
                    for seed in range(60)]
        assert statuses == [200] * 60, statuses
    finally:
        assert server.stop() == 0


def _try_call(method: str, url: str) -> Answer | None:
    try:
        return http_call(method, url, timeout_s=2)
    except (ConnectionError, OSError):
        return None


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []

