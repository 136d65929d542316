"""The Vertex form of batch prediction: the job's plan, and its output brought to the one schema.

Vertex AI runs the model in a BatchPredictionJob (GCPC `ModelBatchPredictOp`)
that sends our custom serving container `{"instances": [...]}` requests, as an
endpoint would. What the job is given and what comes back:

- a `gs://` prefix of JSONL files: each line, a JSON object, is one instance
  (instance_type `object`; a key_field is taken out of the instance and comes
  back as `key`). Output: files of `{"instance"|"key": ..., "prediction"|"error": ...}`
  lines whose names vary by model kind, so the output folder is listed, not guessed.
- `bq://project.dataset.table`: each row is sent as an object of its columns.
  Output: a new table `predictions_<time>` (and `errors_<time>`) in the
  destination dataset, holding the row's columns and `prediction`.
- CSV files (the landing layout's batch.csv): Vertex would send each row as an
  array in the file's column order, and the serving container takes named
  features. So the plan stages them first, streamed chunk by chunk, as JSONL
  objects under the job's folder: numbers read as the local form reads them
  (rows.py), a missing value as null, the key field kept. Parquet is refused.

Known limit: Vertex refuses `key_field` with BigQuery output (400). The plan
never sends it there: the job's output table keeps every source column, so the
SQL step reads the key column itself, and a bq:// destination needs key_field.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa

from batch_prediction import local_bigquery
from batch_prediction.output import ERROR_SCHEMA, ERRORS, PREDICTION_SCHEMA, PREDICTIONS, FolderPublisher
from batch_prediction.predictor import ModelIdentity, error_batch, prediction_batch
from batch_prediction.rows import RowError, check_shard_columns, feature_values
from contract.dataset import DEFAULT_MISSING_VALUES
from contract.model_inputs import InputSpec
from storage import shards
from storage import uri as storage_uri

JOB_OUTPUT_FOLDER = "_vertex_jobs"


class PlanError(ValueError):
    """A source/destination pair the Vertex job cannot take; the message says what it can take."""


@dataclasses.dataclass(frozen=True)
class JobPlan:
    instances_format: str
    predictions_format: str
    gcs_source_uris: list[str]
    bigquery_source_input_uri: str
    gcs_destination_output_uri_prefix: str
    bigquery_destination_output_uri: str
    instance_type: str
    key_field: str  # what the job is given; "" with BigQuery output


def plan_job(source: str, destination: str, key_field: str, run_id: str, spec: InputSpec | None = None,
             chunk_rows: int = 8192) -> JobPlan:
    """The job's inputs and outputs; CSV sources are staged as JSONL for it (that needs the model's `spec`)."""
    if local_bigquery.is_bigquery(destination):
        table = local_bigquery.parse_dataset(destination)
        if not key_field:
            raise PlanError(f"destination {destination}: BigQuery output on Vertex needs key_field, a column of the "
                            "source that identifies each row (the job's table keeps it; rows have no position)")
        outputs = {"predictions_format": "bigquery", "gcs_destination_output_uri_prefix": "",
                   "bigquery_destination_output_uri": f"bq://{table.project}.{table.dataset}"}
        job_key_field = ""  # Vertex refuses key_field with BigQuery output; the SQL step reads the column
    elif storage_uri.is_gcs(destination):
        outputs = {"predictions_format": "jsonl", "bigquery_destination_output_uri": "",
                   "gcs_destination_output_uri_prefix": storage_uri.join(destination, JOB_OUTPUT_FOLDER, run_id)}
        job_key_field = key_field
    else:
        raise PlanError(f"destination {destination!r}: on Vertex expected gs://BUCKET/prefix or bq://PROJECT.DATASET")
    if local_bigquery.is_bigquery(source):
        local_bigquery.parse_table(source)
        inputs = {"instances_format": "bigquery", "gcs_source_uris": [], "bigquery_source_input_uri": source}
    elif storage_uri.is_gcs(source):
        files = shards.list_shards(source)
        kinds = {shards.shard_format(name) for name in files}
        if kinds == {"csv"} and outputs["gcs_destination_output_uri_prefix"] and spec is not None:
            files = stage_csv_as_jsonl(files, spec, key_field,
                                       storage_uri.join(outputs["gcs_destination_output_uri_prefix"], "instances"),
                                       chunk_rows)
        elif kinds != {"jsonl"}:
            raise PlanError(f"source {source}: holds {', '.join(sorted(kinds))} files; a Vertex batch job takes "
                            "JSONL files here, or CSV files with a gs:// destination (staged as JSONL beside the "
                            "job's output); it reads no Parquet: convert them, load them into BigQuery, or run "
                            "the local form")
        inputs = {"instances_format": "jsonl", "gcs_source_uris": files, "bigquery_source_input_uri": ""}
    else:
        raise PlanError(f"source {source!r}: on Vertex expected a gs:// prefix of JSONL files or "
                        "bq://PROJECT.DATASET.TABLE")
    return JobPlan(**inputs, **outputs, instance_type="object", key_field=job_key_field)


def stage_csv_as_jsonl(files: list[str], spec: InputSpec, key_field: str, target: str,
                       chunk_rows: int = 8192) -> list[str]:
    """CSV shards as JSONL instance files under `target` (gs://), one per chunk; their URIs.

    A row the CSV format cannot parse is reported here (the job never sees it)."""
    bucket_name, prefix = storage_uri.split_gcs(storage_uri.canonical(target))
    bucket = storage_uri._client(target).bucket(bucket_name)  # noqa: SLF001 - the one client factory
    for stale in bucket.list_blobs(prefix=f"{prefix}/"):  # a rerun's instances replace the last ones
        stale.delete()
    columns = [*spec.features, *([key_field] if key_field else [])]
    staged = []
    for chunk in shards.iter_chunks(files, chunk_rows, columns):
        for problem in chunk.problems:
            print(f"left out (not parseable as CSV): {problem}")
        if not chunk.batch.num_rows:
            continue
        check_shard_columns(chunk.batch, chunk.shard, spec, key_field)
        values = {name: feature_values(chunk.batch, name, dtype, frozenset(DEFAULT_MISSING_VALUES))
                  for name, dtype in spec.features.items()}
        if key_field:
            values[key_field] = chunk.batch.column(key_field).to_pylist()
        names = list(values)
        lines = b"\n".join(orjson.dumps(dict(zip(names, row, strict=True))) for row in zip(*values.values(),
                                                                                         strict=True))
        name = f"{prefix}/part-{len(staged):05d}.jsonl"
        bucket.blob(name).upload_from_string(lines + b"\n", content_type="application/jsonl")
        staged.append(f"gs://{bucket_name}/{name}")
    if not staged:
        raise PlanError(f"{', '.join(files)}: no rows to score (empty or header-only CSV files)")
    return staged


# --- gs:// output: the job's files to the one schema --------------------------------------------------------

def _job_output_rows(directory: str) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Every result line of the job's output files: (file, line number, result)."""
    for file in storage_uri.list_files(directory):
        with shards.open_shard(file) as stream:
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield file, number, orjson.loads(line)


def _score(prediction: Any, output: str) -> float:
    return float(prediction[output] if isinstance(prediction, dict) else prediction)


def publish_gcs_job_output(directory: str, destination: str, run_id: str, identity: ModelIdentity,
                           key_field: str, output: str = "probability", output_format: str = "parquet",
                           chunk_rows: int = 8192) -> dict[str, int]:
    """The job's result files under `directory` as the run's output at DESTINATION/RUN_ID, published whole."""
    publisher = FolderPublisher(destination, run_id, output_format)
    counts = {PREDICTIONS: 0, ERRORS: 0}
    keys: list[str] = []
    scores: list[float] = []
    errors: list[RowError] = []

    def flush() -> None:
        if keys:
            publisher.write(PREDICTIONS, prediction_batch(keys, pa.array(scores).to_numpy(), identity, run_id))
        if errors:
            publisher.write(ERRORS, error_batch(errors, run_id))
        counts[PREDICTIONS] += len(keys)
        counts[ERRORS] += len(errors)
        keys.clear()
        scores.clear()
        errors.clear()

    try:
        for file, number, result in _job_output_rows(directory):
            key = result.get("key") if key_field else None
            key = str(key) if key is not None else f"{file}#{number}"
            if "prediction" not in result and "error" not in result:
                continue  # not a result line (the job also writes error statistics beside its results)
            if "error" in result:
                errors.append(RowError(file, None, number, key, str(result["error"].get("message", result["error"])
                                                                  if isinstance(result["error"], dict)
                                                                  else result["error"])))
            else:
                keys.append(key)
                scores.append(_score(result["prediction"], output))
            if len(keys) + len(errors) >= chunk_rows:
                flush()
        flush()
        publisher.commit({"source": directory, "model_resource_name": identity.resource_name,
                          "model_version": identity.version, "key_field": key_field,
                          "metrics": {"rows_predicted": counts[PREDICTIONS], "rows_failed": counts[ERRORS]}})
    except BaseException:
        publisher.abort()
        raise
    return counts


# --- bq:// output: BigQuery SQL ------------------------------------------------------------------------------

_BIGQUERY_TYPES = {pa.string(): "STRING", pa.float64(): "FLOAT64", pa.int64(): "INT64",
                   pa.timestamp("us", tz="UTC"): "TIMESTAMP"}


def _table(project: str, dataset: str, table: str) -> str:
    return f"`{project}.{dataset}.{table}`"


def bigquery_publish_script(job_table: str, destination: str, key_field: str, output: str = "probability") -> str:
    """The SQL that replaces the run's rows in DESTINATION's tables with the job's output, in one transaction.

    `job_table` is the job's `project.dataset.predictions_<time>` table; its
    errors table is `errors_<time>` beside it. Parameters: @run_id,
    @model_resource_name, @model_version.
    """
    target = local_bigquery.parse_dataset(destination)
    project, dataset, predictions_table = job_table.split(".")
    errors_table = predictions_table.replace("predictions_", "errors_", 1)
    names = local_bigquery.TABLES
    key = f"CAST(`{key_field}` AS STRING)"
    prediction_columns = ", ".join(f"{field.name} {_BIGQUERY_TYPES[field.type]}" for field in PREDICTION_SCHEMA)
    error_columns = ", ".join(f"{field.name} {_BIGQUERY_TYPES[field.type]}" for field in ERROR_SCHEMA)
    predictions = _table(target.project, target.dataset, names[PREDICTIONS])
    errors = _table(target.project, target.dataset, names[ERRORS])
    return f"""CREATE TABLE IF NOT EXISTS {predictions} ({prediction_columns});
CREATE TABLE IF NOT EXISTS {errors} ({error_columns});
BEGIN TRANSACTION;
DELETE FROM {predictions} WHERE run_id = @run_id;
INSERT INTO {predictions} (key, prediction, prediction_timestamp, model_resource_name, model_version, run_id)
SELECT {key}, CAST(JSON_VALUE(TO_JSON_STRING(prediction), '$.{output}') AS FLOAT64), CURRENT_TIMESTAMP(),
       @model_resource_name, @model_version, @run_id
FROM {_table(project, dataset, predictions_table)};
DELETE FROM {errors} WHERE run_id = @run_id;
INSERT INTO {errors} (key, shard, row, line, reason, run_id)
SELECT {key}, '{project}.{dataset}.{errors_table}', NULL, NULL, TO_JSON_STRING(errors), @run_id
FROM {_table(project, dataset, errors_table)};
COMMIT TRANSACTION;
"""


def publish_bigquery_job_output(job_table: str, destination: str, run_id: str, identity: ModelIdentity,
                                key_field: str, project: str, location: str, output: str = "probability") -> str:
    """Runs `bigquery_publish_script` with the real BigQuery client; returns the query job's id.

    With BIGQUERY_EMULATOR_HOST set (an emulator or a test's stand-in API), the client goes there
    without credentials, as google-cloud-storage does with STORAGE_EMULATOR_HOST."""
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    credentials = AnonymousCredentials() if os.environ.get("BIGQUERY_EMULATOR_HOST") else None
    client = bigquery.Client(project=project, location=location or None, credentials=credentials)
    parameters = [bigquery.ScalarQueryParameter("run_id", "STRING", run_id),
                  bigquery.ScalarQueryParameter("model_resource_name", "STRING", identity.resource_name),
                  bigquery.ScalarQueryParameter("model_version", "STRING", identity.version)]
    job = client.query(bigquery_publish_script(job_table, destination, key_field, output),
                       job_config=bigquery.QueryJobConfig(query_parameters=parameters))
    try:
        job.result()
    except exceptions.GoogleAPICallError as error:
        raise RuntimeError(f"BigQuery could not publish the batch job's table {job_table} into {destination} "
                           f"(job {job.job_id}): {error.message}") from None
    return job.job_id
