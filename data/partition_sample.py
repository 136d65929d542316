"""Partition the Chicago taxi sample into the immutable landing layout.

    python data/partition_sample.py [SOURCE_CSV]

Each calendar month of `trip_start_timestamp` (UTC) becomes one batch at
`data/processed/YYYY/MM/01/0000/batch.csv`, rows kept byte-for-byte and in
source order, so batches "arrive" over time and drift between them is real.
Re-running it reproduces the shipped files exactly.
"""

from __future__ import annotations

import csv
import datetime
import sys
from collections import defaultdict
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_SOURCE = DATA_DIR.parent.parent / "shared" / "data" / "chicago_taxi" / "trips.csv"
TIMESTAMP_COLUMN = "trip_start_timestamp"


def partition(source: Path, landing_root: Path) -> dict[str, int]:
    """Writes one batch.csv per month under landing_root; returns rows per partition."""
    with source.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        timestamp_index = header.index(TIMESTAMP_COLUMN)
        months: dict[str, list[list[str]]] = defaultdict(list)
        for row in reader:
            start = datetime.datetime.fromtimestamp(int(row[timestamp_index]), datetime.UTC)
            months[f"{start:%Y/%m}/01/0000"].append(row)
    for partition_path, rows in months.items():
        target = landing_root / partition_path / "batch.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    return {path: len(rows) for path, rows in sorted(months.items())}


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    counts = partition(source, DATA_DIR / "processed")
    print(f"{sum(counts.values())} rows in {len(counts)} partitions under {DATA_DIR / 'processed'}")
