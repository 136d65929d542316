"""Fixtures for monitoring and the local drift chain: the local pipelines API as a process."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from monitoring.local_chain import child
from pipelines.local_jobs_api import LOCAL_FIELD, read_job
from serving.processes import free_loopback_port

PARENT = "projects/local-project/locations/us-central1"


@dataclasses.dataclass
class PipelinesApi:
    """`python runner.py pipelines serve` on a loopback port, its state in `local_dir`."""

    process: subprocess.Popen
    url: str
    local_dir: Path

    def jobs_url(self, job_id: str = "") -> str:
        return f"{self.url}/v1/{PARENT}/pipelineJobs" + (f"/{job_id}" if job_id else "")

    def job(self, job_id: str) -> dict:
        return requests.get(self.jobs_url(job_id), timeout=10).json()

    def local_run(self, job_id: str) -> dict:
        """What only this machine knows of a run (pipeline, pid, log): its state file, not the API."""
        return read_job(self.local_dir / "pipeline_jobs", job_id)[LOCAL_FIELD]

    def stop(self, stop_signal: int = signal.SIGTERM) -> None:
        """The server process alone (a run it started leads a process group of its own)."""
        if self.process.poll() is None:
            self.process.send_signal(stop_signal)
            self.process.wait(timeout=60)


@pytest.fixture
def pipelines_api(tmp_path: Path) -> Iterator[Callable[..., PipelinesApi]]:
    """Starts the local pipelines API (again, on the same state, if called twice); stopped at the end."""
    with contextlib.ExitStack() as stack:

        def start(env: dict[str, str] | None = None) -> PipelinesApi:
            port = free_loopback_port()
            process = stack.enter_context(child(
                [sys.executable, "runner.py", "pipelines", "serve", "--port", str(port), "--local-dir",
                 str(tmp_path / "local")], tmp_path / "pipelines_api.log", port, "the local pipelines API", env=env))
            return PipelinesApi(process, f"http://127.0.0.1:{port}", tmp_path / "local")

        yield start
