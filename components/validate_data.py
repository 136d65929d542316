from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Output

from components import project_component


@project_component
def validate_data(examples: Input[Dataset], dataset_config: str, statistics: Output[Artifact],
                  schema: Output[Artifact], anomalies: Output[Artifact], beam_runner: str = "DirectRunner",
                  beam_pipeline_args: list = []) -> NamedTuple(  # noqa: B006 (KFP default)
        "ValidationCounts", critical=int, warnings=int):
    """Statistics and validation of each batch against the reviewed schema.
    A critical anomaly fails this step, so the batch never reaches training.
    `beam_runner` and `beam_pipeline_args`: as for ingest (dataprep.beam_validation on Beam)."""
    from collections import namedtuple

    from contract.dataset import load_dataset_config
    from dataprep import validation as dv

    config = load_dataset_config(dataset_config)
    schema.metadata["source"] = config.schema_uri
    # A critical anomaly raises here: the step fails with the anomalies written to its artifact.
    found = dv.validate_examples(examples.path, config, statistics.path, schema.path, anomalies.path,
                                 beam_runner, beam_pipeline_args)
    blocking = len(dv.critical(found))
    anomalies.metadata.update({"critical": blocking, "warnings": len(found) - blocking})
    return namedtuple("ValidationCounts", ["critical", "warnings"])(blocking, len(found) - blocking)
