import dataclasses
import multiprocessing
from pathlib import Path

import pytest

from contract.model_inputs import InputSpec
from registry.model_registry import (
    CHALLENGER,
    CHAMPION,
    INPUT_CONTRACT_KEY,
    InputContractMismatch,
    LocalModelRegistry,
    RegistryError,
    VertexModelRegistry,
    open_registry,
    register_blessed_model,
    resolve_model_name,
)
from tests.pipeline.conftest import exported_model

NAME = "taxi"
TAXI_INPUTS = InputSpec({"fare": "float32", "trip_start_hour": "int64", "company": "string"})


@pytest.fixture
def saved_model(tmp_path) -> Path:
    return exported_model(tmp_path / "model", TAXI_INPUTS)


def test_first_blessed_model_is_champion_later_ones_challengers(tmp_path, saved_model):
    registry = LocalModelRegistry(tmp_path / "registry")
    assert registry.get(NAME, CHAMPION) is None
    first = register_blessed_model(registry, NAME, str(saved_model), {"data_uri": "a"})
    second = register_blessed_model(registry, NAME, str(saved_model), {"data_uri": "b"})
    assert (first.version, first.aliases) == ("1", (CHALLENGER, CHAMPION))
    assert (second.version, second.aliases) == ("2", (CHALLENGER,))
    assert registry.get(NAME, CHAMPION).version == "1"
    assert registry.get(NAME, CHALLENGER).metadata == {"data_uri": "b", INPUT_CONTRACT_KEY: TAXI_INPUTS.features}
    assert [v.aliases for v in registry.versions(NAME)] == [(CHAMPION,), (CHALLENGER,)]
    assert (Path(registry.get(NAME, CHAMPION).uri) / "saved_model.pb").read_bytes() == b"graph"


def test_an_alias_moves_and_names_one_version(tmp_path, saved_model):
    registry = LocalModelRegistry(tmp_path)
    for _ in range(2):
        register_blessed_model(registry, NAME, str(saved_model), {})
    registry.set_alias(NAME, "2", CHAMPION)
    assert registry.get(NAME, CHAMPION).version == "2"
    assert registry.versions(NAME)[0].aliases == ()
    with pytest.raises(RegistryError, match="has no version '7'"):
        registry.set_alias(NAME, "7", CHAMPION)
    with pytest.raises(RegistryError, match="alias 'Bad Alias' is not valid"):
        registry.set_alias(NAME, "1", "Bad Alias")


def test_bad_inputs_are_refused(tmp_path, saved_model):
    registry = LocalModelRegistry(tmp_path)
    with pytest.raises(RegistryError, match="not a folder holding a SavedModel"):
        registry.register(NAME, str(tmp_path / "missing"), {})
    with pytest.raises(RegistryError, match="model name '../x' is not valid"):
        registry.register("../x", str(saved_model), {})


def _register(args) -> str:
    root, model = args
    return LocalModelRegistry(root).register(NAME, model, {}, (CHALLENGER,)).version


def test_concurrent_registrations_get_distinct_versions(tmp_path, saved_model):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        versions = pool.map(_register, [(str(tmp_path), str(saved_model))] * 8)
    assert sorted(versions, key=int) == [str(n) for n in range(1, 9)]
    assert len(LocalModelRegistry(tmp_path).versions(NAME)) == 8


def test_registry_uri_picks_the_backend(tmp_path):
    assert isinstance(open_registry(str(tmp_path)), LocalModelRegistry)
    assert isinstance(open_registry("vertex", "p", "us-central1"), VertexModelRegistry)
    with pytest.raises(RegistryError, match="needs a project"):
        open_registry("vertex", "", "us-central1")
    with pytest.raises(RegistryError, match="not supported"):
        open_registry("gs://bucket/registry")


def test_the_data_set_configs_model_name_is_the_default_and_the_parameter_overrides_it(dataset_config):
    assert resolve_model_name("", dataset_config) == dataset_config.model_name == "chicago-taxi-big-tipper"
    assert resolve_model_name("taxi-experiment", dataset_config) == "taxi-experiment"
    with pytest.raises(RegistryError, match="pipeline parameter model_name 'my model' is not valid"):
        resolve_model_name("my model", dataset_config)
    with pytest.raises(RegistryError, match=r"model_name in .*chicago_taxi.yaml 'taxi/\.\.' is not valid"):
        resolve_model_name("", dataclasses.replace(dataset_config, model_name="taxi/.."))


@pytest.mark.parametrize("other_inputs, expected", [
    (InputSpec({"income": "float32", "region": "string"}),
     "\\(challenger, champion\\) was trained on other inputs than the candidate: feature 'company' \\(string\\) "
     "only in version 1; feature 'fare' \\(float32\\) only in version 1; feature 'income' \\(float32\\) only in "
     "the candidate"),
    (InputSpec({"fare": "float32", "trip_start_hour": "string", "company": "string"}),
     "feature 'trip_start_hour' is string in the candidate, int64 in version 1"),
])
def test_a_model_with_other_inputs_is_never_registered_under_the_same_name(
        tmp_path, saved_model, other_inputs, expected):
    registry = LocalModelRegistry(tmp_path / "registry")
    register_blessed_model(registry, NAME, str(saved_model), {})
    other = exported_model(tmp_path / "other", other_inputs)
    with pytest.raises(InputContractMismatch, match=f"model 'taxi' version 1 .*{expected}") as refusal:
        register_blessed_model(registry, NAME, str(other), {})
    assert "train this data set under its own model name" in str(refusal.value)
    assert [version.version for version in registry.versions(NAME)] == ["1"]
    # Under its own name it is a first version, with its own contract recorded.
    version = register_blessed_model(registry, "loans", str(other), {})
    assert version.metadata[INPUT_CONTRACT_KEY] == other_inputs.features


def test_a_version_whose_contract_cannot_be_read_refuses_registration(tmp_path, saved_model):
    registry = LocalModelRegistry(tmp_path / "registry")
    registry.register(NAME, str(saved_model), {}, (CHAMPION,))
    (Path(registry.get(NAME, CHAMPION).uri) / "input_spec.json").write_text("{not json")
    with pytest.raises(InputContractMismatch, match="version 1 \\(champion\\): its input contract cannot be read"):
        register_blessed_model(registry, NAME, str(saved_model), {})
