"""Serving fixtures: a demo SavedModel that follows the exported model's contract, and
one prediction server process shared by the HTTP tests (TensorFlow costs seconds per process)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import ChildProcess, start_server, wait_healthy

from serving.testing import DEMO_FEATURES, build_demo_model


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SavedModel: float32, int64 and string features, `serving_default` -> probability."""
    return build_demo_model(tmp_path_factory.mktemp("demo_model"), DEMO_FEATURES)


@pytest.fixture(scope="session")
def direct_predict(demo_model_dir: Path) -> Callable[[list[dict[str, Any]]], list[float]]:
    """Probabilities from the SavedModel's signature called directly, on one batch.

    Missing values are written out here from the contract (float32 -> NaN,
    int64 -> -1, string -> ""), independently of the server's code.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(demo_model_dir))
    signature = loaded.signatures["serving_default"]
    sentinels = {"float32": math.nan, "int64": -1, "string": ""}
    dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}

    def predict(instances: list[dict[str, Any]]) -> list[float]:
        tensors = {name: tf.constant([sentinels[dtype] if instance[name] is None else instance[name]
                                      for instance in instances], dtype=dtypes[dtype])
                   for name, dtype in DEMO_FEATURES.items()}
        assert loaded is not None  # the signature needs the loaded object's variables alive
        return signature(**tensors)["probability"].numpy().tolist()

    return predict


@pytest.fixture(scope="session")
def model_server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    """`python -m serving.server` on a loopback port, shared by the HTTP tests.

    The fixture polls the health route from the moment the process starts, so
    `statuses_seen` records what it answered while the model was loading.
    """
    server = start_server(demo_model_dir, tmp_path_factory.mktemp("server") / "server.log")
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop()
