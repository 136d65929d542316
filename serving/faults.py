"""Fault injection FOR TESTS ONLY: a model server that answers errors or slowly, so the canary
decision's rollback can be tested against a real server.

Off unless both hold: the server's environment has SERVING_ALLOW_TEST_FAULTS=1 (never set by the
image, the endpoint or any pipeline), and the model directory holds FAULTS_FOR_TESTS.json, e.g.
`{"error_rate": 0.5, "delay_ms": 40, "after_requests": 5}` (errors only after the first
`after_requests` predictions, so a deploy's smoke test passes and the canary fails later). The file
sits in one version's folder, so only the deployed models of that version misbehave while the
others on the same endpoint answer normally. `{"load_delay_ms_by_worker": {"1": 5000}}` makes worker 1
of a multi-worker server load its model 5 s late (the health route must wait for it).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from serving.errors import error_response

ALLOW_ENV = "SERVING_ALLOW_TEST_FAULTS"
FAULTS_FILE = "FAULTS_FOR_TESTS.json"
T = TypeVar("T")


def _read_faults(storage_uri: str) -> dict | None:
    if os.environ.get(ALLOW_ENV) != "1" or storage_uri.startswith("gs://"):
        return None
    path = Path(storage_uri) / FAULTS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def slow_load_for_tests(load: Callable[[], T], storage_uri: str, worker_index: int) -> Callable[[], T]:
    """`load`, late by the worker's `load_delay_ms_by_worker` when fault injection is on."""
    delay_ms = float(((_read_faults(storage_uri) or {}).get("load_delay_ms_by_worker") or {}).get(
        str(worker_index), 0))
    if not delay_ms:
        return load

    def slow() -> T:
        time.sleep(delay_ms / 1000)
        return load()

    return slow


def faults_for_tests(storage_uri: str) -> dict[str, float] | None:
    faults = _read_faults(storage_uri)
    if faults is None or not {"error_rate", "delay_ms", "after_requests"} & set(faults):
        return None
    return {"error_rate": float(faults.get("error_rate", 0.0)), "delay_ms": float(faults.get("delay_ms", 0.0)),
            "after_requests": int(faults.get("after_requests", 0))}


def fault_middleware(faults: dict[str, float], predict_route: str):
    seen = [0]

    @web.middleware
    async def inject(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path == predict_route:
            if faults["delay_ms"]:
                await asyncio.sleep(faults["delay_ms"] / 1000.0)
            seen[0] += 1
            if seen[0] > faults["after_requests"] and random.random() < faults["error_rate"]:
                return error_response(500, f"fault injected for tests ({FAULTS_FILE})")
        return await handler(request)

    return inject
