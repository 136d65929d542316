"""Shared test plumbing.

Rule for tests that need something outside Python (an emulator, a Debian tool):
call `require_or_skip(available, reason)`. Locally that skips with the reason
printed; on CI (CI=true) the same absence is a failure, never a silent skip.
"""

from __future__ import annotations

import os
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
