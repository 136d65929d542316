"""The in-memory path the pipeline used before the scale path (issue 11), kept only as a reference
that the streaming steps must match on the sample: every batch read whole with the csv module, all
rows in one pandas frame, typed, labelled and split at once. Copied from dataprep/ingest.py as it
was; not used in production."""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from contract.dataset import BATCH_COLUMN, DatasetConfig
from dataprep.ingest import (
    _UNDECODABLE,
    INVALID_UTF8,
    MISSING_COLUMN,
    NO_ROWS,
    NOT_CSV,
    TOO_FEW_VALUES,
    TOO_MANY_VALUES,
    WRONG_TYPE,
    BatchInfo,
    BatchProblem,
    IngestError,
    IngestSummary,
    _repeated_columns,
    _shown,
    find_batches,
    label_input_columns,
    non_numeric_values,
    sample_values,
    split_assignment,
)
from dataprep.validation import (
    _HISTOGRAM_BUCKETS,
    _TOP_VALUES,
    CRITICAL,
    WARNING,
    Anomaly,
    column_type,
    data_columns,
    problem_anomalies,
)
from evaluation.gate import (
    _METRICS,
    CANDIDATE,
    CHAMPION,
    DECISION_THRESHOLD,
    GATED_METRIC,
    OVERALL,
    EvaluationOutcome,
    Thresholds,
    _change_failures,
    _curves,
    _eval_config,
    _floor_failures,
    _slice_name,
)
from storage import uri as storage_uri


def infer_column_type(raw: pd.Series, missing_values: tuple[str, ...]) -> pd.Series:
    """Numbers become Int64 or float64 (missing as NA); anything else stays text.

    A cell holding one of `missing_values` (the data set config's markers, such
    as "" and "NA") is missing. A single other non-numeric value keeps the whole
    column as text: validation then reports the type change and names the
    batches that carry it.
    """
    present = ~raw.isin(missing_values)
    as_text = raw.where(present, None)
    if not present.any():
        return pd.Series(np.nan, index=raw.index, dtype="float64")
    numbers = pd.to_numeric(as_text, errors="coerce")
    if numbers[present].isna().any():
        return as_text.astype(object)
    if (numbers[present] % 1 == 0).all() and numbers[present].abs().max() < 2**53:
        return numbers.astype("Int64")
    return numbers.astype("float64")


def type_columns(raw: pd.DataFrame, missing_values: tuple[str, ...]) -> pd.DataFrame:
    typed = pd.DataFrame({column: infer_column_type(raw[column], missing_values) for column in raw.columns
                          if column != BATCH_COLUMN}, index=raw.index)
    typed[BATCH_COLUMN] = raw[BATCH_COLUMN].astype("int32")
    return typed


def read_batches(batch_uris: list[str]) -> list[tuple[pd.DataFrame | None, BatchInfo]]:
    """Each batch's cells as text, or None beside the problems that keep it out."""
    batches = []
    for uri in batch_uris:
        batches.append(parse_batch(storage_uri.read_bytes(uri), uri))
    return batches


