"""A chunk of source rows as the model's instances, checked with serving's own conversion.

The rules are the online ones (serving/instances.py): the same types are
accepted and a bad value gets the same message, so a row the endpoint would
refuse is refused here. What differs is the reaction: online, a bad instance
fails its request; here it goes to the errors output and the others are predicted.

CSV cells arrive as text: a feature of dtype float32 or int64 is read as a number
first (a cell in the data set's `missing_values` is a missing value), and a cell
that is not a number stays text, so serving's check names it. A chunk whose
values are all plainly valid takes a columnar fast path to the same blocks;
at the first doubtful value the chunk goes row by row through serving's code. JSONL values keep
their JSON types, except that a feature absent from a line is a missing value
(a JSONL shard has no header to say which columns it holds).
"""

from __future__ import annotations

import dataclasses
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contract.dataset import DEFAULT_MISSING_VALUES
from serving.instances import Columns, InputSpec, RequestError, features_by_dtype, instances_to_columns
from storage.shards import Chunk, RowProblem

_NUMERIC = ("float32", "int64")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class SourceError(ValueError):
    """The source as a whole cannot be scored (a shard lacks a feature or the key field)."""


@dataclasses.dataclass(frozen=True)
class RowError:
    """One row that was not predicted, and why."""

    shard: str
    row: int | None  # 0-based index among the shard's data rows, every one counted (storage/shards.py)
    line: int | None  # 1-based line in the shard, when known
    key: str | None
    reason: str


@dataclasses.dataclass
class CheckedChunk:
    columns: Columns | None  # the good rows, as the model takes them (None: no good row)
    keys: list[str]  # one per good row
    errors: list[RowError]


def _is_text(batch: pa.RecordBatch, name: str) -> bool:
    return pa.types.is_string(batch.schema.field(name).type) or pa.types.is_large_string(
        batch.schema.field(name).type)


def _numbers_from_text(column: pa.Array, missing_tokens: frozenset[str]) -> list[Any]:
    """Text cells as numbers; missing tokens as None; a cell that is not a number stays its text."""
    texts = pd.Series(column.to_pandas(), dtype=object)
    missing = texts.isna() | texts.isin(missing_tokens)
    numbers = pd.to_numeric(texts.where(~missing), errors="coerce")
    values = numbers.astype(object).where(numbers.notna(), None).tolist()
    for index in np.flatnonzero(numbers.isna().to_numpy() & ~missing.to_numpy()):
        values[index] = texts.iat[index]  # not a number: serving's check names it
    return values


def feature_values(batch: pa.RecordBatch, name: str, dtype: str, missing_tokens: frozenset[str]) -> list[Any]:
    column = batch.column(name)
    if dtype in _NUMERIC and _is_text(batch, name):
        return _numbers_from_text(column, missing_tokens)
    values = column.to_pylist()
    if dtype in _NUMERIC:
        # Parquet/JSON floats: an integral float is fine for int64 (serving's rule), NaN is missing.
        return [None if isinstance(value, float) and value != value else value for value in values]
    return values


def row_key(shard: str, row: int) -> str:
    """A row's key when the source has no key field: `SHARD#ROW`, ROW its index among the shard's data rows
    (every one counted, so fixing or adding a bad row elsewhere renumbers nothing). Both forms key so."""
    return f"{shard}#{row}"


def empty_key_reason(key_field: str) -> str:
    return f"key field {key_field!r} is empty; expected a value that identifies the row"


def row_keys(chunk: Chunk, key_field: str) -> list[str | None]:
    """Each row's key: the key field's value (None when empty), or `row_key` without a key field."""
    if not key_field:
        return [row_key(chunk.shard, row) for row in chunk.rows.tolist()]
    return [None if value is None or value == "" else str(value)
            for value in chunk.batch.column(key_field).to_pylist()]


def problem_error(problem: RowProblem, key_field: str) -> RowError:
    """A row the format could not parse, as an error row: with a key field there is no key to read from it."""
    return RowError(problem.shard, problem.row, problem.line,
                    None if key_field else row_key(problem.shard, problem.row), problem.reason)


