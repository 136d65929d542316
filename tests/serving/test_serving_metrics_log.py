"""The endpoint's metrics over time (serving/metrics_log.py): what the router keeps per deployed model and
interval for the console, counted and written as documented. The router writing them is checked end to end by
the console's tests (a training run's smoke-test request) and by tests/serving/test_serving_router.py."""

from __future__ import annotations

import json
from pathlib import Path

from serving import metrics_log
from serving.metrics_log import INTERVAL_S, METRICS_DIR, METRICS_FILE, MetricsLog, nearest_rank, read_metrics

START = 1_800_000_000  # a multiple of the interval: the first interval starts here


def _rows(state_dir: Path) -> list[dict]:
    return list(read_metrics(state_dir))


def test_each_interval_is_written_once_it_is_over_with_counts_and_percentiles(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    for latency in (10.0, 20.0, 30.0, 40.0):
        log.record("1", 200, latency, at=START + 1)
    log.record("1", 503, None, at=START + 2)
    log.record("1", 400, 5.0, at=START + 3)
    log.record("2", 200, 7.0, at=START + 4)
    log.flush(at=START + INTERVAL_S - 1)
    assert _rows(tmp_path) == []  # the interval is not over: nothing yet

    log.record("1", 200, 50.0, at=START + INTERVAL_S + 1)  # the next interval closes the first
    first = {row["deployed_model_id"]: row for row in _rows(tmp_path)}
    assert first["1"] == {"start": "2027-01-15T08:00:00+00:00", "seconds": INTERVAL_S, "deployed_model_id": "1",
                          "requests": 6, "errors": 1, "client_errors": 1, "latency_ms": {"p50": 20.0, "p99": 40.0}}
    assert first["2"]["requests"] == 1 and first["2"]["latency_ms"] == {"p50": 7.0, "p99": 7.0}

    log.flush(everything=True)  # a router that stops writes its current interval as it is
    last = _rows(tmp_path)[-1]
    assert (last["start"], last["requests"], last["latency_ms"]["p50"]) == ("2027-01-15T08:00:10+00:00", 1, 50.0)
    assert len(_rows(tmp_path)) == 3


def test_an_interval_of_errors_only_has_no_latency(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.record("1", 503, None, at=START)
    log.flush(everything=True)
    [row] = _rows(tmp_path)
    assert (row["errors"], row["latency_ms"]) == (1, {"p50": None, "p99": None})


def test_percentiles_are_observed_values_as_the_routers_counters_take_them() -> None:
    values = [float(value) for value in range(1, 101)]
    assert (nearest_rank(values, 0.50), nearest_rank(values, 0.99)) == (50.0, 99.0)
    assert nearest_rank([3.0], 0.99) == 3.0 and nearest_rank([], 0.5) is None


def test_the_file_is_bounded_and_a_cut_line_is_skipped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(metrics_log, "MAX_FILE_BYTES", 300)
    log = MetricsLog(tmp_path)
    for interval in range(6):
        log.record("1", 200, 1.0, at=START + interval * INTERVAL_S)
    log.flush(everything=True)
    folder = tmp_path / METRICS_DIR
    assert (folder / "metrics.1.jsonl").exists()
    assert (folder / METRICS_FILE).stat().st_size + (folder / "metrics.1.jsonl").stat().st_size < 5 * 300
    with open(folder / METRICS_FILE, "a") as file:
        file.write('{"start": "2027-01-15T08:01')  # a crash mid-line
    rows = _rows(tmp_path)
    assert rows and all(isinstance(row["requests"], int) for row in rows)
    starts = [row["start"] for row in rows]
    assert starts == sorted(starts)  # oldest first, across the rotated file and the current one
    assert json.loads((folder / METRICS_FILE).read_text().splitlines()[0])["deployed_model_id"] == "1"
