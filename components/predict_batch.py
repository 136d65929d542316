from typing import NamedTuple

from kfp.dsl import Metrics, Output

from components import project_component


@project_component
def predict_batch(model_uri: str, model_resource_name: str, model_version: str, source: str, destination: str,
                  run_id: str, pipeline_run: str, key_field: str, output_format: str, metrics: Output[Metrics]
                  ) -> NamedTuple("BatchOutput", output=str, rows_predicted=int, rows_failed=int):
    """The local form: the streaming predictor over `source`, published whole under the run id
    (`run_id`, or the pipeline run's name when empty)."""
    from collections import namedtuple

    from batch_prediction.predictor import ModelIdentity, predict_source
    from serving.model import load_model

    result = predict_source(load_model(model_uri), ModelIdentity(model_resource_name, model_version), source,
                            destination, run_id or pipeline_run, key_field=key_field, output_format=output_format)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    print(f"run {result.run_id}: {result.rows_predicted} predicted, {result.rows_failed} failed -> {result.output}")
    for line in result.first_errors:
        print(f"  error: {line}")
    return namedtuple("BatchOutput", ["output", "rows_predicted", "rows_failed"])(
        result.output, result.rows_predicted, result.rows_failed)
