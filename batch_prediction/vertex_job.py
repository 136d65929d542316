"""The Vertex form of batch prediction: the job's plan, and its output brought to the one schema.

Vertex AI runs the model in a BatchPredictionJob (GCPC `ModelBatchPredictOp`)
that sends our custom serving container `{"instances": [...]}` requests, as an
endpoint would. What the job is given and what comes back:

- gs:// sources (CSV, JSONL or Parquet shards) are staged, streamed chunk by
  chunk, as JSONL instance objects under `DESTINATION/_vertex_jobs/RUN_ID/instances/`:
  the model's features, read as the local form reads them (rows.py: numbers from
  CSV text, a missing value as null), and one more field, `_source_row`, the
  job's key_field (BatchPredictionJob.InstanceConfig: the key is taken out of
  what the model sees and comes back as the result's `key`). It holds the row's
  place in the source and the user's key: `["SHARD", ROW, "KEY" or null]`, ROW
  counting every data row of the shard (storage/shards.py), so every result,
  whichever of the job's files it lands in, maps back to its source row. Vertex
  would send a CSV row to a custom container as an unnamed array, so CSV needs
  staging anyway. Beside the instances, `sent_rows.parquet` lists every source
  row: sent, or refused before the job (not parseable, an empty key) with why.
- `bq://project.dataset.table`: each row is sent as an object of its columns;
  a table's rows have no position, so a gs:// destination needs key_field
  (the key comes back as `key`).
- Output to gs://: result files whose names vary by model kind, listed, not
  guessed, and read line by line. A line that is not a result is never fatal:
  `prediction.errors_stats-*` lines (for a custom container, Python-tuple text
  such as `('Post request fails. ... Non-OK result 504 ...', 16)`: Vertex AI
  troubleshooting, "Exceeded retries"; googleapis/python-aiplatform#2666) are
  the job's reasons; a line that cannot be read at all is counted and shown.
  A request that fails is not written per instance: its instances are missing
  from the results, so the rows sent and not returned are found by key and each
  goes to the errors output with its source row and the reasons the job gave.
- Output to `bq://project.dataset`: a new table `predictions_<time>` (and
  `errors_<time>`) in the destination dataset, holding the row's columns and
  `prediction`; the SQL step brings it to the one schema.

Known limit: Vertex refuses `key_field` with BigQuery output (400). The plan
never sends it there: the job's output table keeps every source column, so the
SQL step reads the key column itself, and a bq:// destination needs key_field.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from batch_prediction import local_bigquery
from batch_prediction.output import ERROR_SCHEMA, ERRORS, PREDICTION_SCHEMA, PREDICTIONS, FolderPublisher
from batch_prediction.predictor import ModelIdentity, error_batch, prediction_batch
from batch_prediction.rows import (
    RowError,
    check_shard_columns,
    empty_key_reason,
    feature_values,
    problem_error,
    row_key,
    row_keys,
)
from contract.dataset import DEFAULT_MISSING_VALUES
from contract.model_inputs import InputSpec
from storage import shards
from storage import uri as storage_uri

JOB_OUTPUT_FOLDER = "_vertex_jobs"
# The job's key_field for staged instances; never a feature (the plan refuses a model that has one so named).
STAGED_KEY_FIELD = "_source_row"
SENT_ROWS_FILE = "sent_rows.parquet"
SENT_ROWS_SCHEMA = pa.schema([
    ("shard", pa.string()), ("row", pa.int64()), ("line", pa.int64()),
    ("key", pa.string()),  # the user's key, when the source has a key field
    ("reason", pa.string()),  # why the row was not sent; null for a row sent to the job
])
# What the publish step reports of a job's output (manifest and KFP metrics).
METRICS = ("rows_read", "rows_predicted", "rows_failed", "rows_not_returned", "unreadable_lines")
# How much of one reason the job gave goes into an error row (a failed request's text can quote a whole body).
REASON_CHARS = 1000


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
    key_field: str  # what the job is given: STAGED_KEY_FIELD for staged rows; "" with BigQuery output
    sent_rows: str  # the staged rows' list (gs://.../sent_rows.parquet); "" when nothing was staged


def plan_job(source: str, destination: str, key_field: str, run_id: str, spec: InputSpec,
             chunk_rows: int = 8192) -> JobPlan:
    """The job's inputs and outputs; gs:// sources are staged as JSONL instances for a gs:// destination."""
    if local_bigquery.is_bigquery(destination):
        table = local_bigquery.parse_dataset(destination)
        if not key_field:
            raise PlanError(f"destination {destination}: BigQuery output on Vertex needs key_field, a column of the "
                            "source that identifies each row (the job's table keeps it; rows have no position)")
        outputs = {"predictions_format": "bigquery", "gcs_destination_output_uri_prefix": "",
                   "bigquery_destination_output_uri": f"bq://{table.project}.{table.dataset}"}
    elif storage_uri.is_gcs(destination):
        outputs = {"predictions_format": "jsonl", "bigquery_destination_output_uri": "",
                   "gcs_destination_output_uri_prefix": storage_uri.join(destination, JOB_OUTPUT_FOLDER, run_id)}
    else:
        raise PlanError(f"destination {destination!r}: on Vertex expected gs://BUCKET/prefix or bq://PROJECT.DATASET")
    job_folder = outputs["gcs_destination_output_uri_prefix"]
    if local_bigquery.is_bigquery(source):
        local_bigquery.parse_table(source)
        if not key_field:
            raise PlanError(f"source {source}: a BigQuery table's rows have no position, so without key_field no "
                            "output row could name its source row; expected key_field, a column that identifies "
                            "each row")
        inputs = {"instances_format": "bigquery", "gcs_source_uris": [], "bigquery_source_input_uri": source}
        plan = JobPlan(**inputs, **outputs, instance_type="object", key_field="" if not job_folder else key_field,
                       sent_rows="")
    elif storage_uri.is_gcs(source):
        files = shards.list_shards(source)
        if job_folder:
            staged, sent_rows = stage_instances(files, spec, key_field, job_folder, chunk_rows)
            inputs = {"instances_format": "jsonl", "gcs_source_uris": staged, "bigquery_source_input_uri": ""}
            plan = JobPlan(**inputs, **outputs, instance_type="object", key_field=STAGED_KEY_FIELD,
                           sent_rows=sent_rows)
        else:
            kinds = {shards.shard_format(name) for name in files}
            if kinds != {"jsonl"}:
                raise PlanError(f"source {source}: holds {', '.join(sorted(kinds))} files; with a BigQuery "
                                "destination the Vertex job reads JSONL files as they are (the rows are staged "
                                "only for a gs:// destination): convert them, or load them into BigQuery")
            inputs = {"instances_format": "jsonl", "gcs_source_uris": files, "bigquery_source_input_uri": ""}
            # Vertex refuses key_field with BigQuery output; the SQL step reads the key column from the table.
            plan = JobPlan(**inputs, **outputs, instance_type="object", key_field="", sent_rows="")
    else:
        raise PlanError(f"source {source!r}: on Vertex expected a gs:// prefix of CSV, JSONL or Parquet files or "
                        "bq://PROJECT.DATASET.TABLE")
    return plan


