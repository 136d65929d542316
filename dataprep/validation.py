"""Statistics, schema and validation: the roles of TFX StatisticsGen, SchemaGen
and ExampleValidator, computed with pandas/numpy because TFDV cannot load here.

The interface is three functions over tensorflow-metadata protos, so the
artifacts are the ones TFX tooling reads:
  compute_statistics(frame)          -> DatasetFeatureStatistics
  infer_schema(frame, config)        -> Schema (first use; then reviewed and kept in the repo)
  validate(frame, batches, schema)   -> list[Anomaly], one entry per broken rule per batch
Every problem ingest recorded about a batch (unreadable, no rows, a column the
label needs) becomes a critical anomaly too, so one run names them all.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from contract.artifacts import ANOMALIES_FILE, ANOMALIES_JSON_FILE, SCHEMA_FILE, STATISTICS_FILE
from contract.dataset import BATCH_COLUMN, RESERVED_PREFIX, DatasetConfig
from contract.schema import load_schema, write_schema
from dataprep.ingest import BatchInfo, non_numeric_values, sample_values
from storage import uri as storage_uri

CRITICAL = "critical"
WARNING = "warning"
_TOP_VALUES = 20
_HISTOGRAM_BUCKETS = 10


class DataValidationError(RuntimeError):
    """A batch broke the data contract; the message names feature, rule and batch."""


@dataclasses.dataclass(frozen=True)
class Anomaly:
    feature: str  # "" for the batch as a whole (an unreadable file, no rows)
    rule: str  # an AnomalyInfo.Type name, e.g. SCHEMA_MISSING_COLUMN
    severity: str  # critical | warning
    batch: str  # the batch URI, or "all batches"
    description: str

    def summary(self) -> str:
        return f"{self.feature + ': ' if self.feature else ''}{self.rule}: {self.description} ({self.batch})"

    def __str__(self) -> str:
        return f"[{self.severity}] {self.summary()}"


def data_columns(frame: pd.DataFrame) -> list[str]:
    return [column for column in frame.columns if not column.startswith(RESERVED_PREFIX)]


def column_type(series: pd.Series) -> int:
    """The schema_pb2.FeatureType a pandas column holds."""
    if pd.api.types.is_integer_dtype(series):
        return schema_pb2.INT
    if pd.api.types.is_float_dtype(series) or pd.api.types.is_bool_dtype(series):
        return schema_pb2.FLOAT
    return schema_pb2.BYTES


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


def problem_anomalies(batch: BatchInfo) -> list[Anomaly]:
    """What ingest recorded about a batch (unreadable, no rows, a column the label needs): each critical."""
    return [Anomaly(problem.column, problem.rule, CRITICAL, batch.uri, problem.description)
            for problem in batch.problems]


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


def critical(anomalies: list[Anomaly]) -> list[Anomaly]:
    return [anomaly for anomaly in anomalies if anomaly.severity == CRITICAL]


def anomalies_proto(anomalies: list[Anomaly], schema: schema_pb2.Schema) -> anomalies_pb2.Anomalies:
    """The TFX ExampleValidator artifact: one AnomalyInfo per feature, a reason per rule and batch."""
    proto = anomalies_pb2.Anomalies(baseline=schema)
    for anomaly in anomalies:
        info = proto.anomaly_info[anomaly.feature] if anomaly.feature else proto.dataset_anomaly_info
        severity = (anomalies_pb2.AnomalyInfo.ERROR if anomaly.severity == CRITICAL
                    else anomalies_pb2.AnomalyInfo.WARNING)
        info.severity = max(info.severity, severity)
        info.short_description = anomaly.rule
        info.reason.add(type=anomalies_pb2.AnomalyInfo.Type.Value(anomaly.rule),
                        short_description=anomaly.rule, description=f"{anomaly.batch}: {anomaly.description}")
    return proto


def write_validation_outputs(anomalies: list[Anomaly], schema: schema_pb2.Schema, output_dir: str | Path) -> None:
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / ANOMALIES_FILE).write_text(text_format.MessageToString(anomalies_proto(anomalies, schema)))
    (output / ANOMALIES_JSON_FILE).write_text(json.dumps([dataclasses.asdict(a) for a in anomalies], indent=1))


def raise_on_critical(anomalies: list[Anomaly]) -> None:
    """Stops the run. The message's first line names the first anomaly (feature, rule, batch), since
    that line is what a failed step shows; the lines after it list them all (up to 20)."""
    blocking = critical(anomalies)
    if blocking:
        lines = "\n  ".join(str(anomaly) for anomaly in blocking[:20])
        more = f"\n  ... and {len(blocking) - 20} more" if len(blocking) > 20 else ""
        raise DataValidationError(f"{len(blocking)} critical data anomal{'y' if len(blocking) == 1 else 'ies'}; "
                                  f"the data does not reach training. First: {blocking[0].summary()}\n  {lines}{more}")


def validate_examples(examples_dir: str | Path, config: DatasetConfig, statistics_dir: str | Path,
                      schema_dir: str | Path, anomalies_dir: str | Path) -> list[Anomaly]:
    """The validate step: statistics of both splits, the schema it used, and every
    batch checked against that schema. Raises on a critical anomaly, after writing
    the anomalies, so the artifact explains the stop."""
    from dataprep.ingest import load_manifest, load_split

    train, evaluation = load_split(examples_dir, "train"), load_split(examples_dir, "eval")
    Path(statistics_dir).mkdir(parents=True, exist_ok=True)
    stats = statistics_list({"train": train, "eval": evaluation})
    (Path(statistics_dir) / STATISTICS_FILE).write_text(text_format.MessageToString(stats))

    both = pd.concat([train, evaluation])
    Path(schema_dir).mkdir(parents=True, exist_ok=True)
    if storage_uri.exists(config.schema_uri):
        schema = load_schema(config.schema_uri)
        write_schema(schema, Path(schema_dir) / SCHEMA_FILE)
    else:  # first use: infer, use it, and say that it needs a review
        schema = infer_schema(both, config)
        write_schema(schema, Path(schema_dir) / SCHEMA_FILE)
        print(f"WARNING: {config.schema_uri} does not exist; inferred a schema from this data and used it. "
              f"Review the inferred schema ({Path(schema_dir) / SCHEMA_FILE}), then put it at {config.schema_uri} "
              "(locally: `python runner.py --infer-schema --dataset-config ...` writes it for review).")

    found = validate(both, load_manifest(examples_dir).batches, schema, config)
    write_validation_outputs(found, schema, anomalies_dir)
    raise_on_critical(found)
    return found


def infer_schema_cli(data_uri: str | None, dataset_config: str | None) -> int:
    """`python runner.py --infer-schema`: writes the schema the config names, for review.
    Refuses (exit 1, each problem named) when a batch cannot be read: a contract inferred
    without it would be a contract for other data."""
    import sys

    from contract.dataset import DatasetConfigError, load_dataset_config
    from contract.paths import DEFAULT_DATA_URI, DEFAULT_DATASET_CONFIG
    from dataprep.ingest import IngestError, find_batches, load_batches, type_columns

    try:
        config = load_dataset_config(dataset_config or DEFAULT_DATASET_CONFIG)
        raw, batches = load_batches(find_batches(data_uri or DEFAULT_DATA_URI))
    except (DatasetConfigError, IngestError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    problems = [anomaly for batch in batches for anomaly in problem_anomalies(batch)]
    if problems:
        listed = "\n  ".join(str(anomaly) for anomaly in problems)
        print(f"no schema written: {len(problems)} problem(s) in the batches; fix or remove them, then run "
              f"again:\n  {listed}")
        return 1
    schema = infer_schema(type_columns(raw, config.missing_values), config)
    try:
        write_schema(schema, config.schema_uri)
    except ValueError as error:  # a gs:// config: the reviewed schema is uploaded by a person, not written here
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {config.schema_uri} ({len(schema.feature)} features): review it, then commit it")
    return 0
