from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Output

from components import project_component


@project_component
def validate_data(examples: Input[Dataset], dataset_config: str, statistics: Output[Artifact],
                  schema: Output[Artifact], anomalies: Output[Artifact]) -> NamedTuple(
        "ValidationCounts", critical=int, warnings=int):
    """Statistics and validation of each batch against the reviewed schema.
    A critical anomaly fails this step, so the batch never reaches training."""
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from google.protobuf import text_format

    from mlops import data_validation as dv
    from mlops.dataset import load_dataset_config
    from mlops.ingest import load_manifest, load_split

    config = load_dataset_config(dataset_config)
    train, evaluation = load_split(examples.path, "train"), load_split(examples.path, "eval")
    Path(statistics.path).mkdir(parents=True, exist_ok=True)
    stats = dv.statistics_list({"train": train, "eval": evaluation})
    (Path(statistics.path) / "statistics.pbtxt").write_text(text_format.MessageToString(stats))

    Path(schema.path).mkdir(parents=True, exist_ok=True)
    if config.schema_path.exists():
        reviewed = dv.load_schema(config.schema_path)
        shutil.copy(config.schema_path, Path(schema.path) / "schema.pbtxt")
    else:  # first use: infer, use it, and say that it needs a review
        import pandas as pd

        reviewed = dv.infer_schema(pd.concat([train, evaluation]), config)
        dv.write_schema(reviewed, Path(schema.path) / "schema.pbtxt")
        print(f"WARNING: {config.schema_path} does not exist; inferred a schema from this data. Review it and "
              "commit it with `make schema`.")
    schema.metadata["source"] = str(config.schema_path)

    import pandas as pd

    found = dv.validate(pd.concat([train, evaluation]), load_manifest(examples.path).batches, reviewed, config)
    dv.write_validation_outputs(found, reviewed, anomalies.path)
    blocking = dv.critical(found)
    anomalies.metadata.update({"critical": len(blocking), "warnings": len(found) - len(blocking)})
    dv.raise_on_critical(found)
    return namedtuple("ValidationCounts", ["critical", "warnings"])(len(blocking), len(found) - len(blocking))
