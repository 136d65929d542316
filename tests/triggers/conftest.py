"""Local stand-ins the trigger tests run against, all on 127.0.0.1.

- `fake_vertex`: an HTTP server standing in for the Vertex AI REST API. It
  records every `pipelineJobs.create` call, answers 409 ALREADY_EXISTS for an id
  it has created before (as Vertex does), and can be told to fail the next calls
  (503, 400, ...).
- `gcs`: the session's gcp-storage-emulator (tests/conftest.py), for templates read from gs://.
- `pubsub_emulator`: the real Pub/Sub emulator (`gcloud beta emulators pubsub`),
  one per session; skipped locally and failed on CI when it is not installed.
- `serve_function`: a `functions-framework` server subprocess running a function
  from its deploy folder, as `gcloud functions deploy` would upload it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from trigger_helpers import (
    DATA_BUCKET,
    MODEL,
    MODEL_MONITOR,
    PROJECT,
    PROJECT_ROOT,
    REGION,
    SERVICE_ACCOUNT,
    TRAINING_TEMPLATE,
    FakeVertex,
    PagingGcs,
    wait_until,
)

from serving.processes import free_loopback_port
from tests.conftest import require_or_skip
from tests.gcs_emulator import EMULATOR_ENV, GcsEmulator


@pytest.fixture(scope="session")
def _fake_vertex_server() -> Iterator[FakeVertex]:
    server = FakeVertex()
    yield server
    server.close()


@pytest.fixture
def fake_vertex(_fake_vertex_server: FakeVertex) -> Iterator[FakeVertex]:
    _fake_vertex_server.reset()
    yield _fake_vertex_server
    _fake_vertex_server.reset()


# --- Cloud Storage emulator ----------------------------------------------------------------------


@pytest.fixture
def gcs(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> GcsEmulator:
    """The session's one GCS emulator (tests/conftest.py), which the code under test reaches."""
    monkeypatch.setenv(EMULATOR_ENV, gcs_emulator.url)
    return gcs_emulator


@pytest.fixture
def paging_gcs(gcs: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[PagingGcs]:
    """The emulator behind a proxy that records each request and pages listings as Cloud Storage does;
    the code under test reaches Cloud Storage through it (STORAGE_EMULATOR_HOST)."""
    proxy = PagingGcs(gcs.url)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    yield proxy
    proxy.close()


# --- trigger configuration -----------------------------------------------------------------------


@pytest.fixture
def trigger_env(fake_vertex: FakeVertex, gcs: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A valid configuration for every trigger, pointing at the fake Vertex server and the real template;
    the data bucket exists in the GCS emulator (the triggers list it for the data version)."""
    assert TRAINING_TEMPLATE.exists(), f"{TRAINING_TEMPLATE} is missing: run `python runner.py --compile`"
    gcs.bucket(DATA_BUCKET)
    env = {
        "MLOPS_PROJECT": PROJECT,
        "MLOPS_REGION": REGION,
        "MLOPS_PIPELINE_ROOT": "gs://pipeline-root/runs",
        "MLOPS_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
        "MLOPS_VERTEX_API_ENDPOINT": fake_vertex.url,
        "MLOPS_TRAINING_TEMPLATE_URI": str(TRAINING_TEMPLATE),
        "MLOPS_SCHEDULE_TEMPLATE_URI": str(TRAINING_TEMPLATE),
        "MLOPS_DATA_BUCKET": DATA_BUCKET,
        "MLOPS_MODEL": MODEL,
        "MLOPS_MODEL_MONITOR": MODEL_MONITOR,
        # Each test reads the template afresh: no test depends on another's cache.
        "MLOPS_TEMPLATE_CACHE_SECONDS": "0",
    }
    for name in list(os.environ):
        if name.startswith("MLOPS_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def function_app(trigger_env: dict[str, str]) -> Callable[[str, str], object]:
    """`functions_framework.create_app` for a function in the repository, configured by `trigger_env`."""
    import functions_framework

    def create(name: str, target: str):
        return functions_framework.create_app(target, str(PROJECT_ROOT / "triggers" / name / "main.py"))

    return create


# --- Pub/Sub emulator and a functions-framework server -------------------------------------------


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a running Pub/Sub emulator (JVM start: a few seconds, once per session)."""
    from monitoring.local_chain import ChainError, pubsub_emulator, pubsub_emulator_command

    work_dir = tmp_path_factory.mktemp("pubsub")
    try:
        pubsub_emulator_command(0, work_dir)  # the tools are there
    except ChainError as error:
        require_or_skip(False, str(error))
    with pubsub_emulator(work_dir) as host:
        yield host


@pytest.fixture
def serve_function(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Starts a function from its deploy folder under `functions-framework`; returns its URL."""
    from triggers.package import build

    started: list[tuple[subprocess.Popen, Path]] = []

    def serve(name: str, target: str, env: dict[str, str], signature_type: str = "cloudevent") -> str:
        bundle = build(name, tmp_path / "functions")
        port = free_loopback_port()
        log_path = tmp_path / f"{name}.log"
        child_env = {key: value for key, value in os.environ.items() if not key.startswith("MLOPS_")}
        child_env.update(env)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "functions_framework", "--target", target, "--source",
                 str(bundle / "main.py"), "--signature-type", signature_type, "--host", "127.0.0.1",
                 "--port", str(port)],
                cwd=bundle, env=child_env, stdout=log_file, stderr=subprocess.STDOUT)
        started.append((process, log_path))

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"functions-framework exited: {log_path.read_text()[-3000:]}")
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 30, f"functions-framework serving {name}")
        return f"http://127.0.0.1:{port}"

    serve.logs = lambda: "".join(path.read_text() for _, path in started)  # type: ignore[attr-defined]
    yield serve
    for process, _ in started:
        # SIGINT is gunicorn's quick shutdown; SIGTERM waits for idle keep-alive connections (seconds).
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
