"""The local endpoint over real HTTP: a router process and one prediction server per deployed model.

The tests run in order against one endpoint (model starts cost seconds each):
deploy, split, rules, failures, restart, undeploy.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import ChildProcess, http_call, image_command, post_many, start_process, wait_until

from serving.cli import main as cli_main
from serving.client import LocalEndpoint
from serving.endpoint import STATE_FILE, EndpointStore
from serving.processes import free_loopback_port
from serving.testing import demo_instances

ENDPOINT = "/v1/endpoints/local"
PREDICT = ENDPOINT + ":predict"


class Endpoint:
    """The router process under test and its state directory."""

    def __init__(self, state_dir: Path, log_dir: Path) -> None:
        self.state_dir = state_dir
        self.log_dir = log_dir
        self.router: ChildProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        port = free_loopback_port()
        self.router = start_process(
            ["runner.py", "endpoint", "--state-dir", str(self.state_dir), "serve", "--port", str(port),
             "--seed", "7"], self.log_dir / f"router-{self.starts}.log", {}, port)
        self.wait_all_ready()

    @property
    def url(self) -> str:
        assert self.router is not None
        return self.router.url

    def describe(self) -> dict[str, Any]:
        answer = http_call("GET", self.url + ENDPOINT)
        assert answer.status == 200, answer.body
        return answer.json()

    def wait_all_ready(self, timeout_s: float = 120.0) -> dict[str, Any]:
        def all_ready() -> dict[str, Any] | None:
            assert self.router is not None
            if self.router.process.poll() is not None:
                raise AssertionError(f"router exited:\n{self.router.log()[-3000:]}")
            try:
                described = self.describe()
            except OSError:
                return None
            states = [model["state"] for model in described["deployedModels"]]
            return described if all(state == "ready" for state in states) else None

        return wait_until(all_ready, timeout_s, "every deployed model to be ready", interval_s=0.1)

    def cli(self, *args: str) -> int:
        return cli_main(["--state-dir", str(self.state_dir), *args])

    @property
    def api(self) -> LocalEndpoint:
        return LocalEndpoint(self.state_dir)


@pytest.fixture(scope="module")
def endpoint(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    root = tmp_path_factory.mktemp("endpoint")
    served = Endpoint(root / "state", root)
    # Deployed before the endpoint runs: `serve` starts what the state holds.
    assert served.cli("deploy", str(demo_model_dir), "--display-name", "champion") == 0
    try:
        served.start()
        yield served
    finally:
        if served.router:
            served.router.stop()


def one_instance_bodies(count: int) -> list[bytes]:
    return [json.dumps({"instances": demo_instances(1, seed=seed)}).encode() for seed in range(count)]


def test_serve_starts_the_deployed_models_it_finds(endpoint: Endpoint) -> None:
    described = endpoint.describe()

    assert described["trafficSplit"] == {"1": 100}
    assert [(model["id"], model["displayName"], model["state"]) for model in described["deployedModels"]] == \
        [("1", "champion", "ready")]
    answer = http_call("POST", endpoint.url + PREDICT, {"instances": demo_instances(3, seed=1)})
    assert answer.status == 200
    assert answer.headers["X-Vertex-AI-Deployed-Model-Id"] == "1"
    assert answer.json()["deployedModelId"] == "1" and len(answer.json()["predictions"]) == 3
    assert endpoint.api.predict(demo_instances(3, seed=1)) == answer.json()


def test_each_deployed_model_runs_the_serving_images_command_with_vertex_variables(endpoint: Endpoint,
                                                                                   demo_model_dir: Path) -> None:
    for model in endpoint.describe()["deployedModels"]:
        proc = Path(f"/proc/{model['pid']}")
        argv = [arg.decode() for arg in (proc / "cmdline").read_bytes().split(b"\0")[:-1]]
        environ = dict(entry.decode().split("=", 1) for entry in (proc / "environ").read_bytes().split(b"\0")
                       if b"=" in entry)

        # The image's CMD, with this machine's interpreter in place of the image's `python`.
        assert Path(argv[0]).resolve() == Path(sys.executable).resolve()
        assert argv[1:] == image_command()[1:]
        assert environ["AIP_STORAGE_URI"] == str(demo_model_dir.resolve())
        assert environ["AIP_DEPLOYED_MODEL_ID"] == model["id"]
        assert model["predictUrl"] == (f"http://127.0.0.1:{environ['AIP_HTTP_PORT']}"
                                       f"{environ['AIP_PREDICT_ROUTE']}")


def test_deploy_through_the_endpoint_returns_once_the_model_is_ready(endpoint: Endpoint, demo_model_dir: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert endpoint.cli("deploy", str(demo_model_dir), "--display-name", "canary", "--split", "0=10", "1=90") == 0

    assert "deployed model 2" in capsys.readouterr().out
    described = endpoint.describe()
    assert described["trafficSplit"] == {"1": 90, "2": 10}
    assert [model["state"] for model in described["deployedModels"]] == ["ready", "ready"]
    assert EndpointStore(endpoint.state_dir).read().traffic_split == {"1": 90, "2": 10}


def test_requests_follow_the_split(endpoint: Endpoint) -> None:
    requests = 2000
    endpoint.api.stats(reset=True)

    results = post_many(endpoint.url + PREDICT, one_instance_bodies(requests), concurrency=16)

    assert Counter(status for status, _, _ in results) == {200: requests}
    served_by = Counter(json.loads(body)["deployedModelId"] for _, _, body in results)
    # Stated tolerance: 4 binomial standard deviations of the canary's share.
    tolerance = 4 * math.sqrt(0.10 * 0.90 / requests)  # 2.7 percentage points at 2000 requests
    assert abs(served_by["2"] / requests - 0.10) <= tolerance, served_by
    stats = endpoint.api.stats()
    assert {deployed_id: stats[deployed_id]["requests"] for deployed_id in stats} == served_by
    for deployed_id in ("1", "2"):
        assert stats[deployed_id]["errors"] == 0 and stats[deployed_id]["clientErrors"] == 0
        latency = stats[deployed_id]["latencyMs"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
        assert stats[deployed_id]["latencySamples"] == served_by[deployed_id]


@pytest.mark.parametrize(("method", "path", "body", "status_name", "message"), [
    ("PATCH", ENDPOINT, {"trafficSplit": {"1": 50, "2": 40}}, "INVALID_ARGUMENT",
     "traffic split percentages must sum to 100, got 90"),
    ("PATCH", ENDPOINT, {"trafficSplit": {"0": 50, "1": 50}}, "INVALID_ARGUMENT",
     "traffic split key '0' is not a deployed model id"),
    ("PATCH", ENDPOINT, {"trafficSplit": {"1": 50, "5": 50}}, "INVALID_ARGUMENT",
     "traffic split key '5' is not a deployed model id"),
    ("PATCH", ENDPOINT, {"split": {"1": 100}}, "INVALID_ARGUMENT", 'expected {"trafficSplit"'),
    ("POST", ENDPOINT + ":undeployModel", {"deployedModelId": "1"}, "FAILED_PRECONDITION",
     "deployed model 1 still has 90% of the traffic"),
    ("POST", ENDPOINT + ":undeployModel", {"deployedModelId": "2", "trafficSplit": {"1": 90, "2": 10}},
     "FAILED_PRECONDITION", "still sends 10% to deployed model 2"),
    ("POST", ENDPOINT + ":deployModel", {"deployedModel": {"model": "/no/such/model"}}, "INVALID_ARGUMENT",
     "'/no/such/model' is not an exported model directory"),
])
def test_split_rules_are_enforced_and_leave_the_state_alone(endpoint: Endpoint, method: str, path: str,
                                                            body: dict[str, Any], status_name: str,
                                                            message: str) -> None:
    before = (endpoint.state_dir / STATE_FILE).read_bytes()

    answer = http_call(method, endpoint.url + path, body)

    assert answer.status == 400
    assert answer.json()["error"]["status"] == status_name
    assert message in answer.message, answer.message
    assert (endpoint.state_dir / STATE_FILE).read_bytes() == before


def test_a_model_that_cannot_load_is_not_deployed(endpoint: Endpoint, demo_model_dir: Path,
                                                  tmp_path: Path) -> None:
    broken = tmp_path / "broken_model"
    shutil.copytree(demo_model_dir, broken)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    revision = endpoint.describe()["revision"]

    answer = http_call("POST", endpoint.url + ENDPOINT + ":deployModel",
                       {"deployedModel": {"model": str(broken)}, "trafficSplit": {"0": 50, "1": 50}},
                       timeout_s=120)

    assert answer.status == 400
    assert "did not become ready; the endpoint is unchanged" in answer.message
    described = endpoint.describe()
    assert described["revision"] == revision and described["trafficSplit"] == {"1": 90, "2": 10}


def test_client_mistakes_are_forwarded_and_counted_apart_from_errors(endpoint: Endpoint) -> None:
    endpoint.api.stats(reset=True)
    bad = {"instances": [{"fare": "ten"}]}

    answers = [http_call("POST", endpoint.url + PREDICT, bad) for _ in range(30)]
    oversize = http_call("POST", endpoint.url + PREDICT, b" " * 1_600_000)
    unknown = http_call("POST", endpoint.url + "/v1/endpoints/other:predict", {"instances": []})

    assert {answer.status for answer in answers} == {400}
    assert "instance 0: feature 'trip_miles' is missing" in answers[0].message
    assert oversize.status == 400 and "over Vertex AI's limit" in oversize.message
    assert unknown.status == 404
    stats = endpoint.api.stats()
    assert sum(stats[deployed_id]["clientErrors"] for deployed_id in stats) == 30
    assert sum(stats[deployed_id]["errors"] for deployed_id in stats) == 0


def test_a_crashed_model_server_is_restarted(endpoint: Endpoint) -> None:
    canary = endpoint.describe()["deployedModels"][1]
    os.kill(canary["pid"], signal.SIGKILL)

    wait_until(lambda: endpoint.describe()["deployedModels"][1]["state"] != "ready", 10, "the crash to be seen")
    described = endpoint.wait_all_ready()

    restarted = described["deployedModels"][1]
    assert restarted["restarts"] == 1 and restarted["pid"] != canary["pid"]


def test_a_restart_of_the_endpoint_keeps_models_and_split(endpoint: Endpoint) -> None:
    assert endpoint.router is not None
    model_pids = [model["pid"] for model in endpoint.describe()["deployedModels"]]
    endpoint.router.stop(signal.SIGKILL)  # no clean shutdown: only the state file survives

    # The model servers die with their router.
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in model_pids), 30, "model servers to exit")
    endpoint.start()

    described = endpoint.describe()
    assert described["trafficSplit"] == {"1": 90, "2": 10}
    assert [(model["id"], model["displayName"]) for model in described["deployedModels"]] == \
        [("1", "champion"), ("2", "canary")]
    results = post_many(endpoint.url + PREDICT, one_instance_bodies(300), concurrency=8)
    assert {status for status, _, _ in results} == {200}
    assert set(json.loads(body)["deployedModelId"] for _, _, body in results) == {"1", "2"}


def test_undeploy_after_moving_the_traffic_stops_the_model(endpoint: Endpoint,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    champion_pid = endpoint.describe()["deployedModels"][0]["pid"]

    assert endpoint.api.update_split({"2": 100}) == {"1": 0, "2": 100}
    assert endpoint.cli("undeploy", "1") == 0

    described = endpoint.describe()
    assert described["trafficSplit"] == {"2": 100}
    assert [model["id"] for model in described["deployedModels"]] == ["2"]
    wait_until(lambda: not Path(f"/proc/{champion_pid}").exists(), 30, "the undeployed model server to exit")
    endpoint.api.stats(reset=True)
    results = post_many(endpoint.url + PREDICT, one_instance_bodies(50), concurrency=4)
    assert {json.loads(body)["deployedModelId"] for _, _, body in results} == {"2"}

    capsys.readouterr()
    assert endpoint.cli("status") == 0
    status = capsys.readouterr().out
    assert f"serving on {endpoint.url}" in status
    assert status.splitlines()[2].split()[:4] == ["2", "100%", "ready", "50"]


def test_a_clean_stop_leaves_every_interval_in_the_metrics_over_time(endpoint: Endpoint) -> None:
    """The console draws the endpoint from this log: requests sent just before the router stops are in it
    (the interval still open is written at the stop), with the documented fields."""
    from serving.metrics_log import INTERVAL_S, read_metrics

    assert endpoint.router is not None
    since = int(time.time()) // INTERVAL_S * INTERVAL_S
    mistakes = [http_call("POST", endpoint.url + PREDICT, {"instances": [{"fare": "ten"}]}) for _ in range(5)]
    assert {answer.status for answer in mistakes} == {400}
    results = post_many(endpoint.url + PREDICT, one_instance_bodies(40), concurrency=4)
    assert {status for status, _, _ in results} == {200}
    endpoint.router.stop()  # SIGTERM
    endpoint.router = None

    rows = list(read_metrics(endpoint.state_dir))
    assert rows and all(set(row) == {"start", "seconds", "deployed_model_id", "requests", "errors", "client_errors",
                                     "latency_ms"} for row in rows)
    # The intervals these requests fell in may hold earlier tests' requests too (hence "at least"); an earlier
    # test's SIGKILL of the router loses the interval it was in, so only this test's own are counted on.
    recent = [row for row in rows if datetime.datetime.fromisoformat(row["start"]).timestamp() >= since
              and row["deployed_model_id"] == "2"]  # the only model since the last test undeployed model 1
    assert sum(row["client_errors"] for row in recent) >= 5  # the 400s, counted apart from errors
    assert sum(row["requests"] for row in recent) >= 45 and sum(row["errors"] for row in recent) == 0
    answered = [row for row in recent if row["requests"] > row["client_errors"] + row["errors"]]
    assert answered and all(0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"] for row in answered)
