from typing import NamedTuple

from components import project_component


@project_component
def plan_batch_job(source: str, destination: str, key_field: str, run_id: str, pipeline_run: str, model_uri: str
                   ) -> NamedTuple("BatchJobPlan", instances_format=str, predictions_format=str, gcs_source_uris=list,
                                   bigquery_source_input_uri=str, gcs_destination_output_uri_prefix=str,
                                   bigquery_destination_output_uri=str, instance_type=str, key_field=str,
                                   sent_rows=str, run_id=str):
    """What the Vertex batch job is given for this source and destination; refuses what it cannot take
    (a bq:// destination or source without key_field) before any job is created. gs:// shards are staged
    as JSONL instances (typed by the model's input spec at `model_uri`), each carrying its source row as the
    job's key, beside the job's output; `sent_rows` lists every source row for the publish step."""
    import dataclasses
    from collections import namedtuple

    from batch_prediction.vertex_job import plan_job
    from contract.model_inputs import InputSpec

    run_id = run_id or pipeline_run
    plan = dataclasses.asdict(plan_job(source, destination, key_field, run_id, InputSpec.load(model_uri)))
    print(f"batch job plan: {plan}")
    return namedtuple("BatchJobPlan", [*plan, "run_id"])(*plan.values(), run_id)
