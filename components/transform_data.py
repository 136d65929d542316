from kfp.dsl import Artifact, Dataset, Input, Output

from components import project_component


@project_component
def transform_data(examples: Input[Dataset], schema: Input[Artifact], dataset_config: str,
                   transform_graph: Output[Artifact], transformed_examples: Output[Dataset],
                   beam_runner: str = "DirectRunner", beam_pipeline_args: list = []):  # noqa: B006 (KFP default)
    """tf.Transform on Beam: analyze train, transform both splits, keep the graph for serving.
    `beam_runner` and `beam_pipeline_args` choose where Beam runs (dataprep.beam_options)."""
    from contract.artifacts import SCHEMA_FILE
    from dataprep.transform import run_transform

    result = run_transform(examples.path, dataset_config, f"{schema.path}/{SCHEMA_FILE}",
                           transform_graph.path, transformed_examples.path, beam_runner, beam_pipeline_args)
    transformed_examples.metadata.update({"train_rows": result["train_rows"], "eval_rows": result["eval_rows"]})
