"""Small sources for batch prediction tests, written from the shipped sample."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from contract.paths import LANDING_PREFIX, PROJECT_ROOT

SAMPLE_BATCH = PROJECT_ROOT / LANDING_PREFIX / "2014/03/01/0000" / "batch.csv"


def sample_rows(count: int | None = None) -> tuple[list[str], list[list[str]]]:
    """The header and the first `count` rows of a shipped batch, as text cells."""
    header, *rows = list(csv.reader(io.StringIO(SAMPLE_BATCH.read_text())))
    return header, rows[:count] if count else rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def keyed(header: list[str], rows: list[list[str]], key: str = "trip_id") -> tuple[list[str], list[list[str]]]:
    """The rows with a key column in front: trip-0, trip-1, ..."""
    return [key, *header], [[f"trip-{index}", *row] for index, row in enumerate(rows)]