def parse_batch(data: bytes, uri: str) -> tuple[pd.DataFrame | None, BatchInfo]:
    """A CSV file's cells as text (typing happens once, over all batches), or None and its problems.

    Read with the csv module rather than pandas, which renames a repeated
    column, pads a short row and reports an error without the file's name.
    """
    if not data.strip():
        return None, BatchInfo(uri, 0, [], [BatchProblem(
            "", NO_ROWS, f"line 1: the file is empty ({len(data)} bytes); expected a header line, then one line "
                         "per row")])
    try:
        text, undecodable = data.decode("utf-8-sig"), False
    except UnicodeDecodeError:  # read it anyway, each bad byte kept, so the problem can name line and column
        text, undecodable = data.decode("utf-8-sig", errors="surrogateescape"), True
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = []
    header_line = 1
    rows: list[list[str]] = []
    starts: list[int] = []  # the line each row starts on (a quoted cell may span lines)
    problems: list[BatchProblem] = []
    try:
        header = next((row for row in reader if row), [])
        header_line = end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if row:  # a blank line is no row, as in pandas
                rows.append(row)
                starts.append(start)
    except csv.Error as error:
        problems.append(BatchProblem("", NOT_CSV, f"line {reader.line_num}: not readable as CSV: {error}"))
    if undecodable:
        problems += _undecodable_problems(header, header_line, rows, starts)
        header = [_shown(name) for name in header]
    problems += _repeated_columns(header, header_line) + _row_length_problems(rows, starts, len(header))
    if header and not rows and not any(problem.rule == NOT_CSV for problem in problems):  # else rows are unknown
        problems.append(BatchProblem("", NO_ROWS, f"the file has a header (line {header_line}) but no rows"))
    info = BatchInfo(uri=uri, rows=len(rows), columns=header, problems=problems)
    return (None, info) if problems else (pd.DataFrame(rows, columns=header, dtype=object), info)


def _row_length_problems(rows: list[list[str]], starts: list[int], width: int) -> list[BatchProblem]:
    """One problem for rows longer than the header, one for shorter ones: the first line and how many."""
    problems = []
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    for rule, wrong in ((TOO_MANY_VALUES, lengths > width), (TOO_FEW_VALUES, lengths < width)):
        if wrong.any():
            first = int(np.argmax(wrong))
            more = int(wrong.sum()) - 1
            problems.append(BatchProblem("", rule, f"line {starts[first]} has {lengths[first]} fields; the header "
                                                   f"has {width}" + (f" ({more} more such row(s))" if more else "")))
    return problems


def _undecodable_problems(header: list[str], header_line: int, rows: list[list[str]],
                          starts: list[int]) -> list[BatchProblem]:
    """One problem per column holding bytes that are not UTF-8: its first line, a count and samples."""
    found: dict[str, list[tuple[int, bytes]]] = collections.defaultdict(list)  # column: (line, the cell's bytes)
    for name in header:
        if _UNDECODABLE.search(name):
            found[""].append((header_line, name.encode("utf-8", "surrogateescape")))
    for row, start in zip(rows, starts, strict=True):
        for index, cell in enumerate(row):
            if _UNDECODABLE.search(cell):
                column = _shown(header[index]) if index < len(header) else ""
                found[column].append((start, cell.encode("utf-8", "surrogateescape")))
    return [BatchProblem(column, INVALID_UTF8, f"line {cells[0][0]}: {len(cells)} value(s) are not UTF-8, such as "
                                               f"{sample_values(value for _, value in cells)}; batches must be UTF-8")
            for column, cells in found.items()]


def combine(batches: list[tuple[pd.DataFrame | None, BatchInfo]]) -> tuple[pd.DataFrame, list[BatchInfo]]:
    """The usable batches' rows in one frame, each marked with its batch's index in the list."""
    frames = [frame.assign(**{BATCH_COLUMN: index}) for index, (frame, _) in enumerate(batches) if frame is not None]
    infos = [info for _, info in batches]
    if not frames:
        return pd.DataFrame({BATCH_COLUMN: pd.Series(dtype="int32")}), infos
    # A batch without a column gets "" there: validation names it from BatchInfo.columns.
    return pd.concat(frames, ignore_index=True).fillna(""), infos


def _require_label_inputs(frame: pd.DataFrame | None, info: BatchInfo, inputs: list[str],
                          expression: str) -> tuple[pd.DataFrame | None, BatchInfo]:
    """A readable batch without a column the label reads is left out (or its label would be all 0)."""
    missing = [column for column in inputs if column not in info.columns]
    if frame is None or not missing:
        return frame, info
    return None, dataclasses.replace(info, problems=[BatchProblem(
        column, MISSING_COLUMN, f"the batch has no column {column!r}; the label expression {expression!r} reads it")
        for column in missing])


