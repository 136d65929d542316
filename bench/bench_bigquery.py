"""BigQuery read path figures (issue 22): ingest from a bq:// table snapshot against ingest from the same rows'
CSV batches, at 1x, 10x and 20x the sample: rows/s and peak RSS, each in a fresh process (imports included,
as bench/bench_scale.py measures).

The data: bench/synthetic.py's landing area, loaded into the DuckDB stand-in as `taxi.trips` (typed by the
reviewed schema) and snapshotted, outside the clock. Three ways to ingest the same rows:
- `csv`: the landing area's batch.csv files (dataprep/ingest.py);
- `bigquery`: the snapshot through the local stand-in (what `make run DATA_URI=bq://...` reads);
- `storage-read`: the snapshot through the real google-cloud-bigquery-storage client, from the loopback
  stand-ins of BigQuery's REST and Storage Read APIs served by another process (what Vertex runs; the
  server's work is on the same two cores, so this is a floor for the client, not a BigQuery figure).
Aims as for the scale path: peak RSS 20x/1x <= 1.3 for each; rows/s at 20x no worse than at 1x.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_scale import _RESULT_PREFIX, AIM_RSS_RATIO, FACTORS, _peak_rss_mb
from contract.paths import DEFAULT_DATASET_CONFIG, PROJECT_ROOT

TABLE = "bq://bench-project.taxi.trips"
WAYS = ("csv", "bigquery", "storage-read")
_SERVING_PREFIX = "BENCH_BIGQUERY_SERVING "


def _ingest(data_uri: str, work: Path) -> int:
    from contract.dataset import load_dataset_config
    from dataprep.ingest import ingest

    return ingest(data_uri, load_dataset_config(DEFAULT_DATASET_CONFIG), work / "examples").rows


def _child(data_uri: str, work: str) -> None:
    started = time.perf_counter()
    rows = _ingest(data_uri, Path(work))
    seconds = time.perf_counter() - started
    print(_RESULT_PREFIX + json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}),
          flush=True)
    os._exit(0)


def _serve(local_dir: str) -> None:
    """Both stand-ins over the DuckDB files under local_dir until stdin closes."""
    import pytest

    from tests.bigquery_snapshot_stand_in import bigquery_stand_in

    with pytest.MonkeyPatch.context() as patch, bigquery_stand_in(Path(local_dir), patch) as (rest, read):
        print(_SERVING_PREFIX + json.dumps({"rest": rest.url, "read": read.host}), flush=True)
        sys.stdin.read()


def _run(data_uri: str, work: Path, env: dict[str, str]) -> dict:
    child = subprocess.run([sys.executable, "-m", "bench.bench_bigquery", data_uri, str(work)], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, env=os.environ | env)
    found = [line for line in child.stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
    if child.returncode != 0 or not found:
        raise RuntimeError(f"ingest of {data_uri} failed (exit {child.returncode}):\n{child.stderr[-3000:]}")
    return json.loads(found[-1][len(_RESULT_PREFIX):])


def _storage_read(snapshot: str, work: Path, local_dir: Path) -> dict:
    from dataprep.bigquery_source import STORAGE_HOST_ENV

    server = subprocess.Popen([sys.executable, "-m", "bench.bench_bigquery", "serve", str(local_dir)],
                              cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith(_SERVING_PREFIX):
            raise RuntimeError(f"the stand-ins did not start: {line!r}")
        urls = json.loads(line[len(_SERVING_PREFIX):])
        return _run(snapshot, work, {"BIGQUERY_EMULATOR_HOST": urls["rest"], STORAGE_HOST_ENV: urls["read"]})
    finally:
        server.stdin.close()
        server.wait(timeout=30)


def measure(factors=FACTORS) -> dict[int, dict[str, dict]]:
    from batch_prediction.local_bigquery import load_files, schema_types
    from bench.synthetic import make_landing
    from contract.dataset import load_dataset_config
    from dataprep.bigquery_source import BACKEND_ENV, DUCKDB_BACKEND, DuckDBTables, pin_data

    types = schema_types(load_dataset_config(DEFAULT_DATASET_CONFIG).schema_uri)
    figures: dict[int, dict[str, dict]] = {}
    for factor in factors:
        with tempfile.TemporaryDirectory(prefix=f"bench-bigquery-{factor}x-") as scratch:
            landing = make_landing(Path(scratch) / "data", factor)
            local_dir = Path(scratch) / "local"
            started = time.perf_counter()
            rows = load_files(sorted(str(path) for path in landing.rglob("batch.csv")), TABLE, types, local_dir)
            loaded = time.perf_counter() - started
            started = time.perf_counter()
            snapshot = pin_data(TABLE, tables=DuckDBTables(local_dir)).data_uri
            print(f"  {factor:>2}x load {rows} rows into the stand-in {loaded:.1f} s, snapshot "
                  f"{time.perf_counter() - started:.2f} s", flush=True)
            local = {"MLOPS_LOCAL_DIR": str(local_dir), BACKEND_ENV: DUCKDB_BACKEND}
            figures[factor] = {
                "csv": _run(str(landing), Path(scratch) / "csv", {}),
                "bigquery": _run(snapshot, Path(scratch) / "bigquery", local),
                "storage-read": _storage_read(snapshot, Path(scratch) / "storage-read", local_dir)}
            for way, shown in figures[factor].items():
                print(f"  {factor:>2}x {way:<13} {shown['rows']:>9} rows {shown['seconds']:7.1f} s "
                      f"{shown['rows'] / shown['seconds']:>9.0f} rows/s {shown['peak_rss_mb']:7.0f} MB", flush=True)
    return figures


def main() -> None:
    print(f"ingest at {', '.join(f'{f}x' for f in FACTORS)} the sample, from CSV batches and from a BigQuery "
          "table snapshot (the local stand-in; the Storage Read API client against loopback stand-ins); each "
          "a fresh process, imports included")
    figures = measure()
    low, middle, high = FACTORS[0], FACTORS[-2], FACTORS[-1]
    # RSS high/middle too: a client's buffers (gRPC flow-control windows, allocator arenas) fill in the first
    # batches, then stay; a peak that grew with the rows would grow from middle to high as well.
    print(f"\n  {'way':<13} {'rows/s ' + str(high) + 'x':>13} {'vs csv':>7} {'RSS ' + f'{high}x/{low}x':>12} "
          f"{'RSS ' + f'{high}x/{middle}x':>12} {'rows/s ' + f'{high}x/{low}x':>15}")
    csv_speed = figures[high]["csv"]["rows"] / figures[high]["csv"]["seconds"]
    for way in WAYS:
        speed = figures[high][way]["rows"] / figures[high][way]["seconds"]
        rss = figures[high][way]["peak_rss_mb"] / figures[low][way]["peak_rss_mb"]
        settled = figures[high][way]["peak_rss_mb"] / figures[middle][way]["peak_rss_mb"]
        scaling = speed / (figures[low][way]["rows"] / figures[low][way]["seconds"])
        print(f"  {way:<13} {speed:>13.0f} {speed / csv_speed:>7.2f} {rss:>12.2f} {settled:>12.2f} {scaling:>15.2f}   "
              f"(aims: RSS <= {AIM_RSS_RATIO}: {'met' if rss <= AIM_RSS_RATIO else 'not met'}; "
              f"rows/s >= 1: {'met' if scaling >= 1 else 'not met'})")
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        _serve(sys.argv[2])
    elif len(sys.argv) == 3:
        _child(*sys.argv[1:])
    else:
        raise SystemExit("usage: python -m bench.bench_bigquery DATA_URI WORK_DIR | serve LOCAL_DIR "
                         "(or: python -m bench bigquery)")