def staged_key(shard: str, row: int, key: str | None) -> str:
    """The value of STAGED_KEY_FIELD: the row's place in the source and its user key, as JSON text (a string
    comes back from the job as it went in)."""
    return orjson.dumps([shard, row, key]).decode()


def read_staged_key(value: Any) -> tuple[str, int, str | None]:
    """(shard, row, user key) of a result's `key`; ValueError for a key the plan did not make."""
    try:
        shard, row, key = orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise ValueError(f"key {str(value)[:200]!r} is not one the plan staged ([shard, row, key])") from None
    if not (isinstance(shard, str) and isinstance(row, int) and row >= 0 and (key is None or isinstance(key, str))):
        raise ValueError(f"key {str(value)[:200]!r} is not one the plan staged ([shard, row, key])")
    return shard, row, key


def stage_instances(files: list[str], spec: InputSpec, key_field: str, job_folder: str,
                    chunk_rows: int = 8192) -> tuple[list[str], str]:
    """Every row of the shards as JSONL instance objects under JOB_FOLDER/instances/ (one file per chunk) and
    the list of every row, sent or not, at JOB_FOLDER/sent_rows.parquet; (instance URIs, that list's URI)."""
    if STAGED_KEY_FIELD in spec.features:
        raise PlanError(f"the model has a feature named {STAGED_KEY_FIELD!r}, the name the plan gives each "
                        "instance's source row; rename the feature")
    bucket_name, prefix = storage_uri.split_gcs(storage_uri.canonical(job_folder))
    bucket = storage_uri._client(job_folder).bucket(bucket_name)  # noqa: SLF001 - the one client factory
    for stale in bucket.list_blobs(prefix=f"{prefix}/instances/"):  # a rerun's instances replace the last ones
        stale.delete()
    columns = [*spec.features, *([key_field] if key_field else [])]
    missing_tokens = frozenset(DEFAULT_MISSING_VALUES)
    staged: list[str] = []
    counts = {"sent": 0, "refused": 0}
    first_refusal = ""
    with tempfile.TemporaryDirectory(prefix="staging-") as scratch:
        index_path = os.path.join(scratch, SENT_ROWS_FILE)
        with pq.ParquetWriter(index_path, SENT_ROWS_SCHEMA) as index:
            for chunk in shards.iter_chunks(files, chunk_rows, columns):
                refused = [problem_error(problem, key_field) for problem in chunk.problems]
                sent: list[tuple[int, str | None]] = []
                lines: list[bytes] = []
                if chunk.batch.num_rows:
                    check_shard_columns(chunk.batch, chunk.shard, spec, key_field)
                    values = {name: feature_values(chunk.batch, name, dtype, missing_tokens)
                              for name, dtype in spec.features.items()}
                    names = list(values)
                    keys = row_keys(chunk, key_field) if key_field else [None] * chunk.batch.num_rows
                    rows = chunk.rows.tolist()
                    for index_in_chunk, features in enumerate(zip(*values.values(), strict=True)):
                        row, key = rows[index_in_chunk], keys[index_in_chunk]
                        if key_field and key is None:
                            refused.append(RowError(chunk.shard, row, None, None, empty_key_reason(key_field)))
                            continue
                        instance = dict(zip(names, features, strict=True))
                        instance[STAGED_KEY_FIELD] = staged_key(chunk.shard, row, key)
                        lines.append(orjson.dumps(instance))
                        sent.append((row, key))
                if lines:
                    name = f"{prefix}/instances/part-{len(staged):05d}.jsonl"
                    bucket.blob(name).upload_from_string(b"\n".join(lines) + b"\n", content_type="application/jsonl")
                    staged.append(f"gs://{bucket_name}/{name}")
                index.write_table(pa.table({
                    "shard": [chunk.shard] * len(sent) + [error.shard for error in refused],
                    "row": [row for row, _ in sent] + [error.row for error in refused],
                    "line": [None] * len(sent) + [error.line for error in refused],
                    "key": [key for _, key in sent] + [None] * len(refused),
                    "reason": [None] * len(sent) + [error.reason for error in refused]}, schema=SENT_ROWS_SCHEMA))
                counts["sent"] += len(sent)
                counts["refused"] += len(refused)
                first_refusal = first_refusal or next(
                    (f"{error.shard}, row {error.row}: {error.reason}" for error in refused), "")
        if not staged:
            refusals = f"; {counts['refused']} row(s) refused, first {first_refusal}" if counts["refused"] else ""
            raise PlanError(f"{', '.join(files)}: no row to send to the job (empty or header-only files{refusals})")
        sent_rows = f"gs://{bucket_name}/{prefix}/{SENT_ROWS_FILE}"
        bucket.blob(f"{prefix}/{SENT_ROWS_FILE}").upload_from_filename(index_path)
    print(f"staged {counts['sent']} rows as {len(staged)} instance file(s) under gs://{bucket_name}/{prefix}/"
          f"instances; {counts['refused']} row(s) refused before the job (they go to the errors output)")
    return staged, sent_rows


