from typing import NamedTuple

from components import project_component


@project_component
def lookup_champion(model_name: str, dataset_config: str, registry_uri: str, project: str, location: str
                    ) -> NamedTuple("Champion", model_name=str, champion_uri=str, champion_version=str):
    """Resolves the run's model name (the data set config's, unless the parameter
    overrides it: the one place this happens; evaluate and register take it from
    here), then its current champion's SavedModel location, or "" on the first run."""
    from collections import namedtuple

    from contract.dataset import load_dataset_config
    from registry.model_registry import CHAMPION, open_registry, resolve_model_name

    model_name = resolve_model_name(model_name, load_dataset_config(dataset_config))
    champion = open_registry(registry_uri, project, location).get(model_name, CHAMPION)
    result = namedtuple("Champion", ["model_name", "champion_uri", "champion_version"])
    if champion is None:
        print(f"no {CHAMPION} for {model_name!r} yet: this run's change threshold is ignored")
        return result(model_name, "", "")
    print(f"{CHAMPION} of {model_name!r} is version {champion.version} at {champion.uri}")
    return result(model_name, champion.uri, champion.version)
