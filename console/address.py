"""Where the local console serves: for the lines that point a person at it (a local run's summary).

Standard library only: a local run imports this, and must not pay for the console's web stack.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

DEFAULT_PORT = 8095
HOST = "127.0.0.1"  # loopback only: the console reads local state and has no authentication
ADDRESS_FILE = "console.json"  # in the local state folder while a console serves it: {"url", "pid"}


def serving_url(local_dir: Path) -> str | None:
    """The URL of the console serving `local_dir`, if one answers."""
    try:
        url = json.loads((Path(local_dir) / ADDRESS_FILE).read_text())["url"]
        with urllib.request.urlopen(f"{url}/health", timeout=3) as response:
            return url if response.status == 200 else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def console_address(run_dir: Path) -> str:
    """A run's page in the console; how to start the console when none serves this state."""
    local_dir = Path(run_dir).parent.parent  # LOCAL_DIR/pipeline_root/RUN
    url = serving_url(local_dir)
    if url:
        return f"{url}/runs/{Path(run_dir).name}"
    return (f"http://{HOST}:{DEFAULT_PORT}/runs/{Path(run_dir).name}  "
            "(serve it with: make console, or python runner.py console)")
