"""Structured log lines: one JSON object per line on stdout.

Cloud Run functions forward stdout to Cloud Logging, which turns a JSON line
into a `jsonPayload` and reads `severity` and `message` from it. The standard
`logging` module is avoided on purpose: functions-framework reconfigures it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

SEVERITIES = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")


def log(severity: str, message: str, **fields: Any) -> None:
    """Writes one structured entry; `fields` become jsonPayload keys."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    entry = {"severity": severity, "message": message, **fields}
    sys.stdout.write(json.dumps(entry, default=str) + "\n")
    sys.stdout.flush()
