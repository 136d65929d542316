"""The drift chain's local parts, started as processes: the Pub/Sub emulator, the drift-alert function
under functions-framework (from its deploy folder, as Cloud Functions would run it) with a push
subscription, the local pipelines API and the local endpoint. Used by the drift demo and the bench."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from contract.paths import PROJECT_ROOT
from serving.processes import free_loopback_port


class ChainError(RuntimeError):
    """A local part of the chain could not start; the message says which and why."""


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise ChainError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return value


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def child(args: list[str], log: Path, port: int, what: str, env: dict[str, str] | None = None,
          cwd: Path = PROJECT_ROOT, timeout: float = 90) -> Iterator[subprocess.Popen]:
    """A child process in its own session, listening on `port` before the block starts; stopped (its whole
    group: gcloud starts the emulator's JVM as a grandchild) when the block ends."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as log_file:
        process = subprocess.Popen(args, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:
            if process.poll() is not None:
                raise ChainError(f"{what} exited with status {process.returncode}: {log.read_text()[-2000:]}")
            return listening(port)

        wait_for(ready, timeout, f"{what} to listen on port {port} (log: {log})", interval=0.2)
        yield process
    finally:
        for stop_signal in (signal.SIGINT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, stop_signal)
            try:
                process.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue


def pubsub_emulator_command(port: int, data_dir: Path) -> list[str]:
    gcloud = shutil.which("gcloud")
    emulator = gcloud and Path(gcloud).resolve().parent.parent / "platform" / "pubsub-emulator"
    if not (emulator and emulator.is_dir() and shutil.which("java")):
        raise ChainError("the Pub/Sub emulator needs the Google Cloud CLI with google-cloud-cli-pubsub-emulator and "
                         "Java (apt-get install google-cloud-cli-pubsub-emulator openjdk-17-jre-headless)")
    return [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}", f"--data-dir={data_dir}"]


@contextlib.contextmanager
def pubsub_emulator(work_dir: Path) -> Iterator[str]:
    """host:port of a running Pub/Sub emulator."""
    port = free_loopback_port()
    (work_dir / "pubsub").mkdir(parents=True, exist_ok=True)
    with child(pubsub_emulator_command(port, work_dir / "pubsub"), work_dir / "pubsub-emulator.log", port,
               "the Pub/Sub emulator"):
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def drift_function(work_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """The drift-alert function from its deploy folder under functions-framework; yields its URL."""
    from triggers.package import build

    folder = build("drift_alert", work_dir / "functions")
    port = free_loopback_port()
    clean = {key: value for key, value in os.environ.items() if not key.startswith("MLOPS_")}
    with child([sys.executable, "-m", "functions_framework", "--target", "on_drift_log_entry", "--source",
                str(folder / "main.py"), "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port)],
               work_dir / "drift_alert.log", port, "the drift-alert function", env={**clean, **env}, cwd=folder):
        yield f"http://127.0.0.1:{port}"


def push_subscription(project: str, topic_id: str, push_endpoint: str) -> str:
    """The topic (created if missing) and a push subscription to `push_endpoint`: what Eventarc sets up for a
    function triggered by a topic. Needs PUBSUB_EMULATOR_HOST. Returns the topic's path."""
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, topic_id)
    with contextlib.suppress(exceptions.AlreadyExists):
        publisher.create_topic(name=topic)
    subscription = subscriber.subscription_path(project, f"{topic_id}-push")
    with contextlib.suppress(exceptions.AlreadyExists):
        subscriber.create_subscription(request={"name": subscription, "topic": topic, "ack_deadline_seconds": 30,
                                                "push_config": {"push_endpoint": push_endpoint}})
    return topic


@contextlib.contextmanager
def pipelines_api(local_dir: Path, work_dir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_loopback_port()
    with child([sys.executable, "runner.py", "pipelines", "serve", "--port", str(port), "--local-dir",
                str(local_dir)], work_dir / "pipelines_api.log", port, "the local pipelines API", env=env):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def endpoint(state_dir: Path, work_dir: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    port = free_loopback_port()
    with child([sys.executable, "runner.py", "endpoint", "--state-dir", str(state_dir), "serve", "--port", str(port),
                "--seed", "7"], work_dir / "endpoint.log", port, "the local endpoint", env=env, timeout=180):
        yield port
