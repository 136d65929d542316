from typing import NamedTuple

from components import project_component


@project_component
def lookup_champion(model_name: str, registry_uri: str, project: str, location: str) -> NamedTuple(
        "Champion", champion_uri=str, champion_version=str):
    """The current champion's SavedModel location, or "" on the first run."""
    from collections import namedtuple

    from registry.model_registry import CHAMPION, open_registry

    champion = open_registry(registry_uri, project, location).get(model_name, CHAMPION)
    result = namedtuple("Champion", ["champion_uri", "champion_version"])
    if champion is None:
        print(f"no {CHAMPION} for {model_name!r} yet: this run's change threshold is ignored")
        return result("", "")
    print(f"{CHAMPION} of {model_name!r} is version {champion.version} at {champion.uri}")
    return result(champion.uri, champion.version)