def check_shard_columns(batch: pa.RecordBatch, shard: str, spec: InputSpec, key_field: str) -> None:
    """Refuses a shard that lacks a feature or the key field: every row of it would fail the same way."""
    if batch.num_rows == 0:
        return
    names = set(batch.schema.names)
    if key_field and key_field not in names:
        raise SourceError(f"{shard}: key field {key_field!r} is not a column of this shard; expected the "
                          "key_field parameter to name a column that identifies each row (or '' for none)")
    absent = [name for name in spec.features if name not in names]
    if absent:
        raise SourceError(f"{shard}: column(s) {', '.join(absent)} missing; the model takes "
                          f"{', '.join(spec.features)}")


def _as_float64(column: pa.Array, missing_tokens: pa.Array) -> np.ndarray | None:
    """A numeric or numeric-text column as float64 with NaN for missing values; None if a cell is not a number."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.if_else(pc.is_in(column, value_set=missing_tokens), pa.scalar(None, column.type), column)
    elif not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        return None  # booleans, lists, objects: the row path names them
    try:
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _fast_columns(batch: pa.RecordBatch, spec: InputSpec, missing_tokens: pa.Array) -> Columns | None:
    """The whole chunk as the model's input blocks in a few columnar passes, when every value is plainly
    valid; None at the first doubt, and the row path (serving's own conversion) decides and names the
    problem. For valid data both give the same blocks (tests/batch_prediction/test_batch_rows.py)."""
    names = features_by_dtype(spec)
    blocks: dict[str, Any] = {}
    for dtype, group in names.items():
        if dtype == "string":
            lists = []
            for name in group:
                column = batch.column(name)
                if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                    return None
                lists.append(column.fill_null(spec.missing_values["string"]).to_pylist())
            blocks[dtype] = list(chain.from_iterable(zip(*lists, strict=True))) if len(lists) > 1 else lists[0]
            continue
        columns = [_as_float64(batch.column(name), missing_tokens) for name in group]
        if any(column is None for column in columns):
            return None
        wide = np.column_stack(columns).ravel()  # row-major: instance after instance, as Columns lays them out
        missing = np.isnan(wide)
        if dtype == "float32":
            if (np.abs(wide[~missing]) > _FLOAT32_MAX).any():
                return None
            blocks[dtype] = wide.astype(np.float32)
        else:
            present = wide[~missing]
            if (present != np.floor(present)).any() or (np.abs(present) >= 2.0**53).any():
                return None  # not an integer, or beyond float64's exact integers: the row path decides
            blocks[dtype] = np.where(missing, spec.missing_values["int64"], wide).astype(np.int64)
    return Columns(spec, batch.num_rows, names, blocks)


def check_chunk(chunk: Chunk, spec: InputSpec, key_field: str = "",
                missing_tokens: frozenset[str] = frozenset(DEFAULT_MISSING_VALUES)) -> CheckedChunk:
    """The chunk's rows that meet the model's input contract, as columns; the others as `RowError`s."""
    errors = [problem_error(problem, key_field) for problem in chunk.problems]
    batch = chunk.batch
    if batch.num_rows == 0:
        return CheckedChunk(None, [], errors)
    check_shard_columns(batch, chunk.shard, spec, key_field)
    keys = row_keys(chunk, key_field)
    if None not in keys:
        columns = _fast_columns(batch, spec, pa.array(sorted(missing_tokens), pa.string()))
        if columns is not None:
            return CheckedChunk(columns, keys, errors)
    values = {name: feature_values(batch, name, dtype, missing_tokens) for name, dtype in spec.features.items()}
    names = list(values)
    instances = [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]
    no_key = [index for index, key in enumerate(keys) if key is None]
    try:
        if no_key:
            raise RequestError("a row has no key")
        return CheckedChunk(instances_to_columns(instances, spec), keys, errors)  # the usual case: one pass
    except RequestError:
        pass
    good: list[int] = []
    for index, instance in enumerate(instances):
        if keys[index] is None:
            reason = empty_key_reason(key_field)
        else:
            try:
                instances_to_columns([instance], spec)
                good.append(index)
                continue
            except RequestError as error:
                reason = str(error).removeprefix("instance 0: ")
        errors.append(RowError(chunk.shard, int(chunk.rows[index]), None, keys[index], reason))
    columns = instances_to_columns([instances[index] for index in good], spec) if good else None
    return CheckedChunk(columns, [keys[index] for index in good], errors)