def _text_in(raw: pd.DataFrame, columns: list[str], missing_values: tuple[str, ...],
             why: str) -> dict[int, list[BatchProblem]]:
    """Per batch index: one problem for each of `columns` holding values that are not numbers."""
    problems: dict[int, list[BatchProblem]] = collections.defaultdict(list)
    for column in columns:
        text = non_numeric_values(raw[column], missing_values)
        for batch, values in text.groupby(raw.loc[text.index, BATCH_COLUMN]):
            problems[int(batch)].append(BatchProblem(column, WRONG_TYPE, (
                f"{len(values)} value(s) are not numbers, such as {sample_values(values)}; {why} (a value "
                "meaning 'no value' belongs in the config's missing_values)")))
    return problems


def _leave_out(raw: pd.DataFrame, infos: list[BatchInfo],
               problems: dict[int, list[BatchProblem]]) -> tuple[pd.DataFrame, list[BatchInfo]]:
    """Records the problems and drops those batches' rows, and any column only they had."""
    if not problems:
        return raw, infos
    infos = [dataclasses.replace(info, problems=info.problems + problems[index]) if index in problems else info
             for index, info in enumerate(infos)]
    kept = {column for info in infos if not info.problems for column in info.columns} | {BATCH_COLUMN}
    rows = raw[~raw[BATCH_COLUMN].isin(list(problems))].reset_index(drop=True)
    return rows[[column for column in rows.columns if column in kept]], infos


def _type_and_label(raw: pd.DataFrame, infos: list[BatchInfo], inputs: list[str],
                    config: DatasetConfig) -> tuple[pd.DataFrame, pd.DataFrame, list[BatchInfo]]:
    """The rows kept, as text and typed with their label. A batch holding text in a column the label
    reads as numbers is left out first; so is one whose text makes the expression fail."""
    expression, markers, name = config.label.expression, config.missing_values, config.label.name
    reads = f"the label expression {expression!r} reads it"
    # A label input holds numbers when most of its values do, over all batches: text in one batch is then
    # damage. A column of text (`outcome == 'default'`) is left to the expression.
    numeric = [column for column in inputs if column in raw.columns
               and 2 * len(non_numeric_values(raw[column], markers)) <= (~raw[column].isin(markers)).sum()]
    raw, infos = _leave_out(raw, infos, _text_in(raw, numeric, markers, f"{reads} as numbers"))
    while True:  # at most twice: after a failure, no batch with text in a label input is left
        typed = type_columns(raw, markers)
        if typed.empty:
            return raw, typed.assign(**{name: pd.Series(dtype="int64")}), infos
        try:
            label = typed.eval(expression)
        except Exception as error:  # pandas raises many types here; all mean "the expression does not fit"
            text = [column for column in inputs if typed[column].dtype == object]
            if not text:  # numbers throughout: the expression itself does not fit the data set
                raise IngestError(f"label expression {expression!r} failed on the data: {error}") from error
            cause = f"{reads} and fails on text: {str(error).splitlines()[0]}"
            raw, infos = _leave_out(raw, infos, _text_in(raw, text, markers, cause))
            continue
        typed[name] = pd.Series(label, index=typed.index).fillna(False).astype("int64")
        return raw, typed, infos


def ingest(data_uri: str, config: DatasetConfig) -> tuple[IngestSummary, pd.DataFrame, pd.DataFrame]:
    """Reads, types, labels and splits; returns the summary and the train and eval frames.

    The columns the label expression reads are checked per batch before it is
    computed, so a damaged batch is recorded and left out instead of failing it."""
    inputs = label_input_columns(config.label.expression)
    raw, infos = combine([_require_label_inputs(frame, info, inputs, config.label.expression)
                          for frame, info in read_batches(find_batches(data_uri))])
    raw, typed, infos = _type_and_label(raw, infos, inputs, config)
    is_eval = (split_assignment(raw, config.split_key, config.eval_percent) if len(raw)
               else np.zeros(0, dtype=bool))

    train = typed[~is_eval].reset_index(drop=True)
    evaluation = typed[is_eval].reset_index(drop=True)
    summary = IngestSummary(
        data_uri=data_uri, batches=infos, rows=len(typed), train_rows=len(train), eval_rows=len(evaluation),
        label_positive_rate=float(typed[config.label.name].mean()) if len(typed) else None,
    )
    return summary, train, evaluation


