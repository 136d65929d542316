"""A synthetic landing area N times the shipped sample, for the scale figures (bench/bench_scale.py).

Copy 0 is the sample itself, byte for byte, so 1x is the data `make run` uses.
Copy c (c >= 1) of each monthly batch: its rows resampled with replacement
(each from the rows missing the same cells),
the numbers jittered (a value that would leave its column's range in the
sample stays as drawn, so the reviewed schema still holds it), timestamps and partition folders shifted
by 4c years (the sample spans four), so every copy lands in new partitions
and the split-by-hash sees new keys. Missing cells stay missing; categories
and text are resampled, never invented.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from contract.paths import BATCH_FILE_NAME, LANDING_PREFIX, PROJECT_ROOT

SAMPLE = PROJECT_ROOT / LANDING_PREFIX
SHIFT_YEARS = 4  # the sample's span (2013-2016): each copy starts after the previous one
SECONDS_PER_YEAR = 365.25 * 24 * 3600
# Numbers that are measurements are jittered: amounts relatively, coordinates by a few metres. Other
# numbers are codes (ids, hours, areas) and kept as drawn.
RELATIVE_JITTER = {"fare": 0.02, "tips": 0.02, "trip_miles": 0.02, "trip_seconds": 0.02}
ABSOLUTE_JITTER = {"pickup_latitude": 0.0005, "pickup_longitude": 0.0005, "dropoff_latitude": 0.0005,
                   "dropoff_longitude": 0.0005}
JITTERED = (*RELATIVE_JITTER, *ABSOLUTE_JITTER)
TIMESTAMP = "trip_start_timestamp"


def _ranges(batches: list[Path]) -> dict[str, tuple[float, float]]:
    """Each jittered column's [min, max] over the whole sample: jittered values are clipped to it."""
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for batch in batches:
        for row in csv.DictReader(io.StringIO(batch.read_text())):
            for column in JITTERED:
                if row.get(column):
                    value = float(row[column])
                    low[column] = min(low.get(column, value), value)
                    high[column] = max(high.get(column, value), value)
    return {column: (low[column], high[column]) for column in low}


def _copy_batch(lines: list[list[str]], header: list[str], copy: int, ranges: dict[str, tuple[float, float]],
                rng: np.random.Generator) -> list[list[str]]:
    # Each row is replaced by a row drawn from those missing the same cells: every column keeps its
    # presence in the batch (the schema's minimum presence is per batch).
    alike: dict[tuple[bool, ...], list[int]] = {}
    for index, row in enumerate(lines):
        alike.setdefault(tuple(cell == "" for cell in row), []).append(index)
    drawn = [lines[rng.choice(alike[tuple(cell == "" for cell in row)])] for row in lines]
    shift = int(copy * SHIFT_YEARS * SECONDS_PER_YEAR)
    positions = {name: header.index(name) for name in (*JITTERED, TIMESTAMP) if name in header}
    out = []
    for row in drawn:
        row = list(row)
        for name, index in positions.items():
            cell = row[index]
            if not cell:
                continue
            if name == TIMESTAMP:
                row[index] = str(int(cell) + shift)
                continue
            low, high = ranges[name]
            number = float(cell)
            if name in RELATIVE_JITTER:
                value = number * (1 + rng.uniform(-RELATIVE_JITTER[name], RELATIVE_JITTER[name]))
            else:
                value = number + rng.uniform(-ABSOLUTE_JITTER[name], ABSOLUTE_JITTER[name])
            integral = cell.lstrip("-").isdigit()
            value = float(round(value)) if integral else round(value, 9)
            if low <= value <= high:  # else the drawn value stays: the reviewed schema's range holds
                row[index] = str(int(value)) if integral else repr(value)
        out.append(row)
    return out


def make_landing(target: Path, factor: int, sample: Path = SAMPLE) -> Path:
    """Writes `factor` copies of the sample's batches under target/LANDING_PREFIX; returns that folder."""
    if factor < 1:
        raise ValueError(f"factor={factor}; expected a whole number >= 1")
    batches = sorted(sample.rglob(BATCH_FILE_NAME))
    ranges = _ranges(batches)
    landing = target / LANDING_PREFIX
    for batch in batches:
        partition = batch.parent.relative_to(sample)  # YYYY/MM/DD/HHMM
        text = batch.read_text()
        for copy in range(factor):
            year = int(partition.parts[0]) + copy * SHIFT_YEARS
            destination = landing / str(year) / Path(*partition.parts[1:]) / BATCH_FILE_NAME
            destination.parent.mkdir(parents=True, exist_ok=True)
            if copy == 0:
                destination.write_text(text)
                continue
            reader = csv.reader(io.StringIO(text))
            header = next(reader)
            rows = [row for row in reader if row]
            rng = np.random.default_rng([copy, year, int(partition.parts[1])])
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(_copy_batch(rows, header, copy, ranges, rng))
            destination.write_text(buffer.getvalue())
    return landing
