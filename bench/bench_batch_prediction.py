"""Batch prediction figures: throughput against the bare model, memory against input size, DuckDB's write cost.

1. Throughput: the local streaming predictor (read CSV shards, check every row
   against the input contract, predict, write Parquet, publish) over the 10x
   data set, against the same SavedModel called in-process on the same chunks,
   already converted to its input tensors (the model's own time, nothing else),
   measured in the same run, alternated, median of RUNS. Aim: ratio >= 0.7.
2. Memory: peak RSS (VmHWM, read by the child itself before it exits: see
   bench_triggers.py for why not rusage) of a fresh process scoring 1x (the
   shipped 15,002 rows), 10x (150k) and 1M synthetic rows (the sample repeated,
   each row its own key). Aim: flat, largest <= 1.2x smallest.
3. DuckDB: seconds to write 100k prediction rows into the bq:// stand-in, in one
   transaction of 8192-row chunks, against writing the same rows as Parquet.

The model is the taxi-shaped demo SavedModel (serving/testing.py: the 14 raw
features of the trained model, deterministic weights), so the figures do not
depend on a training run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

from contract.paths import DEFAULT_DATA_URI, PROJECT_ROOT
from storage import shards

SIZES = {"1x": 15_002, "10x": 150_000, "1M": 1_000_000}
SHARD_ROWS = 100_000
KEY = "trip_id"
DUCKDB_ROWS = 100_000
RUNS = 3

# The child: score SOURCE into DESTINATION with the streaming predictor, then report its own peak RSS.
_CHILD = """
import sys, time
from batch_prediction.predictor import ModelIdentity, predict_source
from serving.model import load_model
model_dir, source, destination = sys.argv[1:4]
model = load_model(model_dir)
started = time.perf_counter()
result = predict_source(model, ModelIdentity("bench/taxi", "1"), source, destination, "bench", key_field="trip_id")
seconds = time.perf_counter() - started
peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')).split()[1]
print(result.rows_predicted, result.rows_failed, seconds, int(peak) / 1024)
"""


def synthetic_source(folder: Path, rows: int) -> Path:
    """`rows` rows of the shipped sample, repeated, each with its own key, in CSV shards of SHARD_ROWS."""
    # Through storage.shards, the one reader: CSV cells arrive as text, as written.
    sample = pa.Table.from_batches([chunk.batch for chunk in shards.iter_chunks(str(PROJECT_ROOT / DEFAULT_DATA_URI))])
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    while written < rows:
        size = min(SHARD_ROWS, rows - written)
        repeats = -(-size // sample.num_rows)
        shard = pa.concat_tables([sample] * repeats).slice(0, size)
        shard = shard.add_column(0, KEY, pa.array([f"t-{written + index}" for index in range(size)]))
        pa_csv.write_csv(shard, folder / f"part-{written // SHARD_ROWS:05d}.csv")
        written += size
    return folder


def child_run(model_dir: Path, source: Path, destination: Path) -> tuple[int, int, float, float]:
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(model_dir), str(source), str(destination)],
                          capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"batch prediction child failed: {done.stderr[-2000:]}")
    predicted, failed, seconds, peak = done.stdout.split()[-4:]
    return int(predicted), int(failed), float(seconds), float(peak)


def throughput(model, source: Path, destination: Path) -> None:
    from batch_prediction.predictor import ModelIdentity, predict_source
    from batch_prediction.rows import check_chunk

    tensors = [model.block_tensors(check_chunk(chunk, model.spec, KEY).columns)
               for chunk in shards.iter_chunks(str(source), 8192, [*model.spec.features, KEY])]
    pipeline_times, model_times = [], []
    for _ in range(RUNS):  # alternated, so both see the same machine load
        started = time.perf_counter()
        result = predict_source(model, ModelIdentity("bench/taxi", "1"), str(source), str(destination),
                                "throughput", key_field=KEY)
        pipeline_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        for blocks in tensors:
            model.call_blocks(blocks)
        model_times.append(time.perf_counter() - started)
    pipeline_seconds, model_seconds = statistics.median(pipeline_times), statistics.median(model_times)
    rows = result.rows_predicted
    print(f"throughput over {rows} rows (10x), 8192-row chunks, median of {RUNS}:")
    print(f"  streaming predictor (read, check, predict, write, publish) {rows / pipeline_seconds:9.0f} rows/s")
    print(f"  the SavedModel alone, same chunks, tensors ready          {rows / model_seconds:9.0f} rows/s")
    print(f"  ratio {model_seconds / pipeline_seconds:.2f}  (aim >= 0.7)")


def duckdb_cost(folder: Path) -> None:
    import numpy as np

    from batch_prediction.local_bigquery import DuckDBPublisher
    from batch_prediction.output import PREDICTIONS, FolderPublisher
    from batch_prediction.predictor import ModelIdentity, prediction_batch

    identity = ModelIdentity("bench/taxi", "1")
    chunks = [prediction_batch([f"k-{start + index}" for index in range(size)],
                               np.random.default_rng(start).random(size), identity, "duckdb")
              for start in range(0, DUCKDB_ROWS, 8192) for size in [min(8192, DUCKDB_ROWS - start)]]
    figures = {}
    for name, publisher in (("DuckDB (bq:// stand-in)", lambda: DuckDBPublisher("bq://bench-project.scores",
                                                                                 "duckdb", folder)),
                            ("Parquet folder", lambda: FolderPublisher(str(folder / "parquet"), "duckdb"))):
        started = time.perf_counter()
        target = publisher()
        for batch in chunks:
            target.write(PREDICTIONS, batch)
        target.commit({})
        figures[name] = time.perf_counter() - started
    print(f"writing {DUCKDB_ROWS} prediction rows in one publish:")
    for name, seconds in figures.items():
        print(f"  {name:<24} {seconds:6.3f} s per 100k rows")


def main() -> None:
    from serving.model import load_model
    from serving.testing import TAXI_FEATURES, build_demo_model

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        root = Path(scratch)
        model_dir = build_demo_model(root / "model", TAXI_FEATURES)
        sources = {name: synthetic_source(root / f"source-{name}", rows) for name, rows in SIZES.items()}
        throughput(load_model(str(model_dir)), sources["10x"], root / "out-throughput")

        print("peak RSS of a fresh process scoring the whole source (includes TensorFlow and the model):")
        peaks = {}
        for name, source in sources.items():
            predicted, failed, seconds, peak = child_run(model_dir, source, root / f"out-{name}")
            peaks[name] = peak
            print(f"  {name:<4} {predicted:>9} rows predicted, {failed} failed, {seconds:6.1f} s, "
                  f"{predicted / seconds:8.0f} rows/s, peak RSS {peak:6.0f} MB")
        print(f"  largest / smallest peak: {peaks['1M'] / peaks['1x']:.2f}x  (aim <= 1.2x)")
        duckdb_cost(root)


if __name__ == "__main__":
    main()
