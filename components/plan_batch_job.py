from typing import NamedTuple

from components import project_component


@project_component
def plan_batch_job(source: str, destination: str, key_field: str, run_id: str, pipeline_run: str
                   ) -> NamedTuple("BatchJobPlan", instances_format=str, predictions_format=str, gcs_source_uris=list,
                                   bigquery_source_input_uri=str, gcs_destination_output_uri_prefix=str,
                                   bigquery_destination_output_uri=str, instance_type=str, key_field=str,
                                   run_id=str):
    """What the Vertex batch job is given for this source and destination; refuses what it cannot take
    (CSV or Parquet files, a bq:// destination without key_field) before any job is created."""
    import dataclasses
    from collections import namedtuple

    from batch_prediction.vertex_job import plan_job

    run_id = run_id or pipeline_run
    plan = dataclasses.asdict(plan_job(source, destination, key_field, run_id))
    print(f"batch job plan: {plan}")
    return namedtuple("BatchJobPlan", [*plan, "run_id"])(*plan.values(), run_id)
