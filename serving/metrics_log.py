"""The local endpoint's metrics over time, per deployed model, kept on disk.

What Cloud Monitoring keeps of a Vertex AI endpoint's online predictions (request and error counts and
the latency distribution, per deployed model, per sampling interval), for local mode: the router's
counters (serving/router.py, `/v1/stats`) live in memory and start afresh with every router and every
canary window, so a person looking back at the endpoint (the console) reads this instead.

The router adds each request to its deployed model's current interval (`INTERVAL_S`, aligned to the
clock); once an interval is over, one JSON line per deployed model that had requests in it is appended
to `STATE_DIR/metrics/metrics.jsonl`:

    {"start": "2026-12-02T17:27:20+00:00", "seconds": 10, "deployed_model_id": "1", "requests": 12,
     "errors": 0, "client_errors": 0, "latency_ms": {"p50": 8.1, "p99": 20.4}}

`errors` are 5xx answers and failed connections (the model's fault), `client_errors` 4xx; latencies are
of answered (2xx) requests, nearest rank. A router that stops writes its current interval as it is. The
file is bounded: past `MAX_FILE_BYTES` it becomes `metrics.1.jsonl`, replacing the previous one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

METRICS_DIR = "metrics"
METRICS_FILE = "metrics.jsonl"
INTERVAL_S = 10
MAX_FILE_BYTES = 8 * 1024 * 1024
_LATENCIES_KEPT = 10_000  # per model and interval: enough for the percentiles of a busy local endpoint


def nearest_rank(ordered: list[float], share: float) -> float | None:
    """The `share` percentile of sorted values: an observed latency, never an interpolation (the router's
    counters use the same)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, int(share * len(ordered) + 0.5) - 1))]


@dataclasses.dataclass
class _Interval:
    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    latencies_ms: list[float] = dataclasses.field(default_factory=list)


class MetricsLog:
    """Counts requests per deployed model and interval; appends finished intervals. One thread (the router's loop)."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = Path(state_dir) / METRICS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / METRICS_FILE
        self._intervals: dict[tuple[int, str], _Interval] = {}

    def record(self, deployed_model_id: str, status: int, latency_ms: float | None, at: float | None = None) -> None:
        start = _interval_start(at)
        if any(key[0] < start for key in self._intervals):
            self.flush(at)
        interval = self._intervals.setdefault((start, deployed_model_id), _Interval())
        interval.requests += 1
        if status >= 500:
            interval.errors += 1
        elif status >= 400:
            interval.client_errors += 1
        elif latency_ms is not None and len(interval.latencies_ms) < _LATENCIES_KEPT:
            interval.latencies_ms.append(latency_ms)

    def flush(self, at: float | None = None, everything: bool = False) -> None:
        """Appends the intervals that are over (`everything`: the current one too, as it is)."""
        current = _interval_start(at)
        done = sorted(key for key in self._intervals if everything or key[0] < current)
        if not done:
            return
        lines = "".join(json.dumps(_row(start, model, self._intervals.pop((start, model)))) + "\n"
                        for start, model in done)
        if self.path.exists() and self.path.stat().st_size > MAX_FILE_BYTES:
            os.replace(self.path, self.folder / f"metrics.1{self.path.suffix}")
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(lines)


def _interval_start(at: float | None) -> int:
    now = datetime.datetime.now(datetime.UTC).timestamp() if at is None else at
    return int(now) // INTERVAL_S * INTERVAL_S


def _row(start: int, deployed_model_id: str, interval: _Interval) -> dict[str, Any]:
    ordered = sorted(interval.latencies_ms)
    return {"start": datetime.datetime.fromtimestamp(start, datetime.UTC).isoformat(), "seconds": INTERVAL_S,
            "deployed_model_id": deployed_model_id, "requests": interval.requests, "errors": interval.errors,
            "client_errors": interval.client_errors,
            "latency_ms": {"p50": _rounded(nearest_rank(ordered, 0.50)), "p99": _rounded(nearest_rank(ordered, 0.99))}}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def read_metrics(state_dir: Path) -> Iterator[dict[str, Any]]:
    """Every complete row, oldest first (the rotated file, then the current one); a line cut short is skipped."""
    folder = Path(state_dir) / METRICS_DIR
    for path in (folder / f"metrics.1{Path(METRICS_FILE).suffix}", folder / METRICS_FILE):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                yield row
