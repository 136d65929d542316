"""Statistics, schema and validation: the roles of TFX StatisticsGen, SchemaGen
and ExampleValidator, computed with pandas/numpy because TFDV cannot load here.

The interface is three functions over tensorflow-metadata protos, so the
artifacts are the ones TFX tooling reads:
  compute_statistics(source)          -> DatasetFeatureStatistics
  infer_schema(source, config)        -> Schema (first use; then reviewed and kept in the repo)
  validate(source, batches, schema)   -> list[Anomaly], one entry per broken rule per batch
A source is a frame, or a function giving a fresh pass over a split's chunks
(`split_frames`): each function keeps tallies per column (and per batch), never
the rows, so memory does not grow with the data. Every problem ingest recorded
about a batch (unreadable, no rows, a column the label needs) becomes a critical
anomaly too, so one run names them all.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from contract.artifacts import ANOMALIES_FILE, ANOMALIES_JSON_FILE, SCHEMA_FILE, STATISTICS_FILE
from contract.dataset import BATCH_COLUMN, RESERVED_PREFIX, DatasetConfig
from contract.schema import load_schema, write_schema
from dataprep.ingest import (
    MISSING_COLUMN,
    SAMPLE_COUNT,
    WRONG_TYPE,
    BatchInfo,
    BatchProblem,
    non_numeric_values,
    sample_values,
)
from storage import uri as storage_uri

CRITICAL = "critical"
WARNING = "warning"
_TOP_VALUES = 20
_HISTOGRAM_BUCKETS = 10
# Rank error of the median's quantiles sketch: 1% of the rows, TFDV's default. The sketch's memory grows with
# 1/epsilon, not with the rows (at 0.001 it reached ~7 MB a column).
_QUANTILES_EPSILON = 0.01


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


FrameSource = pd.DataFrame | Callable[[], Iterable[pd.DataFrame]]


def _frames(source: FrameSource) -> Iterable[pd.DataFrame]:
    """A frame as one chunk, or a fresh pass over a source's chunks (the first may be empty: it carries
    the columns and their types when there is no row)."""
    return [source] if isinstance(source, pd.DataFrame) else source()


def _sample(samples: list, values: Iterable, position: tuple) -> None:
    """Keeps the first SAMPLE_COUNT distinct values by where they are, [(where, value)], whatever order the chunks
    (and Beam's partial tallies) arrive in: `position` orders a chunk among the others, a value's rank in `values`
    orders it within the chunk."""
    found: list = []
    for rank, value in enumerate(values):
        if len(found) >= SAMPLE_COUNT:
            break
        if value not in (seen for _, seen in found):
            found.append(((position, rank), value))
    _merge_samples(samples, found)


def _merge_samples(samples: list, other: list) -> None:
    merged: list = []
    for where, value in sorted(samples + other, key=lambda item: item[0]):
        if len(merged) < SAMPLE_COUNT and value not in (seen for _, seen in merged):
            merged.append((where, value))
    samples[:] = merged


def _values(samples: list) -> list:
    return [value for _, value in samples]


# ---------------------------------------------------------------- statistics
class _NumericTally:
    """A numeric column's statistics over chunks: counts, mean and variance merged (Chan et al.), min and
    max, and the median from tfx_bsl's quantiles sketch (as TFDV computes it), within its rank error."""

    def __init__(self, kind: int) -> None:
        from tfx_bsl.sketches import QuantilesSketch

        self.kind = kind  # schema_pb2.INT or FLOAT
        self.rows = self.present = self.zeros = 0
        self.mean = self.m2 = 0.0
        self.low, self.high = math.inf, -math.inf
        self.sketch = QuantilesSketch(_QUANTILES_EPSILON, 1 << 32, 1)
        self.histogram = np.zeros(_HISTOGRAM_BUCKETS, dtype=np.int64)

    @staticmethod
    def values(column: pd.Series) -> np.ndarray:
        return column.dropna().astype("float64").to_numpy()

    def add(self, column: pd.Series) -> None:
        present = self.values(column)
        self.rows += len(column)
        if not len(present):
            return
        count, mean = len(present), float(present.mean())
        delta, total = mean - self.mean, self.present + len(present)
        self.mean += delta * count / total
        self.m2 += float(((present - mean) ** 2).sum()) + delta**2 * self.present * count / total
        self.present = total
        self.zeros += int((present == 0).sum())
        self.low, self.high = min(self.low, float(present.min())), max(self.high, float(present.max()))
        self.sketch.AddValues(pa.array(present))

    def add_to_histogram(self, column: pd.Series) -> None:
        """The second pass: with min and max known, the same buckets as np.histogram over all values."""
        self.histogram += self.histogram_of(column)

    def histogram_of(self, column: pd.Series) -> np.ndarray:
        present = self.values(column)
        if not len(present):
            return np.zeros(_HISTOGRAM_BUCKETS, dtype=np.int64)
        return np.histogram(present, bins=_HISTOGRAM_BUCKETS, range=(self.low, self.high))[0]

    def merge(self, other: _NumericTally) -> _NumericTally:
        """Both tallies' rows in one (Chan et al.'s merge of mean and variance; the sketches merged)."""
        self.rows += other.rows
        if other.present:
            delta, total = other.mean - self.mean, self.present + other.present
            self.mean += delta * other.present / total
            self.m2 += other.m2 + delta**2 * self.present * other.present / total
            self.present = total
            self.zeros += other.zeros
            self.low, self.high = min(self.low, other.low), max(self.high, other.high)
            self.sketch.Merge(other.sketch)
        self.histogram += other.histogram
        return self

    def proto(self) -> statistics_pb2.NumericStatistics:
        stats = statistics_pb2.NumericStatistics(
            common_stats=statistics_pb2.CommonStatistics(num_non_missing=self.present,
                                                         num_missing=self.rows - self.present, min_num_values=1,
                                                         max_num_values=1, avg_num_values=1.0),
            num_zeros=self.zeros)
        if self.present:
            stats.mean, stats.std_dev = self.mean, math.sqrt(self.m2 / self.present)
            stats.min, stats.max = self.low, self.high
            stats.median = float(self.sketch.GetQuantiles(2).flatten()[1].as_py())
            edges = np.histogram_bin_edges([], bins=_HISTOGRAM_BUCKETS, range=(self.low, self.high))
            histogram = stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
            for low, high, bucket_count in zip(edges[:-1], edges[1:], self.histogram, strict=True):
                histogram.buckets.add(low_value=float(low), high_value=float(high), sample_count=float(bucket_count))
        return stats


class _StringTally:
    """A text column's statistics over chunks: every distinct value's count (bounded by the column's
    cardinality, not by the rows) and the total length."""

    def __init__(self) -> None:
        self.rows = self.present = self.length = 0
        self.counts: collections.Counter = collections.Counter()
        self.first: dict[str, tuple] = {}  # where each value first appears: (chunk position, rank in the chunk)

    def add(self, column: pd.Series, position: tuple) -> None:
        present = column.dropna().astype(str)
        self.rows += len(column)
        self.present += len(present)
        self.length += int(present.str.len().sum())
        counts = present.value_counts(sort=False)  # in order of first appearance in the chunk
        self.counts.update(counts.to_dict())
        for rank, value in enumerate(counts.index):
            where = self.first.get(value)
            if where is None or (position, rank) < where:
                self.first[value] = (position, rank)

    def merge(self, other: _StringTally) -> _StringTally:
        self.rows, self.present, self.length = (self.rows + other.rows, self.present + other.present,
                                                self.length + other.length)
        self.counts.update(other.counts)
        for value, where in other.first.items():
            if value not in self.first or where < self.first[value]:
                self.first[value] = where
        return self

    def proto(self) -> statistics_pb2.StringStatistics:
        stats = statistics_pb2.StringStatistics(
            common_stats=statistics_pb2.CommonStatistics(num_non_missing=self.present,
                                                         num_missing=self.rows - self.present, min_num_values=1,
                                                         max_num_values=1, avg_num_values=1.0),
            unique=len(self.counts), avg_length=self.length / self.present if self.present else 0.0)
        # Sorted as pandas' value_counts sorts (the same counts, in first-appearance order, the same sort).
        order = sorted(self.counts, key=self.first.__getitem__)
        frequencies = pd.Series([self.counts[value] for value in order], index=order, dtype="int64")
        for value, frequency in frequencies.sort_values(ascending=False).head(_TOP_VALUES).items():
            stats.top_values.add(value=value, frequency=float(frequency))
        return stats


class StatisticsTallies:
    """One split's statistics over chunks, before the histograms: its rows and a tally per column. Partial
    tallies merge (`merge`) in any order into the same answer: a Beam CombineFn merges them per split."""

    def __init__(self) -> None:
        self.rows = 0
        self.columns: dict[str, _NumericTally | _StringTally] = {}

    def add(self, frame: pd.DataFrame, position: tuple) -> StatisticsTallies:
        self.rows += len(frame)
        for column in data_columns(frame):
            if column not in self.columns:
                kind = column_type(frame[column])
                self.columns[column] = _StringTally() if kind == schema_pb2.BYTES else _NumericTally(kind)
            tally = self.columns[column]
            tally.add(frame[column], position) if isinstance(tally, _StringTally) else tally.add(frame[column])
        return self

    def merge(self, other: StatisticsTallies) -> StatisticsTallies:
        self.rows += other.rows
        for column, tally in other.columns.items():  # every chunk of a split has every column
            self.columns[column] = self.columns[column].merge(tally) if column in self.columns else tally
        return self

    def numeric(self) -> dict[str, _NumericTally]:
        return {column: tally for column, tally in self.columns.items() if isinstance(tally, _NumericTally)}

    def histograms(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The second pass over one chunk: its values' histogram buckets per numeric column."""
        return {column: tally.histogram_of(frame[column]) for column, tally in self.numeric().items()}

    def numeric_bounds(self) -> StatisticsTallies:
        """The numeric columns' counts, min and max alone: what the histograms' pass needs (a quantiles sketch
        pickles to about 0.6 MB at 300,000 values; a copy per worker would be one more)."""
        slim = StatisticsTallies()
        slim.rows = self.rows
        for column, tally in self.numeric().items():
            bounds = slim.columns[column] = _NumericTally(tally.kind)
            bounds.present, bounds.low, bounds.high = tally.present, tally.low, tally.high
        return slim

    def needs_histograms(self) -> bool:
        return any(tally.present for tally in self.numeric().values())


def compute_statistics(source: FrameSource, name: str) -> statistics_pb2.DatasetFeatureStatistics:
    """TFX StatisticsGen's output for one split, in two passes over its chunks (the second fills the
    histograms, whose buckets need the min and max): memory holds one chunk and a tally per column."""
    return statistics_proto(statistics_tallies(source), name)


def statistics_tallies(source: FrameSource) -> StatisticsTallies:
    tallies = StatisticsTallies()
    for number, frame in enumerate(_frames(source)):
        tallies.add(frame, (number,))
    if tallies.needs_histograms():
        for frame in _frames(source):
            for column, tally in tallies.numeric().items():
                tally.add_to_histogram(frame[column])
    return tallies


def statistics_proto(tallies: StatisticsTallies, name: str) -> statistics_pb2.DatasetFeatureStatistics:
    dataset = statistics_pb2.DatasetFeatureStatistics(name=name, num_examples=tallies.rows)
    for column, tally in tallies.columns.items():
        feature = dataset.features.add()
        feature.path.step.append(column)
        if isinstance(tally, _StringTally):
            feature.type = statistics_pb2.FeatureNameStatistics.STRING
            feature.string_stats.CopyFrom(tally.proto())
        else:
            feature.type = (statistics_pb2.FeatureNameStatistics.INT if tally.kind == schema_pb2.INT
                            else statistics_pb2.FeatureNameStatistics.FLOAT)
            feature.num_stats.CopyFrom(tally.proto())
    return dataset


def statistics_list(splits: dict[str, FrameSource]) -> statistics_pb2.DatasetFeatureStatisticsList:
    return statistics_pb2.DatasetFeatureStatisticsList(
        datasets=[compute_statistics(source, name) for name, source in splits.items()])


# -------------------------------------------------------------------- schema
def infer_schema(source: FrameSource, config: DatasetConfig) -> schema_pb2.Schema:
    """Types and presence for every column; domains for the model's features.

    Domains (value sets, numeric ranges) are inferred only for features, since
    other columns (timestamps, ids) legitimately move beyond any range seen.
    One pass over the chunks; memory holds per column a count per batch and,
    for a categorical feature, its distinct values.
    """
    features = {feature.name: feature for feature in config.features}
    kinds: dict[str, int] = {}
    presence: dict[str, dict[int, list[int]]] = {}  # column -> batch -> [present, rows]
    values: dict[str, set] = {}  # categorical text features: the values seen
    ranges: dict[str, list] = {}  # other features: [min, max]
    for frame in _frames(source):
        for column in data_columns(frame):
            if column == config.label.name:
                continue  # derived by ingest, not part of the landing contract
            kinds.setdefault(column, column_type(frame[column]))
            counts = frame[column].notna().groupby(frame[BATCH_COLUMN]).agg(["sum", "size"])
            for batch, (present, size) in counts.iterrows():
                tally = presence.setdefault(column, {}).setdefault(int(batch), [0, 0])
                tally[0], tally[1] = tally[0] + int(present), tally[1] + int(size)
            present = frame[column].dropna()
            if column not in features or present.empty:
                continue
            if features[column].kind == "categorical" and kinds[column] == schema_pb2.BYTES:
                values.setdefault(column, set()).update(present.astype(str).unique())
            else:
                low, high = present.min(), present.max()
                seen = ranges.setdefault(column, [low, high])
                seen[0], seen[1] = min(seen[0], low), max(seen[1], high)

    schema = schema_pb2.Schema()
    for column, kind in kinds.items():
        feature = schema.feature.add(name=column, type=kind)
        batches = presence.get(column, {})
        lowest_presence = min((present / size for present, size in batches.values()), default=math.nan)
        if lowest_presence >= 1.0:
            feature.presence.min_fraction = 1.0
        else:
            slack = config.validation.presence_slack
            feature.presence.min_fraction = math.floor(max(0.0, lowest_presence - slack) * 100) / 100
        feature.value_count.min = feature.value_count.max = 1
        spec = features.get(column)
        if spec is None or (column not in values and column not in ranges):
            continue
        if spec.kind == "categorical" and feature.type == schema_pb2.BYTES:
            domain = schema.string_domain.add(name=column, value=sorted(values[column]))
            feature.domain = domain.name
        elif spec.kind == "categorical":
            feature.int_domain.CopyFrom(schema_pb2.IntDomain(min=int(ranges[column][0]), max=int(ranges[column][1]),
                                                             is_categorical=True))
        elif feature.type == schema_pb2.INT:
            feature.int_domain.CopyFrom(schema_pb2.IntDomain(min=int(ranges[column][0]), max=int(ranges[column][1])))
        else:
            feature.float_domain.CopyFrom(schema_pb2.FloatDomain(min=float(ranges[column][0]),
                                                                 max=float(ranges[column][1])))
    return schema


# ---------------------------------------------------------------- validation
def _type_name(kind: int) -> str:
    return schema_pb2.FeatureType.Name(kind)


@dataclasses.dataclass
class _FeatureTally:
    """One feature of one batch, over chunks: what its checks need, counted."""

    rows: int = 0
    present: int = 0
    non_numeric: int = 0  # text in a numeric feature
    non_numeric_samples: list = dataclasses.field(default_factory=list)  # [(where, value)], see _sample
    fractional: int = 0  # fractions in an INT feature
    first_fractional: list = dataclasses.field(default_factory=list)  # [(where, value)], at most one
    outside: int = 0  # unseen categories, or numbers outside the range
    outside_samples: list = dataclasses.field(default_factory=list)

    def merge(self, other: _FeatureTally) -> _FeatureTally:
        self.rows, self.present = self.rows + other.rows, self.present + other.present
        self.non_numeric, self.fractional, self.outside = (self.non_numeric + other.non_numeric,
                                                           self.fractional + other.fractional,
                                                           self.outside + other.outside)
        _merge_samples(self.non_numeric_samples, other.non_numeric_samples)
        _merge_samples(self.first_fractional, other.first_fractional)
        del self.first_fractional[1:]
        _merge_samples(self.outside_samples, other.outside_samples)
        return self

    def add(self, feature: schema_pb2.Feature, values: pd.Series, domains: dict[str, set[str]],
            position: tuple) -> None:
        present = values.dropna()
        self.rows += len(values)
        self.present += len(present)
        if present.empty:
            return
        actual, expected = column_type(values), feature.type
        if expected in (schema_pb2.INT, schema_pb2.FLOAT) and actual == schema_pb2.BYTES:
            bad = non_numeric_values(present, ())
            if len(bad):
                self.non_numeric += len(bad)
                _sample(self.non_numeric_samples, bad, position)
                return
            present = pd.to_numeric(present)
        elif expected == schema_pb2.INT and actual == schema_pb2.FLOAT:
            fractional = present[present % 1 != 0]
            if len(fractional):
                self.fractional += len(fractional)
                _merge_samples(self.first_fractional, [((position, 0), fractional.iloc[0])])
                del self.first_fractional[1:]
                return
        # INT data under a FLOAT schema is fine: a batch whose fares are all whole numbers.
        if feature.HasField("domain") and feature.domain in domains:
            text = present.astype(str)
            offending = text[~text.isin(domains[feature.domain])]
        elif feature.HasField("int_domain") or feature.HasField("float_domain"):
            domain = feature.int_domain if feature.HasField("int_domain") else feature.float_domain
            # FloatDomain bounds are float32 in the proto: compare at that precision.
            numbers = present.astype("float32" if feature.HasField("float_domain") else "float64")
            offending = numbers[(numbers < domain.min) | (numbers > domain.max)]
        else:
            return
        self.outside += len(offending)
        _sample(self.outside_samples, offending, position)

    def anomalies(self, feature: schema_pb2.Feature, batch_uri: str, tolerances) -> list[Anomaly]:
        found: list[Anomaly] = []
        name = feature.name
        presence = self.present / self.rows
        if feature.HasField("presence") and presence < feature.presence.min_fraction:
            found.append(Anomaly(name, "FEATURE_TYPE_LOW_FRACTION_PRESENT", CRITICAL, batch_uri,
                                 f"{self.present} of {self.rows} values present ({presence:.1%}); the schema "
                                 f"requires at least {feature.presence.min_fraction:.0%}"))
        if not self.present:
            return found
        if self.non_numeric:
            return found + [Anomaly(name, "UNEXPECTED_DATA_TYPE", CRITICAL, batch_uri,
                                    f"expected {_type_name(feature.type)}, found {self.non_numeric} non-numeric "
                                    f"value(s): {sample_values(_values(self.non_numeric_samples))} (a value "
                                    "meaning 'no value' belongs in the config's missing_values)")]
        if self.fractional:
            return found + [Anomaly(name, "UNEXPECTED_DATA_TYPE", CRITICAL, batch_uri,
                                    f"expected INT, found {self.fractional} fractional value(s) "
                                    f"such as {_values(self.first_fractional)[0]!r}")]
        if not self.outside:
            return found
        if feature.HasField("domain"):
            rule, what, tolerance = ("ENUM_TYPE_UNEXPECTED_STRING_VALUES", "unseen categories",
                                     tolerances.unseen_category_tolerance)
        else:
            domain = feature.int_domain if feature.HasField("int_domain") else feature.float_domain
            rule = "INT_TYPE_BIG_INT" if feature.HasField("int_domain") else "FLOAT_TYPE_BIG_FLOAT"
            what = (f"values outside the schema's {'categories' if feature.int_domain.is_categorical else 'range'} "
                    f"[{domain.min:g}, {domain.max:g}]")
            tolerance = tolerances.out_of_range_tolerance
        share = self.outside / self.present
        severity = CRITICAL if share > tolerance else WARNING
        examples = sample_values(_values(self.outside_samples))
        return found + [Anomaly(name, rule, severity, batch_uri, f"{share:.1%} {what} (tolerance {tolerance:.0%}), "
                                                                 f"e.g. {examples}")]


def validate(source: FrameSource, batches: list[BatchInfo], schema: schema_pb2.Schema,
             config: DatasetConfig) -> list[Anomaly]:
    """Checks each batch against the schema, in one pass over the rows' chunks (each row carries its
    batch's index). Critical anomalies must stop the run."""
    tallies: dict[tuple[int, str], _FeatureTally] = {}
    for number, frame in enumerate(_frames(source)):
        add_validation_tallies(tallies, frame, (number,), batches, schema)
    return anomalies_of(tallies, batches, schema, config)


def add_validation_tallies(tallies: dict[tuple[int, str], _FeatureTally], frame: pd.DataFrame, position: tuple,
                           batches: list[BatchInfo], schema: schema_pb2.Schema) -> dict:
    """One chunk's rows counted into the tallies of (batch index, feature) that validation checks."""
    domains = {domain.name: set(domain.value) for domain in schema.string_domain}
    for index, rows in frame.groupby(BATCH_COLUMN, sort=True):
        columns = batches[index].columns
        for feature in schema.feature:
            if feature.name in columns and feature.name in rows.columns:
                tallies.setdefault((index, feature.name), _FeatureTally()).add(feature, rows[feature.name],
                                                                                domains, position)
    return tallies


def merge_validation_tallies(tallies: dict[tuple[int, str], _FeatureTally],
                             other: dict[tuple[int, str], _FeatureTally]) -> dict:
    for key, tally in other.items():
        tallies[key] = tallies[key].merge(tally) if key in tallies else tally
    return tallies


def anomalies_of(tallies: dict[tuple[int, str], _FeatureTally], batches: list[BatchInfo],
                 schema: schema_pb2.Schema, config: DatasetConfig) -> list[Anomaly]:
    """Every batch's problems (from ingest), missing or new columns, and the checks of its tallies."""
    anomalies: list[Anomaly] = []
    schema_names = {feature.name for feature in schema.feature}
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
        for feature in schema.feature:
            tally = tallies.get((index, feature.name))
            if tally is not None and tally.rows:
                anomalies.extend(tally.anomalies(feature, batch.uri, config.validation))
    return anomalies


# BigQuery column types (standard SQL names) that a schema type accepts: the types ingest's bq:// path reads as
# that type. An INT64 column under a FLOAT feature is fine, as INT data is under a FLOAT schema for CSV.
BIGQUERY_TYPES_FOR = {schema_pb2.INT: ("INT64", "BOOL"),
                      schema_pb2.FLOAT: ("FLOAT64", "NUMERIC", "BIGNUMERIC", "INT64", "BOOL"),
                      schema_pb2.BYTES: ("STRING", "DATE", "DATETIME", "TIME", "TIMESTAMP")}


def bigquery_column_problems(columns: dict[str, str], schema: schema_pb2.Schema, table: str,
                             explained: set[str] = frozenset()) -> list[BatchProblem]:
    """A BigQuery table's columns (name -> standard SQL type) against the reviewed schema, before any row is
    read: a schema feature the table lacks, or holds as a type that cannot be the schema's, is a problem that
    keeps the table's rows out of the splits, reported by `validate` as a critical anomaly. A column named in
    `explained` already has its problem (a label input the table lacks)."""
    problems = []
    for feature in schema.feature:
        if feature.name in explained:
            continue
        found = columns.get(feature.name)
        accepted = BIGQUERY_TYPES_FOR.get(feature.type, ())
        if found is None:
            problems.append(BatchProblem(feature.name, MISSING_COLUMN,
                                         f"column is in the schema but not in {table}"))
        elif found not in accepted:
            problems.append(BatchProblem(feature.name, WRONG_TYPE, (
                f"{table} holds it as BigQuery {found}; the schema expects {_type_name(feature.type)}, held as "
                f"{' or '.join(accepted) or 'no BigQuery type'}")))
    return problems


def problem_anomalies(batch: BatchInfo) -> list[Anomaly]:
    """What ingest recorded about a batch (unreadable, no rows, a column the label needs): each critical."""
    return [Anomaly(problem.column, problem.rule, CRITICAL, batch.uri, problem.description)
            for problem in batch.problems]


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


def split_frames(examples_dir: str | Path, split: str) -> Callable[[], Iterable[pd.DataFrame]]:
    """A split as a source of chunks, read again on each call (`storage.shards.iter_chunks`): first an
    empty frame with the shards' columns and types, then the rows."""
    from dataprep.ingest import split_shards
    from storage import shards

    found = split_shards(examples_dir, split)

    def chunks() -> Iterable[pd.DataFrame]:
        empty = shards.shard_schema(found[0]).empty_table().to_pandas()
        return itertools.chain([empty], (chunk.batch.to_pandas() for chunk in shards.iter_chunks(found)))

    return chunks


def validate_examples(examples_dir: str | Path, config: DatasetConfig, statistics_dir: str | Path,
                      schema_dir: str | Path, anomalies_dir: str | Path, beam_runner: str = "DirectRunner",
                      beam_pipeline_args: list[str] | None = None) -> list[Anomaly]:
    """The validate step: statistics of both splits, the schema it used, and every
    batch checked against that schema. Raises on a critical anomaly, after writing
    the anomalies, so the artifact explains the stop. Streams the splits' shards:
    memory holds a chunk and per-column tallies, whatever the data's size.
    `beam_runner` and `beam_pipeline_args`: as for ingest (dataprep.beam_options.runs_in_process);
    dataprep.beam_validation makes the same passes on Beam, then the same calls."""
    from dataprep.beam_options import runs_in_process
    from dataprep.ingest import load_manifest

    if not runs_in_process(beam_runner, beam_pipeline_args):
        from dataprep.beam_validation import validate_on_beam

        return validate_on_beam(examples_dir, config, statistics_dir, schema_dir, anomalies_dir, beam_runner,
                                beam_pipeline_args)

    train, evaluation = split_frames(examples_dir, "train"), split_frames(examples_dir, "eval")
    datasets = [("train", statistics_tallies(train)), ("eval", statistics_tallies(evaluation))]
    schema = schema_for(examples_dir, config, schema_dir)
    batches = load_manifest(examples_dir).batches
    tallies: dict[tuple[int, str], _FeatureTally] = {}
    for number, frame in enumerate(itertools.chain(train(), evaluation())):
        add_validation_tallies(tallies, frame, (number,), batches, schema)
    found = write_outcome(datasets, tallies, batches, schema, config, statistics_dir, anomalies_dir)
    raise_on_critical(found)
    return found


def schema_for(examples_dir: str | Path, config: DatasetConfig, schema_dir: str | Path) -> schema_pb2.Schema:
    """The reviewed schema, written to the step's schema artifact; on first use, one inferred from the splits
    (streamed), with a warning that it needs a review."""
    Path(schema_dir).mkdir(parents=True, exist_ok=True)
    if storage_uri.exists(config.schema_uri):
        schema = load_schema(config.schema_uri)
        write_schema(schema, Path(schema_dir) / SCHEMA_FILE)
        return schema
    train, evaluation = split_frames(examples_dir, "train"), split_frames(examples_dir, "eval")
    schema = infer_schema(lambda: itertools.chain(train(), evaluation()), config)
    write_schema(schema, Path(schema_dir) / SCHEMA_FILE)
    print(f"WARNING: {config.schema_uri} does not exist; inferred a schema from this data and used it. "
          f"Review the inferred schema ({Path(schema_dir) / SCHEMA_FILE}), then put it at {config.schema_uri} "
          "(locally: `python runner.py --infer-schema --dataset-config ...` writes it for review).")
    return schema


def write_outcome(datasets: list[tuple[str, StatisticsTallies]], tallies: dict[tuple[int, str], _FeatureTally],
                  batches: list[BatchInfo], schema: schema_pb2.Schema, config: DatasetConfig,
                  statistics_dir: str | Path, anomalies_dir: str | Path) -> list[Anomaly]:
    """The statistics and the anomalies written from the tallies; the anomalies returned."""
    Path(statistics_dir).mkdir(parents=True, exist_ok=True)
    stats = statistics_pb2.DatasetFeatureStatisticsList(
        datasets=[statistics_proto(split_tallies, name) for name, split_tallies in datasets])
    (Path(statistics_dir) / STATISTICS_FILE).write_text(text_format.MessageToString(stats))
    found = anomalies_of(tallies, batches, schema, config)
    write_validation_outputs(found, schema, anomalies_dir)
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