# ------------------------------------------------- statistics, schema, validation (dataprep/validation.py)
# ---------------------------------------------------------------- statistics
def _numeric_statistics(values: pd.Series, count: int) -> statistics_pb2.NumericStatistics:
    present = values.dropna().astype("float64").to_numpy()
    stats = statistics_pb2.NumericStatistics(
        common_stats=statistics_pb2.CommonStatistics(num_non_missing=len(present), num_missing=count - len(present),
                                                     min_num_values=1, max_num_values=1, avg_num_values=1.0),
        num_zeros=int((present == 0).sum()),
    )
    if len(present):
        stats.mean, stats.std_dev = float(present.mean()), float(present.std())
        stats.min, stats.max, stats.median = float(present.min()), float(present.max()), float(np.median(present))
        counts, edges = np.histogram(present, bins=_HISTOGRAM_BUCKETS)
        histogram = stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
        for low, high, bucket_count in zip(edges[:-1], edges[1:], counts, strict=True):
            histogram.buckets.add(low_value=float(low), high_value=float(high), sample_count=float(bucket_count))
    return stats


def _string_statistics(values: pd.Series, count: int) -> statistics_pb2.StringStatistics:
    present = values.dropna().astype(str)
    frequencies = present.value_counts()
    stats = statistics_pb2.StringStatistics(
        common_stats=statistics_pb2.CommonStatistics(num_non_missing=len(present), num_missing=count - len(present),
                                                     min_num_values=1, max_num_values=1, avg_num_values=1.0),
        unique=len(frequencies),
        avg_length=float(present.str.len().mean()) if len(present) else 0.0,
    )
    for value, frequency in frequencies.head(_TOP_VALUES).items():
        stats.top_values.add(value=value, frequency=float(frequency))
    return stats


def compute_statistics(frame: pd.DataFrame, name: str) -> statistics_pb2.DatasetFeatureStatistics:
    dataset = statistics_pb2.DatasetFeatureStatistics(name=name, num_examples=len(frame))
    for column in data_columns(frame):
        feature = dataset.features.add()
        feature.path.step.append(column)
        kind = column_type(frame[column])
        if kind == schema_pb2.BYTES:
            feature.type = statistics_pb2.FeatureNameStatistics.STRING
            feature.string_stats.CopyFrom(_string_statistics(frame[column], len(frame)))
        else:
            feature.type = (statistics_pb2.FeatureNameStatistics.INT if kind == schema_pb2.INT
                            else statistics_pb2.FeatureNameStatistics.FLOAT)
            feature.num_stats.CopyFrom(_numeric_statistics(frame[column], len(frame)))
    return dataset


def statistics_list(splits: dict[str, pd.DataFrame]) -> statistics_pb2.DatasetFeatureStatisticsList:
    return statistics_pb2.DatasetFeatureStatisticsList(
        datasets=[compute_statistics(frame, name) for name, frame in splits.items()])


# -------------------------------------------------------------------- schema
def _presence_by_batch(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].notna().groupby(frame[BATCH_COLUMN]).mean()


