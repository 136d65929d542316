"""Where things are, declared once."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The landing layout is LANDING_PREFIX/YYYY/MM/DD/HHMM/batch.csv, in a bucket or under the project.
LANDING_PREFIX = "data/processed"
BATCH_FILE_NAME = "batch.csv"
# The shipped sample, the default data for local runs.
DEFAULT_DATA_URI = LANDING_PREFIX
DEFAULT_DATASET_CONFIG = "data/datasets/chicago_taxi.yaml"
# Local mode's state (pipeline root, registry, endpoint, reports): MLOPS_LOCAL_DIR, else local/ in the project.
LOCAL_DIR_ENV = "MLOPS_LOCAL_DIR"
DEFAULT_LOCAL_DIR = PROJECT_ROOT / "local"
