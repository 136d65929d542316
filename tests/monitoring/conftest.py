"""Fixtures for monitoring and the local drift chain: the local pipelines API as a process."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from contract.paths import PROJECT_ROOT
from serving.processes import free_loopback_port

PARENT = "projects/local-project/locations/us-central1"


@dataclasses.dataclass
class PipelinesApi:
    """`python runner.py pipelines serve` on a loopback port, its state in `local_dir`."""

    process: subprocess.Popen
    url: str
    local_dir: Path
    log: Path

    def jobs_url(self, job_id: str = "") -> str:
        return f"{self.url}/v1/{PARENT}/pipelineJobs" + (f"/{job_id}" if job_id else "")

    def job(self, job_id: str) -> dict:
        return requests.get(self.jobs_url(job_id), timeout=10).json()

    def stop(self, stop_signal: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
            self.process.wait(timeout=60)


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Polls until `condition()` is truthy and returns it; fails naming `what` after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return value


def start_pipelines_api(local_dir: Path, log: Path, env: dict[str, str] | None = None) -> PipelinesApi:
    port = free_loopback_port()
    with log.open("ab") as log_file:
        process = subprocess.Popen([sys.executable, "runner.py", "pipelines", "serve", "--port", str(port),
                                    "--local-dir", str(local_dir)], cwd=PROJECT_ROOT,
                                   env={**os.environ, **(env or {})}, stdout=log_file, stderr=subprocess.STDOUT)
    api = PipelinesApi(process, f"http://127.0.0.1:{port}", local_dir, log)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the local pipelines API exited: {log.read_text()[-2000:]}")
        try:
            return requests.get(f"{api.url}/health", timeout=1).ok
        except requests.ConnectionError:
            return False

    wait_for(healthy, 30, "the local pipelines API to listen")
    return api


@pytest.fixture
def pipelines_api(tmp_path: Path) -> Iterator[Callable[..., PipelinesApi]]:
    """Starts the local pipelines API (again, on the same state, if called twice); stopped at the end."""
    started: list[PipelinesApi] = []

    def start(env: dict[str, str] | None = None) -> PipelinesApi:
        api = start_pipelines_api(tmp_path / "local", tmp_path / "pipelines_api.log", env)
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()
