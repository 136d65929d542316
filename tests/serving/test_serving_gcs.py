"""AIP_STORAGE_URI as a gs:// prefix, as Vertex AI sets it: the model is downloaded, then served."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.instances import instances_to_columns
from serving.processes import free_loopback_port
from serving.testing import demo_instances
from tests.conftest import require_or_skip

pytestmark = pytest.mark.emulator
BUCKET = "vertex-models"


@pytest.fixture
def gcs_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    require_or_skip(importlib.util.find_spec("gcp_storage_emulator") is not None,
                    "gcp-storage-emulator is not installed (it is in the dev extras)")
    from gcp_storage_emulator.server import create_server

    port = free_loopback_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield BUCKET
    finally:
        server.stop()


def test_a_gs_model_is_downloaded_and_predicts_like_the_local_copy(
        gcs_emulator: str, demo_model_dir: Path,
        direct_predict: Callable[[list[dict[str, Any]]], list[float]]) -> None:
    from google.cloud import storage

    from serving.model import load_model

    bucket = storage.Client().bucket(gcs_emulator)
    files = [path for path in demo_model_dir.rglob("*") if path.is_file()]
    for path in files:
        bucket.blob(f"models/demo/{path.relative_to(demo_model_dir)}").upload_from_filename(str(path))
    bucket.blob("models/demo-other/saved_model.pb").upload_from_string(b"a neighbour that must not be copied")

    model = load_model(f"gs://{gcs_emulator}/models/demo")

    instances = demo_instances(20, seed=9)
    predictions = model.predictions(instances_to_columns(instances, model.spec))
    assert [prediction["probability"] for prediction in predictions] == direct_predict(instances)
    assert model.source_uri == f"gs://{gcs_emulator}/models/demo"


def test_an_empty_gs_prefix_is_a_clear_error(gcs_emulator: str) -> None:
    from serving.model import load_model

    with pytest.raises(FileNotFoundError, match=f"no objects under gs://{gcs_emulator}/models/missing"):
        load_model(f"gs://{gcs_emulator}/models/missing")
