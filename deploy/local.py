"""The local backend: the local endpoint (serving/) and the local registry's aliases.

A deployed model serves a registry version when its model URI is that version's
folder. The journal of a transition in progress, the rollout's state and the lock
that makes decisions take turns sit in the endpoint's state directory, beside
`endpoint.json`. The canary's log evidence is the endpoint's request log and the
local BigQuery stand-in beside the registry (deploy/local_evidence.py).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from contract.paths import PROJECT_ROOT
from deploy.plan import Deployed
from deploy.rollout import RolloutState
from registry.model_registry import LocalModelRegistry, ModelVersion
from serving.client import LocalEndpoint
from serving.endpoint import EndpointError, normalize_model_uri
from serving.processes import die_with_parent
from serving.request_log import REQUEST_LOG_DIR
from storage.local_files import file_lock, write_json_atomically

JOURNAL_FILE = "deploy_transition.json"
ROLLOUT_FILE = "canary_rollout.json"
DEPLOY_LOCK = "deploy.lock"
ROUTER_START_TIMEOUT_S = 180.0


def local_endpoint_dir(registry_uri: str, endpoint_display_name: str = "") -> Path:
    """Beside the local registry: `endpoint/` (the one `python runner.py endpoint` uses by default), or
    `endpoints/<name>/` for a named one."""
    base = Path(registry_uri).parent
    return base / "endpoint" if not endpoint_display_name else base / "endpoints" / endpoint_display_name


class LocalBackend:
    def __init__(self, state_dir: str | Path, registry_root: str | Path, model_name: str) -> None:
        self.endpoint = LocalEndpoint(state_dir)
        self.state_dir = Path(state_dir)
        self.registry = LocalModelRegistry(registry_root)
        self.local_dir = Path(registry_root).parent  # the local state: its bigquery/ is the BigQuery stand-in
        self.model_name = model_name
        self.where = f"local endpoint {self.state_dir}"

    def live(self) -> list[Deployed]:
        described = self.endpoint.describe()
        versions = {normalize_model_uri(version.uri): version.version
                    for version in self.registry.versions(self.model_name)}
        return [Deployed(model["id"], versions.get(model["model"], ""), described["trafficSplit"].get(model["id"], 0),
                         model["state"] in ("ready", "not serving"))
                for model in described["deployedModels"]]

    def deploy(self, version: ModelVersion, split: Mapping[str, int]) -> str:
        return self.endpoint.deploy(version.uri, f"{self.model_name}-v{version.version}", split)

    def update_split(self, split: Mapping[str, int]) -> None:
        self.endpoint.update_split(split)

    def undeploy(self, deployed_id: str) -> None:
        self.endpoint.undeploy(deployed_id)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with file_lock(self.state_dir / DEPLOY_LOCK):
            yield

    def read_journal(self) -> dict[str, Any] | None:
        path = self.state_dir / JOURNAL_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def write_journal(self, transition: Mapping[str, Any]) -> None:
        write_json_atomically(self.state_dir / JOURNAL_FILE, dict(transition))

    def clear_journal(self) -> None:
        (self.state_dir / JOURNAL_FILE).unlink(missing_ok=True)

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """The running router, or one started for the duration (stopped after; the state stays)."""
        if self.endpoint.router_url():
            yield
            return
        log_path = self.state_dir / "logs" / "router-started-by-deploy.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            router = subprocess.Popen(
                [sys.executable, str(PROJECT_ROOT / "runner.py"), "endpoint", "--state-dir", str(self.state_dir),
                 "serve", "--port", "0"], cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        try:
            self._wait_ready(router, log_path)
            yield
        finally:
            router.send_signal(signal.SIGTERM)
            try:
                router.wait(timeout=30)
            except subprocess.TimeoutExpired:
                router.kill()
                router.wait()

    def _wait_ready(self, router: subprocess.Popen, log_path: Path) -> None:
        deadline = time.monotonic() + ROUTER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if router.poll() is not None:
                raise EndpointError(f"the endpoint router exited with {router.returncode}; see {log_path}")
            if self.endpoint.router_url():
                states = {model["state"] for model in self.endpoint.describe()["deployedModels"]}
                if states <= {"ready", "failed"}:
                    return
            time.sleep(0.1)
        raise EndpointError(f"the endpoint did not start within {ROUTER_START_TIMEOUT_S:.0f} s; see {log_path}")

    def predict(self, instances: list[dict[str, Any]]) -> tuple[int, str, Any]:
        url = self.endpoint.router_url()
        if not url:
            raise EndpointError(f"no endpoint is serving from {self.state_dir}")
        request = urllib.request.Request(f"{url}/v1/endpoints/{self.endpoint.endpoint_id}:predict",
                                         data=json.dumps({"instances": instances}).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answered_by = response.headers.get("X-Vertex-AI-Deployed-Model-Id", "")
                return response.status, answered_by, json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body.decode(errors="replace")
            return error.code, error.headers.get("X-Vertex-AI-Deployed-Model-Id", ""), parsed

    def start_window(self) -> None:
        if self.endpoint.router_url():
            self.endpoint.stats(reset=True)

    def read_rollout(self) -> RolloutState | None:
        path = self.state_dir / ROLLOUT_FILE
        return RolloutState.from_dict(json.loads(path.read_text())) if path.exists() else None

    def write_rollout(self, state: RolloutState | None) -> None:
        if state is None:
            (self.state_dir / ROLLOUT_FILE).unlink(missing_ok=True)
        else:
            write_json_atomically(self.state_dir / ROLLOUT_FILE, state.to_dict())

    def step_stats(self, live: list[Deployed], since: float, now: float) -> dict[str, Any]:
        """The router's stats since its last reset (the step's start); none while no router runs."""
        from deploy.decision import step_stats_from_router

        return step_stats_from_router(self.endpoint.stats()) if self.endpoint.router_url() else {}

    def query_runner(self, tables=None):
        """The evidence SQL on DuckDB: the request log table is this endpoint's log, the others the stand-in's."""
        from deploy.local_evidence import DEFAULT_TABLES, DuckDBRunner

        return DuckDBRunner(tables or DEFAULT_TABLES, self.state_dir / REQUEST_LOG_DIR, self.local_dir)