# --- gs:// output: the job's files to the one schema --------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class JobStatistic:
    """A line of the job's error statistics: what failed and for how many instances (None: not said)."""

    file: str
    line: int
    reason: str
    count: int | None


def read_output_line(text: str) -> dict | tuple[str, int | None] | None:
    """One line of a job output file: a result (a dict holding `prediction` or `error`), an error statistic
    (reason, count), or None for a line that says nothing we can read."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = ast.literal_eval(text.strip())  # a custom container's errors_stats: ('reason', count)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        if (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
                and isinstance(value[1], int) and not isinstance(value[1], bool)):
            return value[0], value[1]
        return None
    if isinstance(value, dict) and ("prediction" in value or "error" in value):
        return value
    if isinstance(value, dict | list):  # other model kinds' statistics: kept as the job wrote them
        return text.strip(), None
    return None


def _job_output_lines(directory: str) -> Iterator[tuple[str, int, str]]:
    """Every non-blank line of the job's output files: (file, line number, text)."""
    for file in storage_uri.list_files(directory):
        with shards.open_shard(file) as stream:
            for number, raw in enumerate(stream, start=1):
                text = raw.decode("utf-8", errors="replace")
                if text.strip():
                    yield file, number, text


def _score(prediction: Any, output: str) -> float:
    return float(prediction[output] if isinstance(prediction, dict) else prediction)


