"""Batch prediction fixtures: one taxi-shaped SavedModel per session (built, never trained), loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.testing import TAXI_FEATURES, build_demo_model


@pytest.fixture(scope="session")
def taxi_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SavedModel taking the taxi data set's 14 raw features, `serving_default` -> probability."""
    return build_demo_model(tmp_path_factory.mktemp("taxi_model"), TAXI_FEATURES)


@pytest.fixture(scope="session")
def taxi_model(taxi_model_dir: Path):
    from serving.model import load_model

    return load_model(str(taxi_model_dir))