def infer_schema(frame: pd.DataFrame, config: DatasetConfig) -> schema_pb2.Schema:
    """Types and presence for every column; domains for the model's features.

    Domains (value sets, numeric ranges) are inferred only for features, since
    other columns (timestamps, ids) legitimately move beyond any range seen.
    """
    schema = schema_pb2.Schema()
    features = {feature.name: feature for feature in config.features}
    for column in data_columns(frame):
        if column == config.label.name:
            continue  # derived by ingest, not part of the landing contract
        values = frame[column]
        feature = schema.feature.add(name=column, type=column_type(values))
        lowest_presence = float(_presence_by_batch(frame, column).min())
        if lowest_presence >= 1.0:
            feature.presence.min_fraction = 1.0
        else:
            slack = config.validation.presence_slack
            feature.presence.min_fraction = math.floor(max(0.0, lowest_presence - slack) * 100) / 100
        feature.value_count.min = feature.value_count.max = 1
        spec = features.get(column)
        present = values.dropna()
        if spec is None or present.empty:
            continue
        if spec.kind == "categorical" and feature.type == schema_pb2.BYTES:
            domain = schema.string_domain.add(name=column, value=sorted(present.astype(str).unique()))
            feature.domain = domain.name
        elif spec.kind == "categorical":
            feature.int_domain.CopyFrom(schema_pb2.IntDomain(min=int(present.min()), max=int(present.max()),
                                                             is_categorical=True))
        elif feature.type == schema_pb2.INT:
            feature.int_domain.CopyFrom(schema_pb2.IntDomain(min=int(present.min()), max=int(present.max())))
        else:
            feature.float_domain.CopyFrom(schema_pb2.FloatDomain(min=float(present.min()),
                                                                 max=float(present.max())))
    return schema


# ---------------------------------------------------------------- validation
def _type_name(kind: int) -> str:
    return schema_pb2.FeatureType.Name(kind)


def validate(frame: pd.DataFrame, batches: list[BatchInfo], schema: schema_pb2.Schema,
             config: DatasetConfig) -> list[Anomaly]:
    """Checks each batch against the schema. Critical anomalies must stop the run."""
    anomalies: list[Anomaly] = []
    tolerances = config.validation
    domains = {domain.name: set(domain.value) for domain in schema.string_domain}
    schema_names = {feature.name for feature in schema.feature}
    by_batch = dict(tuple(frame.groupby(BATCH_COLUMN, sort=True)))

    for index, batch in enumerate(batches):
        anomalies.extend(problem_anomalies(batch))
        # A column ingest explained (a label input the batch lacks) keeps ingest's reason only. A file
        # without a readable header has its one problem, not an anomaly per schema column.
        explained = {problem.column for problem in batch.problems}
        if batch.columns:
            for column in sorted(schema_names - set(batch.columns) - explained):
                anomalies.append(Anomaly(column, "SCHEMA_MISSING_COLUMN", CRITICAL, batch.uri,
                                         "column is in the schema but not in the batch"))
            for column in sorted(set(batch.columns) - schema_names - explained):
                anomalies.append(Anomaly(column, "SCHEMA_NEW_COLUMN", WARNING, batch.uri,
                                         "column is not in the schema; it is ignored"))

        rows = by_batch.get(index)
        if rows is None or rows.empty:
            continue
        for feature in schema.feature:
            if feature.name not in batch.columns or feature.name not in rows.columns:
                continue
            anomalies.extend(_check_feature(feature, rows[feature.name], batch.uri, domains, tolerances))
    return anomalies


