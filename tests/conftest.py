"""Shared test plumbing.

Rule for tests that need something outside Python (an emulator, a Debian tool):
call `require_or_skip(available, reason)`. Locally that skips with the reason
printed; on CI (CI=true) the same absence is a failure, never a silent skip.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.paths import PROJECT_ROOT

ON_CI = os.environ.get("CI", "").lower() == "true"


def require_or_skip(available: bool, reason: str) -> None:
    if available:
        return
    if ON_CI:
        pytest.fail(f"required on CI but missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture
def gcs_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A bucket in an in-memory Cloud Storage emulator (gcp-storage-emulator); every
    google-cloud-storage client in this process reaches it through STORAGE_EMULATOR_HOST."""
    require_or_skip(importlib.util.find_spec("gcp_storage_emulator") is not None,
                    "gcp-storage-emulator is not installed (it is in the dev extras)")
    from gcp_storage_emulator.server import create_server

    from serving.processes import free_loopback_port

    bucket, port = "test-bucket", free_loopback_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield bucket
    finally:
        server.stop()
