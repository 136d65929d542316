"""AIP_STORAGE_URI as a gs:// prefix, as Vertex AI sets it: the model is downloaded, then served."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving.instances import instances_to_columns
from serving.testing import demo_instances
from tests.gcs_emulator import EMULATOR_ENV, GcsEmulator

pytestmark = pytest.mark.emulator


@pytest.fixture
def model_bucket(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A bucket of this test's own in the session's GCS emulator, which the server code reaches."""
    monkeypatch.setenv(EMULATOR_ENV, gcs_emulator.url)
    return gcs_emulator.new_bucket("vertex-models")


def test_a_gs_model_is_downloaded_and_predicts_like_the_local_copy(
        model_bucket: str, gcs_emulator: GcsEmulator, demo_model_dir: Path,
        direct_predict: Callable[[list[dict[str, Any]]], list[float]]) -> None:
    from serving.model import load_model

    gcs_emulator.upload_tree(demo_model_dir, f"gs://{model_bucket}/models/demo")
    gcs_emulator.upload_bytes(f"gs://{model_bucket}/models/demo-other/saved_model.pb",
                              b"a neighbour that must not be copied")

    model = load_model(f"gs://{model_bucket}/models/demo")

    instances = demo_instances(20, seed=9)
    predictions = model.predictions(instances_to_columns(instances, model.spec))
    assert [prediction["probability"] for prediction in predictions] == direct_predict(instances)
    assert model.source_uri == f"gs://{model_bucket}/models/demo"


def test_an_empty_gs_prefix_is_a_clear_error(model_bucket: str) -> None:
    from serving.model import load_model

    with pytest.raises(FileNotFoundError, match=f"no objects under gs://{model_bucket}/models/missing"):
        load_model(f"gs://{model_bucket}/models/missing")
