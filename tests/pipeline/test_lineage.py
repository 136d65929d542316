"""A version's lineage key (registry/lineage.py): a run that would make the same model again finds the version it
made, in the local registry and on Vertex AI (the key rides as a label there), and anything that changes the
model changes the key."""

from __future__ import annotations

import json

import pytest

from contract.model_inputs import INPUT_SPEC_FILE
from registry import lineage
from registry.lineage import LINEAGE_KEY, code_version, identical_version, lineage_key
from registry.model_registry import LocalModelRegistry, VertexModelRegistry, register_blessed_model
from tests.pipeline.model_registry_stand_in import LOCATION, NAME, PROJECT, stand_in_model_registry
from tests.pipeline.test_vertex_registry import TAXI_INPUTS, export_to_gcs

PARAMETERS = {"learning_rate": 0.001, "hidden_units": [64, 32], "epochs": 8, "batch_size": 256, "seed": 42}
BASE = ("data/processed/2014", "9f2c1a0b3d4e5f60", "config text", "schema text", PARAMETERS, "serving:1", "c0de")


def test_the_key_follows_everything_that_makes_the_model():
    key = lineage_key(*BASE)
    assert len(key) == 16 and key == lineage_key(*BASE)
    changed = [("data_uri", 0, "data/processed/2015"), ("data_version", 1, "0000000000000001"),
               ("dataset_config", 2, "other config"), ("schema", 3, "other schema"),
               ("parameters", 4, PARAMETERS | {"seed": 7}), ("serving_image", 5, "serving:2"), ("code", 6, "c0df")]
    for name, index, value in changed:
        other = list(BASE)
        other[index] = value
        assert lineage_key(*other) != key, name
    # The same parameters however KFP handed them over (a list's numbers arrive as floats).
    assert lineage_key(*BASE[:4], PARAMETERS | {"hidden_units": [64.0, 32.0], "epochs": 8.0}, *BASE[5:]) == key
    # A run that does not say which bytes it read is never taken for another.
    assert lineage_key(BASE[0], "", *BASE[2:]) == ""


def test_the_code_version_changes_with_the_model_making_source(tmp_path, monkeypatch):
    assert code_version() == code_version()
    for package in lineage.MODEL_PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "module.py").write_text("x = 1\n")
    monkeypatch.setattr(lineage, "PROJECT_ROOT", tmp_path)
    before = code_version()
    (tmp_path / "trainer" / "module.py").write_text("x = 2\n")
    assert code_version() != before


def test_an_identical_version_is_found_locally_whatever_its_aliases(tmp_path):
    model_dir = tmp_path / "model"  # the registry reads only the input contract
    model_dir.mkdir()
    (model_dir / INPUT_SPEC_FILE).write_text(json.dumps(TAXI_INPUTS.to_dict()))
    registry = LocalModelRegistry(tmp_path / "registry")
    key = lineage_key(*BASE)
    first = register_blessed_model(registry, "demo", str(model_dir), {LINEAGE_KEY: key})
    register_blessed_model(registry, "demo", str(model_dir), {LINEAGE_KEY: lineage_key(*BASE[:6], "other")})
    registry.set_alias("demo", "2", "champion")
    assert identical_version(registry, "demo", key).version == first.version
    assert identical_version(registry, "demo", lineage_key(BASE[0], "1", *BASE[2:])) is None
    assert identical_version(registry, "demo", "") is None


@pytest.mark.emulator
def test_an_identical_version_is_found_on_vertex_by_its_label(gcs_bucket):
    with stand_in_model_registry() as fake:
        registry = VertexModelRegistry(PROJECT, LOCATION, serving_image="serving:1")
        key = lineage_key(*BASE)
        register_blessed_model(registry, NAME, export_to_gcs(gcs_bucket, "run-1"),
                               {LINEAGE_KEY: key, "labels": {"data_uri": BASE[0], LINEAGE_KEY: key}})
        assert fake.uploads[0]["model"]["labels"][LINEAGE_KEY] == key
        assert identical_version(registry, NAME, key).version == "1"
        assert identical_version(registry, NAME, lineage_key(*BASE[:5], "serving:2", BASE[6])) is None