def _check_feature(feature: schema_pb2.Feature, values: pd.Series, batch_uri: str,
                   domains: dict[str, set[str]], tolerances) -> list[Anomaly]:
    found: list[Anomaly] = []
    name = feature.name
    present = values.dropna()
    presence = len(present) / len(values)
    if feature.HasField("presence") and presence < feature.presence.min_fraction:
        found.append(Anomaly(name, "FEATURE_TYPE_LOW_FRACTION_PRESENT", CRITICAL, batch_uri,
                             f"{len(present)} of {len(values)} values present ({presence:.1%}); the schema "
                             f"requires at least {feature.presence.min_fraction:.0%}"))
    if present.empty:
        return found

    actual = column_type(values)
    expected = feature.type
    if expected in (schema_pb2.INT, schema_pb2.FLOAT) and actual == schema_pb2.BYTES:
        bad = non_numeric_values(present, ())
        if len(bad):
            found.append(Anomaly(name, "UNEXPECTED_DATA_TYPE", CRITICAL, batch_uri,
                                 f"expected {_type_name(expected)}, found {len(bad)} non-numeric value(s): "
                                 f"{sample_values(bad)} (a value meaning 'no value' belongs in the config's "
                                 "missing_values)"))
            return found
        present = pd.to_numeric(present)
    elif expected == schema_pb2.INT and actual == schema_pb2.FLOAT:
        fractional = present[present % 1 != 0]
        if len(fractional):
            found.append(Anomaly(name, "UNEXPECTED_DATA_TYPE", CRITICAL, batch_uri,
                                 f"expected INT, found {len(fractional)} fractional value(s) "
                                 f"such as {fractional.iloc[0]!r}"))
            return found
    # INT data under a FLOAT schema is fine: a batch whose fares are all whole numbers.

    if feature.HasField("domain") and feature.domain in domains:
        unseen = present.astype(str)[~present.astype(str).isin(domains[feature.domain])]
        found.extend(_tolerance_anomaly(name, "ENUM_TYPE_UNEXPECTED_STRING_VALUES", unseen, len(present),
                                        tolerances.unseen_category_tolerance, batch_uri, "unseen categories"))
    elif feature.HasField("int_domain") or feature.HasField("float_domain"):
        domain = feature.int_domain if feature.HasField("int_domain") else feature.float_domain
        # FloatDomain bounds are float32 in the proto: compare at that precision.
        numbers = present.astype("float32" if feature.HasField("float_domain") else "float64")
        outside = numbers[(numbers < domain.min) | (numbers > domain.max)]
        rule = ("INT_TYPE_BIG_INT" if feature.HasField("int_domain") else "FLOAT_TYPE_BIG_FLOAT")
        what = (f"values outside the schema's {'categories' if feature.int_domain.is_categorical else 'range'} "
                f"[{domain.min:g}, {domain.max:g}]")
        found.extend(_tolerance_anomaly(name, rule, outside, len(present),
                                        tolerances.out_of_range_tolerance, batch_uri, what))
    return found


def _tolerance_anomaly(name: str, rule: str, offending: pd.Series, total: int, tolerance: float,
                       batch_uri: str, what: str) -> list[Anomaly]:
    if offending.empty:
        return []
    share = len(offending) / total
    examples = sample_values(offending)
    severity = CRITICAL if share > tolerance else WARNING
    return [Anomaly(name, rule, severity, batch_uri,
                    f"{share:.1%} {what} (tolerance {tolerance:.0%}), e.g. {examples}")]




