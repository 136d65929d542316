"""Shared test plumbing.

Rule for tests that need something outside Python (an emulator, a Debian tool):
call `require_or_skip(available, reason)`. Locally that skips with the reason
printed; on CI (CI=true) the same absence is a failure, never a silent skip.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.paths import PROJECT_ROOT
from tests.gcs_emulator import EMULATOR_ENV, GcsEmulator, running_gcs_emulator

ON_CI = os.environ.get("CI", "").lower() == "true"


def require_or_skip(available: bool, reason: str) -> None:
    if available:
        return
    if ON_CI:
        pytest.fail(f"required on CI but missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """The GCS emulator, one per session. Point code at it with
    `monkeypatch.setenv(EMULATOR_ENV, gcs_emulator.url)`; use a bucket of your own."""
    require_or_skip(importlib.util.find_spec("gcp_storage_emulator") is not None,
                    "gcp-storage-emulator is not installed (it is in the dev extras)")
    with running_gcs_emulator() as emulator:
        yield emulator


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket in the session's emulator; every google-cloud-storage client in this
    process reaches it through STORAGE_EMULATOR_HOST for the test's duration."""
    monkeypatch.setenv(EMULATOR_ENV, gcs_emulator.url)
    return gcs_emulator.new_bucket()


@dataclasses.dataclass(frozen=True)
class SmallSampleRun:
    """A local training run on two small shipped partitions, with its own data set config and model name."""
    landing: Path  # the partitions, copied
    local: Path  # the run's local state (pipeline root, registry, endpoint)
    config: str  # the data set config
    model_name: str
    result: object  # pipelines.local_run.LocalRun
    run_dir: Path


SMALL_SAMPLE_MODEL = "chicago-taxi-small-sample"


@pytest.fixture(scope="session")
def small_sample_run(tmp_path_factory: pytest.TempPathFactory) -> SmallSampleRun:
    """One whole training run (about a minute), shared by the suite: the pipeline's end-to-end tests judge later
    runs against it, the console's tests show it. Tests that change its state must copy it first."""
    from pipelines.local_run import run_pipeline
    from tests.pipeline.conftest import (
        SMALL_DATA_HYPERPARAMETERS,
        SMALL_DATA_MIN_EVAL_EXAMPLES,
        copy_partitions,
        derived_config,
    )

    root = tmp_path_factory.mktemp("small-sample-run")
    config = derived_config(root / "small_sample.yaml", model_name=SMALL_SAMPLE_MODEL,
                            gate={"min_eval_examples": SMALL_DATA_MIN_EVAL_EXAMPLES, "metric_floors": {"recall": 0.2}})
    landing = copy_partitions(root)
    result = run_pipeline("training", root / "local", data_uri=str(landing), dataset_config=str(config),
                          **SMALL_DATA_HYPERPARAMETERS)
    return SmallSampleRun(landing, root / "local", str(config), SMALL_SAMPLE_MODEL, result, result.run_dir)
