"""Fixtures for the training pipeline's tests: small partitions copied from the
shipped sample into tmp, so tests can break a batch without touching data/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from contract.dataset import load_dataset_config
from contract.paths import LANDING_PREFIX, PROJECT_ROOT

SAMPLE = PROJECT_ROOT / LANDING_PREFIX
# Two monthly partitions (about 800 rows): small enough for seconds, big enough to learn.
SMALL_PARTITIONS = ("2014/03/01/0000", "2014/04/01/0000")
# The defaults are sized for the full sample; 600 rows need smaller batches to take enough steps.
SMALL_DATA_HYPERPARAMETERS = {"epochs": 15, "batch_size": 32}


@pytest.fixture(scope="session")
def dataset_config():
    return load_dataset_config()


def copy_partitions(target: Path, partitions=SMALL_PARTITIONS) -> Path:
    for partition in partitions:
        destination = target / LANDING_PREFIX / partition
        destination.mkdir(parents=True)
        shutil.copy(SAMPLE / partition / "batch.csv", destination / "batch.csv")
    return target / LANDING_PREFIX


@pytest.fixture
def small_landing(tmp_path) -> Path:
    """A writable landing area holding two shipped monthly batches."""
    return copy_partitions(tmp_path)