# ------------------------------------------------------------ transform (dataprep/transform.py)
def analyze_and_transform(examples_dir: str, dataset_config: str, schema_path: str, transform_graph_dir: str,
                          transformed_dir: str) -> dict:
    """The work itself; runs in the isolated child. Returns row counts and timings."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam

    from contract.dataset import load_dataset_config
    from contract.schema import load_schema
    from dataprep.ingest import load_split
    from dataprep.transform import raw_inputs as _record_batch
    from trainer.features import raw_features
    from trainer.preprocessing import make_preprocessing_fn

    started = time.perf_counter()
    config = load_dataset_config(dataset_config)
    schema = load_schema(schema_path)
    features = raw_features(config, schema)
    train_batch, adapter_config = _record_batch(load_split(examples_dir, "train"), features, config.label.name)
    eval_batch, _ = _record_batch(load_split(examples_dir, "eval"), features, config.label.name)

    output = Path(transformed_dir)
    output.mkdir(parents=True, exist_ok=True)
    paths = {"train": str(output / "train.parquet"), "eval": str(output / "eval.parquet")}
    with (tempfile.TemporaryDirectory(prefix="tft-") as temp_dir, tft_beam.Context(temp_dir=temp_dir),
          beam.Pipeline() as pipeline):
        train_rows = pipeline | "TrainRows" >> beam.Create([train_batch], reshuffle=False)
        eval_rows = pipeline | "EvalRows" >> beam.Create([eval_batch], reshuffle=False)
        (train_transformed, _), transform_fn = (
            (train_rows, adapter_config)
            | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
                make_preprocessing_fn(config, schema, features), output_record_batches=True))
        eval_transformed, _ = (
            ((eval_rows, adapter_config), transform_fn)
            | "TransformEval" >> tft_beam.TransformDataset(output_record_batches=True))
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_graph_dir)
        for split, transformed in (("train", train_transformed), ("eval", eval_transformed)):
            _ = (transformed
                 | f"{split}RecordBatches" >> beam.Map(lambda batch_and_passthrough: batch_and_passthrough[0])
                 | f"{split}Collect" >> beam.combiners.ToList()
                 | f"{split}Write" >> beam.Map(_write_parquet, paths[split]))
    result = {"train_rows": train_batch.num_rows, "eval_rows": eval_batch.num_rows,
              "transformed_features": sorted(tft.TFTransformOutput(transform_graph_dir).transformed_feature_spec()),
              "seconds": round(time.perf_counter() - started, 2)}
    return result


def _write_parquet(record_batches: list, path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_batches(record_batches), path)




# ------------------------------------------------------------ evaluation (evaluation/gate.py)
def evaluate(eval_frame: pd.DataFrame, candidate: np.ndarray, champion: np.ndarray | None,
             config: DatasetConfig, thresholds: Thresholds, output_dir: str) -> EvaluationOutcome:
    """Runs TFMA over the eval split's labels, slice columns and each model's predictions."""
    import tensorflow_model_analysis as tfma

    if eval_frame.empty:  # TFMA cannot run on no rows; there is nothing to judge the model on
        raise ValueError(f"the eval split is empty: no labelled example to evaluate the model on; at least "
                         f"{thresholds.gate.min_eval_examples} are needed (gate.min_eval_examples in "
                         f"{config.source}). Train on more data (data_uri) or change split.eval_percent.")

    slice_columns = sorted({key for keys in config.slices for key in keys})
    data = pd.DataFrame({column: eval_frame[column].astype(str).where(eval_frame[column].notna(), "missing")
                         for column in slice_columns})
    data[config.label.name] = eval_frame[config.label.name].to_numpy(dtype="int64")
    predictions = {CANDIDATE: candidate} | ({CHAMPION: champion} if champion is not None else {})

    metrics: dict[str, dict[str, dict[str, float]]] = {}
    roc: dict[str, dict[str, list[float]]] = {}
    calibration: dict[str, dict[str, list[float]]] = {}
    eval_config = _eval_config(config)
    for model, model_predictions in predictions.items():
        data["prediction"] = model_predictions.astype("float32")
        result = tfma.analyze_raw_data(data, eval_config, output_path=str(Path(output_dir) / model))
        for slice_key, outputs in result.slicing_metrics:
            values = outputs[""][""]
            named = {shown: float(values[key]["doubleValue"]) for key, shown in _METRICS.items()
                     if key in values and "doubleValue" in values[key]}
            if named.get("mean_label") in (0.0, 1.0):
                named[GATED_METRIC] = math.nan  # one class only: AUC is undefined, not 0
            metrics.setdefault(_slice_name(slice_key), {})[model] = named
        roc[model], calibration[model] = _curves(result)
    failures = _floor_failures(metrics[OVERALL][CANDIDATE], thresholds)
    if champion is not None:
        failures += _change_failures(metrics, thresholds)
    data["prediction"] = candidate
    return EvaluationOutcome(blessed=not failures, has_champion=champion is not None, thresholds=thresholds,
                             metrics=metrics, failures=failures, roc=roc, calibration=calibration,
                             confusion=_confusion(data, config.label.name))


def _confusion(data: pd.DataFrame, label: str) -> dict[str, int]:
    labels = data[label].to_numpy()
    predicted_positive = data["prediction"].to_numpy() >= DECISION_THRESHOLD
    return {"tp": int((predicted_positive & (labels == 1)).sum()),
            "fp": int((predicted_positive & (labels == 0)).sum()),
            "tn": int((~predicted_positive & (labels == 0)).sum()),
            "fn": int((~predicted_positive & (labels == 1)).sum())}
