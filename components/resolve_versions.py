from typing import NamedTuple

from kfp.dsl import Model, Output

from components import project_component


@project_component
def resolve_versions(model_name: str, dataset_config: str, candidate: str, baseline: str, registry_uri: str,
                     project: str, location: str, candidate_model: Output[Model]
                     ) -> NamedTuple("Versions", model_name=str, candidate_version=str, baseline_uri=str,
                                     baseline_version=str):
    """The registered versions to compare (each a version number or an alias): the candidate's SavedModel
    copied into this step's output (what evaluate-model takes, as from training), the baseline by URI
    ("" as baseline: none, the candidate is judged on the floors alone)."""
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from contract.dataset import load_dataset_config
    from deploy import open_backend
    from deploy.transitions import resolve_version
    from registry.model_registry import resolve_model_name
    from storage import uri as storage_uri

    model_name = resolve_model_name(model_name, load_dataset_config(dataset_config))
    backend = open_backend(registry_uri, model_name, "", project, location)
    chosen = resolve_version(backend, candidate)
    source = storage_uri.local_dir(chosen.uri, Path(candidate_model.path))
    if source != Path(candidate_model.path):
        shutil.copytree(source, candidate_model.path)
    candidate_model.metadata.update({"version": chosen.version, "registered_uri": chosen.uri})
    against = resolve_version(backend, baseline) if baseline else None
    print(f"candidate: {model_name} version {chosen.version} ({candidate}); baseline: "
          + (f"version {against.version} ({baseline})" if against else "none"))
    return namedtuple("Versions", ["model_name", "candidate_version", "baseline_uri", "baseline_version"])(
        model_name, chosen.version, against.uri if against else "", against.version if against else "")
