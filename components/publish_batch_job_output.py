from typing import NamedTuple

from kfp.dsl import Artifact, Input, Metrics, Output

from components import project_component


@project_component
def publish_batch_job_output(model: Input[Artifact], gcs_output_directory: Input[Artifact],
                             bigquery_output_table: Input[Artifact], source: str, destination: str, run_id: str,
                             key_field: str, sent_rows: str, output_format: str, project: str,
                             metrics: Output[Metrics]
                             ) -> NamedTuple("BatchOutput", output=str, rows_predicted=int, rows_failed=int):
    """The batch job's output in the one schema (key, prediction, prediction_timestamp, model_resource_name,
    model_version, run_id) at the destination, replacing the run id's earlier output: files for gs://, with
    every row the job did not return in the errors output (`sent_rows`: the plan's list of staged rows),
    BigQuery SQL in one transaction, in the destination dataset's location, for bq://."""
    from collections import namedtuple

    from batch_prediction import local_bigquery
    from batch_prediction.predictor import ModelIdentity
    from batch_prediction.vertex_job import METRICS, publish_bigquery_job_output, publish_gcs_job_output

    resource_name, _, version = model.metadata["resourceName"].partition("@")  # ModelGetOp: .../models/ID@VERSION
    identity = ModelIdentity(resource_name, version)
    result = namedtuple("BatchOutput", ["output", "rows_predicted", "rows_failed"])
    if local_bigquery.is_bigquery(destination):
        table = bigquery_output_table.metadata
        job_table = f"{table['projectId']}.{table['datasetId']}.{table['tableId']}"
        job_id = publish_bigquery_job_output(job_table, destination, run_id, identity, key_field, project)
        print(f"published {job_table} into {destination} (BigQuery job {job_id})")
        return result(destination, -1, -1)  # counted by BigQuery; see the tables
    # The job's output folder is the artifact's URI (the GCPC launcher sets it so).
    counts = publish_gcs_job_output(gcs_output_directory.uri, destination, run_id, identity, key_field,
                                    sent_rows=sent_rows, source=source, output_format=output_format)
    for name in METRICS:
        metrics.log_metric(name, counts[name])
    print(f"published {counts['predictions']} predictions and {counts['errors']} error rows into {destination} "
          f"({counts['rows_not_returned']} rows sent and not returned, {counts['unreadable_lines']} job output "
          "lines not read)")
    return result(destination, counts["predictions"], counts["rows_failed"])
