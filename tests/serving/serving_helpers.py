"""Plumbing for the serving tests: child processes on loopback, HTTP calls, bounded waits."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from contract.paths import PROJECT_ROOT
from serving.processes import die_with_parent, free_loopback_port

T = TypeVar("T")


def wait_until(probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def message(self) -> str:
        return self.json()["error"]["message"]


def http_call(method: str, url: str, body: bytes | Iterable[bytes] | dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, timeout_s: float = 30.0) -> Answer:
    """One request over a fresh connection; a dict body is sent as JSON, an iterable as chunks."""
    assert url.startswith("http://127.0.0.1:"), url
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    headers = {"Content-Type": "application/json", **(headers or {})}
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    chunked = body is not None and not isinstance(body, bytes)
    try:
        connection.request(method, "/" + path, body=body, headers=headers, encode_chunked=chunked)
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def try_status(url: str) -> int | None:
    """GET status, or None while nothing listens."""
    try:
        return http_call("GET", url, timeout_s=2).status
    except (ConnectionError, OSError):
        return None


@dataclass
class ChildProcess:
    """A process started by a test, always stopped by the fixture that started it."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    statuses_seen: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        return self.process.returncode


def start_process(args: list[str], log_path: Path, env: dict[str, str], port: int) -> ChildProcess:
    with open(log_path, "wb") as log_file:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([sys.executable, *args], env={**os.environ, **env}, cwd=PROJECT_ROOT,
                                   stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    return ChildProcess(process, log_path, port)


def image_command() -> list[str]:
    """The serving image's CMD (exec form), read from serving/Dockerfile."""
    dockerfile = (PROJECT_ROOT / "serving" / "Dockerfile").read_text()
    commands = [json.loads(line.removeprefix("CMD ")) for line in dockerfile.splitlines() if line.startswith("CMD ")]
    assert len(commands) == 1, f"serving/Dockerfile has {len(commands)} CMD lines, expected one"
    return commands[0]


def start_server(model_uri: str | Path, log_path: Path, extra_env: dict[str, str] | None = None,
                 port: int | None = None) -> ChildProcess:
    """The serving image's command (`python -m serving.server`) on a loopback port."""
    port = port or free_loopback_port()
    env = {"AIP_STORAGE_URI": str(model_uri), "AIP_HTTP_PORT": str(port), "SERVING_HOST": "127.0.0.1",
           "AIP_HEALTH_ROUTE": "/health", "AIP_PREDICT_ROUTE": "/predict", **(extra_env or {})}
    return start_process(image_command()[1:], log_path, env, port)  # [1:]: this interpreter runs it


def wait_healthy(child: ChildProcess, route: str = "/health", timeout_s: float = 90.0) -> None:
    """Poll the health route until 200, recording every status seen on the way."""

    def healthy() -> bool:
        if child.process.poll() is not None:
            raise AssertionError(f"exited with {child.process.returncode} before healthy:\n{child.log()[-3000:]}")
        status = try_status(child.url + route)
        if status is not None:
            child.statuses_seen.append(status)
        return status == 200

    wait_until(healthy, timeout_s, f"{route} to answer 200 on {child.url}", interval_s=0.02)


async def _load(url: str, bodies: list[bytes], concurrency: int) -> list[tuple[int, dict[str, str], bytes]]:
    results: list[tuple[int, dict[str, str], bytes]] = [(0, {}, b"")] * len(bodies)
    queue = iter(range(len(bodies)))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def worker() -> None:
            for index in queue:
                async with session.post(url, data=bodies[index], headers={"Content-Type": "application/json"}) \
                        as response:
                    results[index] = (response.status, dict(response.headers), await response.read())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def post_many(url: str, bodies: list[bytes], concurrency: int = 16) -> list[tuple[int, dict[str, str], bytes]]:
    """A bounded closed-loop load: every body posted once, `concurrency` at a time."""
    return asyncio.run(_load(url, bodies, concurrency))