def _error_message(error: Any) -> str:
    return str(error.get("message", error) if isinstance(error, dict) else error)


def not_returned_reason(statistics: list[JobStatistic], directory: str) -> str:
    """Why a row sent to the job has no result: the job's own reasons (Vertex cannot say which instance failed
    for which of them), or that it gave none."""
    if not statistics:
        return (f"sent to the batch job but not in its output ({directory}), and the job reported no error "
                "statistics")
    reasons = "; ".join(f"{statistic.reason[:REASON_CHARS]}" + (f" ({statistic.count} instances)"
                                                                 if statistic.count is not None else "")
                        for statistic in statistics[:5])
    more = f"; and {len(statistics) - 5} more in {statistics[5].file}" if len(statistics) > 5 else ""
    return f"sent to the batch job but not in its output; the job's error statistics: {reasons}{more}"


class _Returned:
    """Which source rows came back, one byte per row of each shard (a row number counts every data row)."""

    def __init__(self) -> None:
        self.flags: dict[str, bytearray] = {}

    def add(self, shard: str, row: int) -> bool:
        """Marks the row; False if it had come back already (a result written twice)."""
        flags = self.flags.setdefault(shard, bytearray())
        if row >= len(flags):
            flags.extend(bytes(max(row + 1 - len(flags), len(flags))))
        seen = flags[row]
        flags[row] = 1
        return not seen

    def has(self, shard: str, row: int) -> bool:
        flags = self.flags.get(shard, b"")
        return row < len(flags) and bool(flags[row])


