"""Batch prediction pipeline: score a data set with a registered model; lineage on every output row.

Steps, in the order they run:
1. Resolve the model: the model name (the data set config's `model_name` unless
   the parameter gives one) and `version_or_alias` (default `champion`) to one
   registered version: its resource name, version and SavedModel.
Vertex form (compiled/batch_prediction_pipeline.json):
2. Plan the job: what the BatchPredictionJob takes for this source and
   destination (shards or a BigQuery table in; files or a BigQuery dataset
   out); gs:// shards (the landing layout's CSV included) are staged as JSONL
   instances, each carrying its source row as the job's key; refuses what it
   cannot take before any job is created.
3. Get the model: GCPC `ModelGetOp("MODEL_ID@VERSION_OR_ALIAS")`.
4. Batch predict: GCPC `ModelBatchPredictOp` on `machine_type` with
   `starting_replica_count`..`max_replica_count` replicas of the serving container.
5. Publish: the job's output in the one schema (key, prediction,
   prediction_timestamp, model_resource_name, model_version, run_id) at the
   destination, replacing the run id's earlier output, every row sent and not
   returned in the errors output; BigQuery SQL in the dataset's location for bq://.
Local form (kfp.local, `python runner.py --run local --pipeline batch_prediction`):
2. Predict: the streaming predictor (batch_prediction/predictor.py) over the
   source, published whole under the run id; bq:// is a DuckDB file under local/.
"""

from kfp import dsl

from components.plan_batch_job import plan_batch_job
from components.predict_batch import predict_batch
from components.publish_batch_job_output import publish_batch_job_output
from components.resolve_batch_model import resolve_batch_model
from contract.paths import DEFAULT_DATASET_CONFIG
from pipelines.platform import Platform
from registry.model_registry import CHAMPION, VERTEX

PIPELINE_NAME = "batch-prediction-pipeline"


def build_batch_prediction_pipeline(platform: Platform):
    @dsl.pipeline(name=PIPELINE_NAME, description="Pull, predict, push: a registered model over a data set.")
    def batch_prediction_pipeline(
        source: str,
        destination: str,
        model_name: str = "",  # "": the data set config's model_name
        version_or_alias: str = CHAMPION,
        key_field: str = "",  # "": rows are keyed by their place in the source (shard#row)
        run_id: str = "",  # "": the pipeline run's name; a rerun with the same run id replaces its output
        output_format: str = "parquet",  # files: parquet or jsonl
        dataset_config: str = DEFAULT_DATASET_CONFIG,
        registry_uri: str = VERTEX,
        project: str = "",
        location: str = "us-central1",
        machine_type: str = "n1-standard-2",  # Vertex only, as are the replica counts
        starting_replica_count: int = 1,
        max_replica_count: int = 2,
        job_service_account: str = "",  # Vertex only: the batch job's identity ("": Vertex AI's service agent)
    ):
        model = resolve_batch_model(model_name=model_name, version_or_alias=version_or_alias,
                                    dataset_config=dataset_config, registry_uri=registry_uri, project=project,
                                    location=location).set_display_name("1. Resolve the model")
        model.set_caching_options(False)  # an alias moves between runs
        if platform == "local":
            predict_batch(model_uri=model.outputs["model_uri"],
                          model_resource_name=model.outputs["model_resource_name"],
                          model_version=model.outputs["model_version"], source=source, destination=destination,
                          run_id=run_id, pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, key_field=key_field,
                          output_format=output_format).set_display_name("2. Predict (streaming, local)")
            return
        from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
        from google_cloud_pipeline_components.v1.model import ModelGetOp

        plan = plan_batch_job(source=source, destination=destination, key_field=key_field, run_id=run_id,
                              pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, model_uri=model.outputs["model_uri"]
                              ).set_display_name("2. Plan the job")
        got = ModelGetOp(model_name=model.outputs["model_ref"], project=project, location=location
                         ).set_display_name("3. Get the model")
        job = ModelBatchPredictOp(
            job_display_name=plan.outputs["run_id"], model=got.outputs["model"], project=project, location=location,
            instances_format=plan.outputs["instances_format"], predictions_format=plan.outputs["predictions_format"],
            gcs_source_uris=plan.outputs["gcs_source_uris"],
            bigquery_source_input_uri=plan.outputs["bigquery_source_input_uri"],
            instance_type=plan.outputs["instance_type"], key_field=plan.outputs["key_field"],
            gcs_destination_output_uri_prefix=plan.outputs["gcs_destination_output_uri_prefix"],
            bigquery_destination_output_uri=plan.outputs["bigquery_destination_output_uri"],
            machine_type=machine_type, starting_replica_count=starting_replica_count,
            max_replica_count=max_replica_count, service_account=job_service_account,
        ).set_display_name("4. Batch predict (Vertex AI)")
        publish_batch_job_output(
            model=got.outputs["model"], gcs_output_directory=job.outputs["gcs_output_directory"],
            bigquery_output_table=job.outputs["bigquery_output_table"], source=source, destination=destination,
            run_id=plan.outputs["run_id"], key_field=key_field, sent_rows=plan.outputs["sent_rows"],
            output_format=output_format, project=project).set_display_name("5. Publish in the one schema")

    return batch_prediction_pipeline
