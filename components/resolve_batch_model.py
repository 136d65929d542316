from typing import NamedTuple

from components import project_component


@project_component
def resolve_batch_model(model_name: str, version_or_alias: str, dataset_config: str, registry_uri: str,
                        project: str, location: str
                        ) -> NamedTuple("BatchModel", model_ref=str, model_resource_name=str, model_version=str,
                                        model_uri=str):
    """The registered version to score with: the model name (the data set config's unless given) and a version
    number or alias. On Vertex, `model_ref` (MODEL_ID@VERSION_OR_ALIAS) is what ModelGetOp takes."""
    from collections import namedtuple

    from batch_prediction.models import resolve_model
    from contract.dataset import load_dataset_config
    from registry.model_registry import resolve_model_name

    model_name = resolve_model_name(model_name, load_dataset_config(dataset_config))
    resolved = resolve_model(model_name, version_or_alias, registry_uri, project, location)
    print(f"{model_name}@{version_or_alias} is version {resolved.version} ({resolved.resource_name}) at {resolved.uri}")
    return namedtuple("BatchModel", ["model_ref", "model_resource_name", "model_version", "model_uri"])(
        resolved.model_ref, resolved.resource_name, resolved.version, resolved.uri)
