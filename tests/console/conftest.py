"""Debian's Chromium driven by Playwright (executable_path: no browser download), with the reports' quiet flags."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import require_or_skip
from tests.report_rendering import CHROMIUM_FLAGS

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per module (a launch costs seconds)."""
    require_or_skip(Path(CHROMIUM).exists() and shutil.which("chromium") is not None,
                    "chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_FLAGS))
        try:
            yield launched
        finally:
            launched.close()
