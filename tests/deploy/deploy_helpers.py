"""Helpers for the deploy tests: registering demo versions, a local backend, the router as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from contract.paths import PROJECT_ROOT
from deploy.local import LocalBackend
from registry.model_registry import LocalModelRegistry, ModelVersion, register_blessed_model
from serving.client import LocalEndpoint
from serving.faults import ALLOW_ENV, FAULTS_FILE
from serving.processes import die_with_parent

MODEL_NAME = "demo-taxi"


def register(registry_root: Path, model_dir: Path, faults: dict | None = None) -> ModelVersion:
    """A registered version, as the training pipeline's register step leaves it; `faults`: tests only."""
    version = register_blessed_model(LocalModelRegistry(registry_root), MODEL_NAME, str(model_dir),
                                     {"data_uri": "test"})
    if faults:
        (Path(version.uri) / FAULTS_FILE).write_text(json.dumps(faults))
    return version


def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "endpoint", tmp_path / "registry", MODEL_NAME)


class RouterProcess:
    """`python runner.py endpoint serve` on a free port, fault injection allowed (tests only)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(state_dir / "router-test.log", "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "runner.py"), "endpoint", "--state-dir", str(state_dir), "serve",
             "--port", "0", "--seed", "7"], cwd=PROJECT_ROOT, env={**os.environ, ALLOW_ENV: "1"},
            stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self.endpoint = LocalEndpoint(state_dir)
        deadline = time.monotonic() + 120
        while not self.endpoint.router_url():
            assert self.process.poll() is None, (state_dir / "router-test.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the router did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.log.close()


def send_traffic(target: LocalBackend, requests: int) -> dict[str, int]:
    """`requests` single-instance predictions through the endpoint; answers counted by deployed model."""
    from serving.testing import demo_instances

    answered: dict[str, int] = {}
    for instance in demo_instances(requests, seed=11):
        status, deployed_id, _ = target.predict([instance])
        answered[deployed_id] = answered.get(deployed_id, 0) + 1
    return answered


def split_by_version(target: LocalBackend) -> dict[str, int]:
    return {model.version: model.percent for model in target.live()}
