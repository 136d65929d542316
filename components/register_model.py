from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Model

from components import project_component


@project_component
def register_model(model: Input[Model], evaluation: Input[Artifact], examples: Input[Dataset],
                   schema: Input[Artifact], model_name: str, registry_uri: str, project: str, location: str,
                   serving_image: str, data_uri: str, data_version: str, row_filter: str, dataset_config: str,
                   learning_rate: float, hidden_units: list, epochs: int, batch_size: int, seed: int, pipeline_run: str
                   ) -> NamedTuple("Registered", version=str, aliases=str, identical_to=str):
    """A new version of the model (its name resolved by lookup-champion), alias challenger (the first one
    also champion), with its lineage; refused if a version of that model takes other inputs. A few eval
    instances and their predictions go beside the model (smoke_test.json) for the deploy's smoke test.
    A version made from the same lineage (data version, parameters, data set config, code: registry/
    lineage.py) already registered is named in `identical_to`, and nothing is registered (nor deployed)."""
    import json
    from collections import namedtuple
    from pathlib import Path

    from contract.artifacts import OUTCOME_FILE
    from contract.dataset import load_dataset_config
    from dataprep.ingest import load_split
    from deploy.smoke import SMOKE_INSTANCES, record_smoke_test
    from registry.lineage import LINEAGE_KEY, code_version, identical_version, lineage_key
    from registry.model_registry import open_registry, register_blessed_model
    from storage import uri as storage_uri

    registered = namedtuple("Registered", ["version", "aliases", "identical_to"])
    outcome = json.loads((Path(evaluation.path) / OUTCOME_FILE).read_text())
    if not outcome["blessed"]:  # the pipeline only calls this when blessed; refuse loudly if not
        raise RuntimeError(f"refusing to register an unblessed model: {outcome['failures']}")
    config = load_dataset_config(dataset_config)
    key = lineage_key(data_uri, data_version, storage_uri.read_text(config.source),
                      storage_uri.read_text(config.schema_uri),
                      {"learning_rate": learning_rate, "hidden_units": hidden_units, "epochs": epochs,
                       "batch_size": batch_size, "seed": seed}, serving_image, code_version(), row_filter=row_filter)
    registry = open_registry(registry_uri, project, location, serving_image)
    same = identical_version(registry, model_name, key)
    if same is not None:
        print(f"not registered: version {same.version} of {model_name} ({', '.join(same.aliases) or 'no alias'}) was "
              f"made from the same data version, parameters and code (lineage {key}); nothing to deploy")
        return registered("", "", same.version)
    # data_version first (Vertex keeps the lineage in a description cut at 1,000 characters): for a BigQuery
    # table, the snapshot read, PROJECT.DATASET.SNAPSHOT@TIME, i.e. exactly the rows this version learnt from.
    data = {"data_uri": data_uri, "data_version": data_version} | ({"row_filter": row_filter} if row_filter else {})
    lineage = data | {"examples": examples.uri, "schema": schema.uri, "evaluation": evaluation.uri,
                      "metrics": outcome["metrics"]["overall"]["candidate"], "pipeline_run": pipeline_run,
                      LINEAGE_KEY: key,
                      "labels": {name: value for name, value in (data | {LINEAGE_KEY: key}).items()
                                 if value and name != "row_filter"}}
    # Into the model's own folder, so it travels with the version (on Vertex through the /gcs/ mount).
    record_smoke_test(model.path, load_split(examples.path, "eval", max_rows=SMOKE_INSTANCES))
    # Vertex uploads from the artifact's gs:// URI; the local registry copies the local folder.
    model_location = model.uri if registry_uri == "vertex" else model.path
    version = register_blessed_model(registry, model_name, model_location, lineage)
    print(f"registered {model_name} version {version.version} as {', '.join(version.aliases)}")
    return registered(version.version, ",".join(version.aliases), "")
