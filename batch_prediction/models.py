"""Which model version a batch prediction run scores with: a model name and a version or alias, resolved once."""

from __future__ import annotations

import dataclasses

from registry.model_registry import VERTEX, RegistryError, check_alias, open_registry


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    model_ref: str  # what GCPC's ModelGetOp takes on Vertex: MODEL_ID@VERSION_OR_ALIAS ("" locally)
    resource_name: str  # Vertex: projects/P/locations/L/models/ID; locally: REGISTRY/MODEL_NAME
    version: str
    uri: str  # the SavedModel


def resolve_model(model_name: str, version_or_alias: str, registry_uri: str, project: str = "",
                  location: str = "") -> ResolvedModel:
    """The version `version_or_alias` (a version number, or an alias such as champion) of a registered model."""
    if not version_or_alias.isdigit():
        check_alias(version_or_alias)
    if registry_uri == VERTEX:
        return _resolve_on_vertex(model_name, version_or_alias, project, location)
    registry = open_registry(registry_uri)
    if version_or_alias.isdigit():
        found = next((v for v in registry.versions(model_name) if v.version == version_or_alias), None)
    else:
        found = registry.get(model_name, version_or_alias)
    if found is None:
        known = ", ".join(f"{v.version} ({', '.join(v.aliases) or 'no alias'})" for v in registry.versions(model_name))
        raise RegistryError(f"model {model_name!r} has no version or alias {version_or_alias!r} in {registry_uri}; "
                            f"it has: {known or 'no versions (train and register one first)'}")
    return ResolvedModel("", f"{registry_uri.rstrip('/')}/{model_name}", found.version, found.uri)


def _resolve_on_vertex(model_name: str, version_or_alias: str, project: str, location: str) -> ResolvedModel:
    from google.api_core import exceptions
    from google.cloud import aiplatform

    if not project:
        raise RegistryError("the Vertex registry needs a project; pass the pipeline parameter 'project'")
    parents = aiplatform.Model.list(filter=f'display_name="{model_name}"', project=project, location=location)
    if not parents:
        raise RegistryError(f"model {model_name!r} is not in the Vertex AI Model Registry of {project}/{location}")
    parent = parents[0]
    try:
        model = aiplatform.Model(f"{parent.resource_name}@{version_or_alias}")
    except exceptions.NotFound:
        raise RegistryError(f"model {model_name!r} ({parent.resource_name}) has no version or alias "
                            f"{version_or_alias!r}") from None
    model_id = parent.resource_name.rsplit("/", 1)[-1]
    return ResolvedModel(f"{model_id}@{version_or_alias}", parent.resource_name, str(model.version_id), model.uri)