def publish_gcs_job_output(directory: str, destination: str, run_id: str, identity: ModelIdentity,
                           key_field: str, sent_rows: str = "", source: str = "", output: str = "probability",
                           output_format: str = "parquet", chunk_rows: int = 8192) -> dict[str, int]:
    """The job's result files under `directory` as the run's output at DESTINATION/RUN_ID, published whole.

    `sent_rows`: the plan's list of staged rows: then every result's key is a staged key, and every row sent and
    not returned is an error row. Without it (a BigQuery source), keys are the key field's values, and rows
    the job lost can only be counted: one error row per statistic the job wrote, with its count."""
    publisher = FolderPublisher(destination, run_id, output_format)
    counts = {PREDICTIONS: 0, ERRORS: 0, "rows_read": 0, "rows_predicted": 0, "rows_failed": 0,
              "rows_not_returned": 0, "duplicates": 0, "unreadable_lines": 0}
    keys: list[str] = []
    scores: list[float] = []
    errors: list[RowError] = []
    statistics: list[JobStatistic] = []
    unreadable: list[str] = []
    returned = _Returned()

    def flush() -> None:
        if keys:
            publisher.write(PREDICTIONS, prediction_batch(keys, pa.array(scores, pa.float64()).to_numpy(), identity,
                                                          run_id))
        if errors:
            publisher.write(ERRORS, error_batch(errors, run_id))
        counts[PREDICTIONS] += len(keys)
        counts[ERRORS] += len(errors)
        keys.clear()
        scores.clear()
        errors.clear()

    def cannot_read(file: str, number: int, why: str) -> None:
        counts["unreadable_lines"] += 1
        if len(unreadable) < 20:
            unreadable.append(f"{file}, line {number}: {why}")

    try:
        for file, number, text in _job_output_lines(directory):
            line = read_output_line(text)
            if line is None:
                cannot_read(file, number, f"not a result nor an error statistic: {text.strip()[:200]!r}")
                continue
            if isinstance(line, tuple):
                statistics.append(JobStatistic(file, number, *line))
                continue
            if "key" not in line:
                cannot_read(file, number, "a result without `key` (the job was given a key field)")
                continue
            if sent_rows:
                try:
                    shard, row, user_key = read_staged_key(line["key"])
                except ValueError as error:
                    cannot_read(file, number, str(error))
                    continue
                if not returned.add(shard, row):
                    counts["duplicates"] += 1
                    continue
                key = user_key if key_field else row_key(shard, row)
            else:
                shard, row, key = source or file, None, str(line["key"])
            if "error" in line:
                errors.append(RowError(shard, row, None, key, _error_message(line["error"])))
            else:
                try:
                    scores.append(_score(line["prediction"], output))
                    keys.append(key)
                except (KeyError, TypeError, ValueError):
                    errors.append(RowError(shard, row, None, key, f"the prediction {str(line['prediction'])[:200]} "
                                                                  f"has no number {output!r}"))
            if len(keys) + len(errors) >= chunk_rows:
                flush()
        if sent_rows:
            reason = not_returned_reason(statistics, directory)
            for chunk in shards.iter_chunks(sent_rows, chunk_rows):
                counts["rows_read"] += chunk.batch.num_rows
                for entry in chunk.batch.to_pylist():
                    key = entry["key"] if key_field else row_key(entry["shard"], entry["row"])
                    if entry["reason"] is not None:  # refused before the job
                        errors.append(RowError(entry["shard"], entry["row"], entry["line"], key, entry["reason"]))
                    elif not returned.has(entry["shard"], entry["row"]):
                        counts["rows_not_returned"] += 1
                        errors.append(RowError(entry["shard"], entry["row"], None, key, reason))
                if len(errors) >= chunk_rows:
                    flush()
        else:
            for statistic in statistics:  # lost rows of a BigQuery source: counted, not named
                counts["rows_not_returned"] += statistic.count or 0
                errors.append(RowError(statistic.file, None, statistic.line, None,
                                       f"{statistic.count if statistic.count is not None else 'some'} instance(s) "
                                       f"of {source or 'the source'} not in the job's output: "
                                       f"{statistic.reason[:REASON_CHARS]}"))
        flush()
        counts["rows_predicted"] = counts[PREDICTIONS]
        if sent_rows:
            counts["rows_failed"] = counts[ERRORS]
        else:  # an error row per statistic stands for its count of rows
            counts["rows_failed"] = counts[ERRORS] - len(statistics) + counts["rows_not_returned"]
            counts["rows_read"] = counts[PREDICTIONS] + counts["rows_failed"]
        for problem in unreadable:
            print(f"job output line not read: {problem}")
        if counts["duplicates"]:
            print(f"{counts['duplicates']} result(s) for a row that had come back already were left out")
        publisher.commit({"source": source or directory, "job_output": directory,
                          "model_resource_name": identity.resource_name, "model_version": identity.version,
                          "key_field": key_field,
                          "metrics": {name: counts[name] for name in METRICS},
                          "error_statistics": [dataclasses.asdict(statistic) for statistic in statistics[:100]],
                          "unreadable_lines": unreadable})
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
                                key_field: str, project: str, output: str = "probability") -> str:
    """Runs `bigquery_publish_script` with the real BigQuery client; returns the query job's id.

    The script runs in the destination dataset's own location, read from the dataset (datasets.get): a
    query job runs where its tables are, and a `us-central1` pipeline may write to a dataset in the `US`
    multi-region, which Vertex accepts as a `us-central1` job's output (BigQuery: "Specify locations",
    https://cloud.google.com/bigquery/docs/locations#specify_locations). The job's table is in that dataset.

    With BIGQUERY_EMULATOR_HOST set (an emulator or a test's stand-in API), the client goes there
    without credentials, as google-cloud-storage does with STORAGE_EMULATOR_HOST."""
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    credentials = AnonymousCredentials() if os.environ.get("BIGQUERY_EMULATOR_HOST") else None
    client = bigquery.Client(project=project, credentials=credentials)
    target = local_bigquery.parse_dataset(destination)
    try:
        dataset = client.get_dataset(f"{target.project}.{target.dataset}")
    except exceptions.GoogleAPICallError as error:
        raise RuntimeError(f"BigQuery could not read the destination dataset {destination} (to run the publish "
                           f"script in its location): {error.message}") from None
    parameters = [bigquery.ScalarQueryParameter("run_id", "STRING", run_id),
                  bigquery.ScalarQueryParameter("model_resource_name", "STRING", identity.resource_name),
                  bigquery.ScalarQueryParameter("model_version", "STRING", identity.version)]
    job = client.query(bigquery_publish_script(job_table, destination, key_field, output),
                       job_config=bigquery.QueryJobConfig(query_parameters=parameters), location=dataset.location)
    try:
        job.result()
    except exceptions.GoogleAPICallError as error:
        raise RuntimeError(f"BigQuery could not publish the batch job's table {job_table} into {destination} "
                           f"(job {job.job_id}, in {dataset.location}): {error.message}") from None
    return job.job_id
