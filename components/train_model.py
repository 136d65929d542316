from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components import project_component


@project_component
def train_model(transformed_examples: Input[Dataset], transform_graph: Input[Artifact], schema: Input[Artifact],
                dataset_config: str, learning_rate: float, hidden_units: list, epochs: int, batch_size: int,
                seed: int, model: Output[Model]):
    """Keras on the transformed data; exports a SavedModel that takes raw instances."""
    from contract.artifacts import SCHEMA_FILE
    from trainer.train import train_and_export

    summary = train_and_export(
        transformed_examples.path, transform_graph.path, dataset_config, f"{schema.path}/{SCHEMA_FILE}",
        model.path, {"learning_rate": learning_rate, "hidden_units": hidden_units, "epochs": epochs,
                     "batch_size": batch_size, "seed": seed})
    model.metadata.update({"framework": "tensorflow", **{f"train_{k}": v for k, v in summary["history"].items()}})
