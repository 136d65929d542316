"""The Vertex backend of the registry, through the real google-cloud-aiplatform client
(REST transport) pointed at a local stand-in for the Model Registry API
(tests/pipeline/model_registry_stand_in.py). The models' input specs are read
from gs:// in a Cloud Storage emulator, as on Vertex."""

import json

import pytest

from contract.model_inputs import INPUT_SPEC_FILE, InputSpec
from registry.model_registry import (
    CHALLENGER,
    CHAMPION,
    INPUT_CONTRACT_KEY,
    InputContractMismatch,
    VertexModelRegistry,
    register_blessed_model,
)
from tests.pipeline.model_registry_stand_in import LOCATION, NAME, PARENT, PROJECT, stand_in_model_registry


@pytest.fixture
def vertex():
    with stand_in_model_registry() as fake:
        yield fake


TAXI_INPUTS = InputSpec({"fare": "float32", "trip_start_hour": "int64", "company": "string"})


def export_to_gcs(bucket: str, run: str, inputs: InputSpec = TAXI_INPUTS) -> str:
    """An exported model's gs:// folder; the registry reads only its input spec (the upload is faked)."""
    from google.cloud import storage

    storage.Client().bucket(bucket).blob(f"{run}/model/{INPUT_SPEC_FILE}").upload_from_string(
        json.dumps(inputs.to_dict()))
    return f"gs://{bucket}/{run}/model"


@pytest.mark.emulator
def test_first_upload_is_champion_then_new_versions_of_the_same_model(vertex, gcs_bucket):
    registry = VertexModelRegistry(PROJECT, LOCATION, serving_image="us-docker.pkg.dev/p/r/serving:1")
    assert registry.get(NAME, CHAMPION) is None

    first_uri, second_uri = export_to_gcs(gcs_bucket, "run-1"), export_to_gcs(gcs_bucket, "run-2")
    first = register_blessed_model(registry, NAME, first_uri, {"labels": {"data_uri": "gs://x/2014"}})
    assert first.version == "1" and set(first.aliases) >= {CHALLENGER, CHAMPION}
    upload = vertex.uploads[0]
    assert "parentModel" not in upload
    assert upload["model"]["displayName"] == NAME
    assert upload["model"]["artifactUri"] == first_uri
    assert json.loads(upload["model"]["versionDescription"])[INPUT_CONTRACT_KEY] == TAXI_INPUTS.features
    assert upload["model"]["containerSpec"]["imageUri"] == "us-docker.pkg.dev/p/r/serving:1"
    assert upload["model"]["labels"] == {"data_uri": "gs---x-2014"}  # label values: [a-z0-9_-] only

    second = register_blessed_model(registry, NAME, second_uri, {})
    assert vertex.uploads[1]["parentModel"] == f"{PARENT}/models/1"  # a version, not a new model
    assert vertex.uploads[1]["model"]["versionAliases"] == [CHALLENGER]
    assert second.version == "2"
    assert registry.get(NAME, CHAMPION).version == "1"
    assert registry.get(NAME, CHALLENGER).uri == second_uri
    assert [(v.version, v.uri) for v in registry.versions(NAME)] == [("1", first_uri), ("2", second_uri)]

    # A model trained on another data set is refused before anything is uploaded.
    other_uri = export_to_gcs(gcs_bucket, "loans", InputSpec({"income": "float32", "region": "string"}))
    with pytest.raises(InputContractMismatch, match=f"model '{NAME}' version 1 \\(champion, default\\) was trained "
                                                    "on other inputs than the candidate: feature 'company'"):
        register_blessed_model(registry, NAME, other_uri, {})
    assert len(vertex.uploads) == 2
