import multiprocessing
from pathlib import Path

import pytest

from registry.model_registry import (
    CHALLENGER,
    CHAMPION,
    LocalModelRegistry,
    RegistryError,
    VertexModelRegistry,
    open_registry,
    register_blessed_model,
)

NAME = "taxi"


@pytest.fixture
def saved_model(tmp_path) -> Path:
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    return model


def test_first_blessed_model_is_champion_later_ones_challengers(tmp_path, saved_model):
    registry = LocalModelRegistry(tmp_path / "registry")
    assert registry.get(NAME, CHAMPION) is None
    first = register_blessed_model(registry, NAME, str(saved_model), {"data_uri": "a"})
    second = register_blessed_model(registry, NAME, str(saved_model), {"data_uri": "b"})
    assert (first.version, first.aliases) == ("1", (CHALLENGER, CHAMPION))
    assert (second.version, second.aliases) == ("2", (CHALLENGER,))
    assert registry.get(NAME, CHAMPION).version == "1"
    assert registry.get(NAME, CHALLENGER).metadata == {"data_uri": "b"}
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
