"""Stand-ins and helpers shared by the trigger tests (fixtures that use them are in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from tests.conftest import PROJECT_ROOT
from tests.stand_in_http import StandInServer, google_error

TRAINING_TEMPLATE = PROJECT_ROOT / "compiled" / "training_pipeline.json"
PROJECT = "test-project"
REGION = "us-central1"
SERVICE_ACCOUNT = "pipelines@test-project.iam.gserviceaccount.com"
DATA_BUCKET = "landing-data"
MODEL = "chicago-taxi-big-tipper"
# A Model Monitoring v2 monitor as Vertex names it (project number, server-assigned id), and a run of it.
MODEL_MONITOR = "projects/677687165274/locations/us-central1/modelMonitors/4127362941937680384"
MONITORING_JOB = f"{MODEL_MONITOR}/modelMonitoringJobs/6680511704087920640"


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Polls `condition` until true; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def process_group(args: list[str], stop_signal: int = signal.SIGTERM, **popen_kwargs) -> Iterator[subprocess.Popen]:
    """A child in its own session (gcloud starts the emulator's JVM as a grandchild), stopped with its
    whole group on exit: `stop_signal` first, SIGKILL if it lingers."""
    process = subprocess.Popen(args, start_new_session=True, **popen_kwargs)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, stop_signal)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


# --- Vertex AI REST stand-in ---------------------------------------------------------------------


class FakeVertex:
    """Stands in for `POST /v1/projects/P/locations/L/pipelineJobs?pipelineJobId=ID` of the Vertex AI API, and
    for the model monitors' `searchModelMonitoringAlerts` (v1beta1) the drift function reads."""

    def __init__(self) -> None:
        from tests.monitoring.model_monitor_stand_in import ModelMonitoringAlerts

        self.calls: list[dict] = []  # every create attempt, with the status answered
        self.jobs: dict[str, dict] = {}  # job id -> body of the create that succeeded
        self.alerts = ModelMonitoringAlerts()
        self._failures: list[tuple[int, str]] = []
        self._lock = threading.Condition()
        self._server = StandInServer(self._answer, ("aiplatform.v1", "aiplatform.v1beta1"))
        self.url = self._server.url

    def _answer(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
        parts = urlsplit(path)
        if self.alerts.answers(parts.path):
            with self._lock:
                return self.alerts.search(parts.path, json.loads(body or b"{}"))
        if method == "GET" and (listed := self.alerts.list_monitors(parts.path, parse_qs(parts.query))):
            return listed
        if method != "POST":
            return 405, google_error(405, "METHOD_NOT_ALLOWED", f"{method} {parts.path}: only create is stood in for")
        segments = parts.path.strip("/").split("/")
        if len(segments) != 6 or segments[0] != "v1" or segments[5] != "pipelineJobs":
            return 404, google_error(404, "NOT_FOUND", f"no route {parts.path}")
        job_id = parse_qs(parts.query).get("pipelineJobId", [None])[0]
        with self._lock:
            call = {"path": parts.path, "query": parse_qs(parts.query), "job_id": job_id,
                    "body": json.loads(body), "headers": headers, "arrived": time.perf_counter()}
            if self._failures:
                status, message = self._failures.pop(0)
                code = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 503: "UNAVAILABLE"}.get(status, "ERROR")
                reply = google_error(status, code, message)
            elif job_id in self.jobs:
                status = 409
                reply = google_error(409, "ALREADY_EXISTS", f"PipelineJob {job_id} already exists")
            else:
                status = 200
                self.jobs[job_id] = call["body"]
                name = "/".join([*segments[1:5], "pipelineJobs", job_id])
                reply = {**call["body"], "name": name, "state": "PIPELINE_STATE_PENDING"}
            call["status"] = status
            self.calls.append(call)
            self._lock.notify_all()
        return status, reply

    def fail_next(self, status: int, message: str = "stand-in failure", times: int = 1) -> None:
        with self._lock:
            self._failures.extend([(status, message)] * times)

    def reset(self) -> None:
        from tests.monitoring.model_monitor_stand_in import ModelMonitoringAlerts

        with self._lock:
            self.calls.clear()
            self.jobs.clear()
            self._failures.clear()
            self.alerts = ModelMonitoringAlerts()

    def wait_for_calls(self, count: int, timeout: float = 20.0) -> list[dict]:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.calls) >= count, timeout):
                raise AssertionError(f"expected {count} create call(s) within {timeout} s, got {len(self.calls)}")
            return list(self.calls)

    def close(self) -> None:
        self._server.close()


class PagingGcs:
    """A recording proxy in front of the GCS emulator for Cloud Storage JSON API reads.

    It records every request it forwards, and splits an object listing into pages of
    `page_size` items with `nextPageToken`, as Cloud Storage does (1,000 per page):
    gcp-storage-emulator returns every item in one answer, so paging is the one
    behaviour this stands in for.
    """

    def __init__(self, upstream: str, page_size: int = 1000) -> None:
        self.requests: list[str] = []  # method and path with query, in order
        self.page_size = page_size
        self._upstream = upstream
        # A short poll: close() waits for it, and each test starts its own proxy.
        self._server = StandInServer(self._forward, ("storage.v1",), poll_interval=0.05)
        self.url = self._server.url

    def _forward(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        if method != "GET":
            return 405, json.dumps(google_error(405, "METHOD_NOT_ALLOWED", "the proxy forwards reads only")).encode()
        self.requests.append(f"GET {path}")
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        offset = int(query.pop("pageToken", ["0"])[0])
        upstream = requests.get(f"{self._upstream}{parts.path}?{urlencode(query, doseq=True)}", timeout=30)
        segments = parts.path.strip("/").split("/")
        is_listing = len(segments) == 5 and segments[:2] == ["storage", "v1"] and segments[4] == "o"
        if not is_listing or not upstream.ok:
            return upstream.status_code, upstream.content
        listing = upstream.json()
        items = listing.get("items", [])
        page = {"kind": "storage#objects", "items": items[offset:offset + self.page_size]}
        if offset + self.page_size < len(items):
            page["nextPageToken"] = str(offset + self.page_size)
        return 200, json.dumps(page).encode()

    def close(self) -> None:
        self._server.close()


def log_lines(text: str) -> list[dict]:
    """The structured entries among captured stdout lines."""
    entries = []
    for line in text.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            entry = json.loads(line)
            if isinstance(entry, dict) and "severity" in entry:
                entries.append(entry)
    return entries
