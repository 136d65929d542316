"""The Vertex backend of the registry, through the real google-cloud-aiplatform client
(REST transport) pointed at a local stand-in for the Model Registry API
(tests/pipeline/model_registry_stand_in.py)."""

import pytest

from registry.model_registry import CHALLENGER, CHAMPION, VertexModelRegistry, register_blessed_model
from tests.pipeline.model_registry_stand_in import LOCATION, NAME, PARENT, PROJECT, stand_in_model_registry


@pytest.fixture
def vertex():
    with stand_in_model_registry() as fake:
        yield fake


def test_first_upload_is_champion_then_new_versions_of_the_same_model(vertex):
    registry = VertexModelRegistry(PROJECT, LOCATION, serving_image="us-docker.pkg.dev/p/r/serving:1")
    assert registry.get(NAME, CHAMPION) is None

    first = register_blessed_model(registry, NAME, "gs://bucket/run-1/model", {"labels": {"data_uri": "gs://x/2014"}})
    assert first.version == "1" and set(first.aliases) >= {CHALLENGER, CHAMPION}
    upload = vertex.uploads[0]
    assert "parentModel" not in upload
    assert upload["model"]["displayName"] == NAME
    assert upload["model"]["artifactUri"] == "gs://bucket/run-1/model"
    assert upload["model"]["containerSpec"]["imageUri"] == "us-docker.pkg.dev/p/r/serving:1"
    assert upload["model"]["labels"] == {"data_uri": "gs---x-2014"}  # label values: [a-z0-9_-] only

    second = register_blessed_model(registry, NAME, "gs://bucket/run-2/model", {})
    assert vertex.uploads[1]["parentModel"] == f"{PARENT}/models/1"  # a version, not a new model
    assert vertex.uploads[1]["model"]["versionAliases"] == [CHALLENGER]
    assert second.version == "2"
    assert registry.get(NAME, CHAMPION).version == "1"
    assert registry.get(NAME, CHALLENGER).uri == "gs://bucket/run-2/model"
