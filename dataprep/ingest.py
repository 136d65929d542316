"""Ingest: read every `batch.csv` under `data_uri`, type it, label it, split it.

Memory holds one chunk of one batch at a time (CHUNK_ROWS rows), whatever the
data's size: a first pass finds each batch's problems and what its columns
hold, a second types, labels and splits, and writes each split as Parquet
shards of bounded size (`storage.shards.ShardWriter`) under examples/train/
and examples/eval/, which every later step streams (`storage.shards.iter_chunks`).

The roles of TFX ExampleGen: one deterministic train/eval split by a hash of the
data set's split key, so a trip lands in the same split whichever partition or
run it arrives in. Types are inferred from the values (not assumed from the
schema), so that validation sees a type change instead of ingest hiding it.

A damaged batch never crashes ingest: what is wrong with it (unreadable, a
repeated column, no rows, a column the label needs missing or not numbers) is
recorded in its `BatchInfo.problems` and its rows are left out. The validate
step turns every recorded problem into a critical anomaly, so one run reports
all of them and stops before training. With no usable rows at all, ingest still
writes empty splits and a manifest for validation to explain.
"""

from __future__ import annotations

import ast
import collections
import csv
import dataclasses
import io
import json
import posixpath
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from contract.artifacts import EVAL_SPLIT, MANIFEST_FILE, TRAIN_SPLIT
from contract.dataset import BATCH_COLUMN, DatasetConfig
from contract.paths import BATCH_FILE_NAME, LANDING_PREFIX, PROJECT_ROOT
from storage import shards
from storage import uri as storage_uri

# Rows of one batch held in memory at once.
CHUNK_ROWS = 8192
# How many distinct offending values a problem or anomaly quotes.
SAMPLE_COUNT = 3
# Problem kinds, named by the closest tensorflow-metadata AnomalyInfo.Type (validation reports them as such).
NO_ROWS = "NO_DATA_IN_SPAN"
TOO_MANY_VALUES = "FEATURE_TYPE_HIGH_NUMBER_VALUES"  # a repeated column, or a row longer than the header
TOO_FEW_VALUES = "FEATURE_TYPE_LOW_NUMBER_VALUES"  # a row shorter than the header (a cut-off file)
INVALID_UTF8 = "ENUM_TYPE_INVALID_UTF8"
NOT_CSV = "STATS_NOT_AVAILABLE"  # the csv reader gave up: no statistics can describe the file
MISSING_COLUMN = "SCHEMA_MISSING_COLUMN"
WRONG_TYPE = "UNEXPECTED_DATA_TYPE"
# A byte that is not UTF-8, as Python's surrogateescape decoding shows it.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


class IngestError(ValueError):
    """Nothing usable under data_uri, or a config that cannot fit any data; the message says what."""


@dataclasses.dataclass(frozen=True)
class BatchProblem:
    """Why a batch's rows were left out; validation reports each as a critical anomaly."""

    column: str  # the column concerned; "" for the file as a whole
    rule: str  # a tensorflow-metadata AnomalyInfo.Type name (the constants above)
    description: str  # what is wrong, with the line when one is known


@dataclasses.dataclass(frozen=True)
class BatchInfo:
    uri: str
    rows: int  # data rows read from the file (its rows reach the splits only if it has no problems)
    columns: list[str]  # the header as written; empty when the file has none that can be read
    problems: list[BatchProblem] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class IngestSummary:
    data_uri: str
    batches: list[BatchInfo]
    rows: int
    train_rows: int
    eval_rows: int
    label_positive_rate: float | None  # None without rows: there is no rate (and NaN would break KFP metadata)

    def counts(self) -> dict[str, float]:
        counts = {"batches": len(self.batches), "rows": self.rows, "train_rows": self.train_rows,
                  "eval_rows": self.eval_rows}
        if self.label_positive_rate is not None:
            counts["label_positive_rate"] = round(self.label_positive_rate, 4)
        return counts


def _resolved(prefix: str) -> str:
    """A relative local prefix is relative to the project root; gs:// and the mount stand as they are."""
    if storage_uri.is_gcs(storage_uri.canonical(storage_uri.checked(prefix))) or Path(prefix).is_absolute():
        return prefix
    return str((PROJECT_ROOT / prefix).resolve())


def find_batches(data_uri: str) -> list[str]:
    """Every batch.csv under each comma-separated prefix in data_uri (folders, gs:// prefixes or the
    /gcs/ mount; read through storage.uri), sorted."""
    found: list[str] = []
    for prefix in (part.strip() for part in data_uri.split(",")):
        if not prefix:
            continue
        try:
            files = storage_uri.list_files(_resolved(prefix))
        except ValueError as error:  # not a URI storage reads (another scheme, no bucket)
            raise IngestError(f"data_uri {prefix!r}: {error}") from None
        except FileNotFoundError:
            raise IngestError(f"data_uri {prefix!r} does not exist; expected a folder or gs:// prefix "
                              f"holding .../{BATCH_FILE_NAME} files") from None
        found.extend(uri for uri in files if posixpath.basename(uri) == BATCH_FILE_NAME)
    if not found:
        raise IngestError(f"no {BATCH_FILE_NAME} under data_uri {data_uri!r}; expected the landing layout "
                          f"{LANDING_PREFIX}/YYYY/MM/DD/HHMM/{BATCH_FILE_NAME}")
    return sorted(set(found))


def sample_values(values) -> str:
    """Up to SAMPLE_COUNT distinct values, quoted, for a message: `'n/a', '?', 'twelve'`."""
    return ", ".join(repr(value) for value in list(dict.fromkeys(values))[:SAMPLE_COUNT])


def _shown(text: str) -> str:
    """Text decoded with surrogateescape, with each undecodable byte shown as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _BatchReader:
    """One batch.csv read as text rows, chunk by chunk, and what is wrong with it as a file.

    Read with the csv module rather than pandas, which renames a repeated
    column, pads a short row and reports an error without the file's name.
    Undecodable bytes are kept (surrogateescape), so a problem can name their
    line and column; a valid UTF-8 file decodes to the same text either way.
    The problems are complete once `chunks` is exhausted.
    """

    def __init__(self, stream, uri: str, chunk_rows: int) -> None:
        self.uri, self.chunk_rows = uri, chunk_rows
        self._text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
        self.header: list[str] = []  # as written, undecodable bytes still escaped
        self.header_line = 1
        self.rows = 0
        self.not_csv: BatchProblem | None = None
        self._undecodable: dict[str, list] = {}  # column: [first line, count, distinct sample cells]
        self._lengths: dict[str, list] = {}  # rule: [first line, its field count, count]

    def chunks(self) -> Iterator[tuple[list[list[str]], list[int]]]:
        """The data rows (blank lines are no rows, as in pandas) and the line each starts on (a quoted
        cell may span lines), up to chunk_rows at a time."""
        reader = csv.reader(self._text)
        rows: list[list[str]] = []
        starts: list[int] = []
        try:
            self.header = next((row for row in reader if row), [])
            self.header_line = end = reader.line_num
            for name in self.header:
                self._note_undecodable("", self.header_line, name)
            for row in reader:
                start, end = end + 1, reader.line_num
                if row:
                    rows.append(row)
                    starts.append(start)
                    if len(rows) == self.chunk_rows:
                        yield self._checked(rows, starts), starts
                        rows, starts = [], []
        except csv.Error as error:
            self.not_csv = BatchProblem("", NOT_CSV, f"line {reader.line_num}: not readable as CSV: {error}")
        if rows:
            yield self._checked(rows, starts), starts

    def _checked(self, rows: list[list[str]], starts: list[int]) -> list[list[str]]:
        self.rows += len(rows)
        if _UNDECODABLE.search("".join("".join(row) for row in rows)):  # one search per chunk in the usual case
            for row, start in zip(rows, starts, strict=True):
                for index, cell in enumerate(row):
                    column = _shown(self.header[index]) if index < len(self.header) else ""
                    self._note_undecodable(column, start, cell)
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        width = len(self.header)
        for rule, wrong in ((TOO_MANY_VALUES, lengths > width), (TOO_FEW_VALUES, lengths < width)):
            if wrong.any():
                first = int(np.argmax(wrong))
                seen = self._lengths.setdefault(rule, [starts[first], int(lengths[first]), 0])
                seen[2] += int(wrong.sum())
        return rows

    def _note_undecodable(self, column: str, line: int, cell: str) -> None:
        """Counts a cell holding bytes that are not UTF-8 under its column ("" for the header)."""
        if not _UNDECODABLE.search(cell):
            return
        seen = self._undecodable.setdefault(column, [line, 0, []])
        seen[1] += 1
        value = cell.encode("utf-8", "surrogateescape")
        if value not in seen[2] and len(seen[2]) < SAMPLE_COUNT:
            seen[2].append(value)

    @property
    def columns(self) -> list[str]:
        return [_shown(name) for name in self.header]

    def problems(self) -> list[BatchProblem]:
        """What keeps the batch out, in the order a person fixes it: unreadable, undecodable, repeated
        columns, rows of the wrong length, no rows."""
        problems = [self.not_csv] if self.not_csv else []
        problems += [BatchProblem(column, INVALID_UTF8, f"line {line}: {count} value(s) are not UTF-8, such as "
                                                        f"{sample_values(samples)}; batches must be UTF-8")
                     for column, (line, count, samples) in self._undecodable.items()]
        problems += _repeated_columns(self.columns, self.header_line)
        for rule, (line, fields, count) in self._lengths.items():
            more = f" ({count - 1} more such row(s))" if count > 1 else ""
            problems.append(BatchProblem("", rule, f"line {line} has {fields} fields; the header has "
                                                   f"{len(self.header)}{more}"))
        if self.header and not self.rows and not self.not_csv:  # after a csv error the rows are unknown
            problems.append(BatchProblem("", NO_ROWS, f"the file has a header (line {self.header_line}) but no rows"))
        return problems


def _blank_size(stream, block: int = 1 << 16) -> int | None:
    """The file's size when it holds nothing but whitespace (read a block at a time), else None."""
    size = 0
    while data := stream.read(block):
        if data.strip():
            stream.seek(0)
            return None
        size += len(data)
    return size


def _empty_file(uri: str, size: int) -> BatchInfo:
    return BatchInfo(uri, 0, [], [BatchProblem(
        "", NO_ROWS, f"line 1: the file is empty ({size} bytes); expected a header line, then one line per row")])


def batch_chunks(uri: str) -> Iterator[pd.DataFrame]:
    """A readable batch's cells as text, CHUNK_ROWS rows at a time (its problems were checked by
    scan_batches)."""
    with shards.open_shard(uri) as stream:
        if _blank_size(stream) is not None:
            return
        reader = _BatchReader(stream, uri, CHUNK_ROWS)
        for rows, _ in reader.chunks():
            yield pd.DataFrame(rows, columns=reader.columns, dtype=object)


def scan_batches(batch_uris: list[str], missing_values: tuple[str, ...]
                 ) -> tuple[list[BatchInfo], dict[int, dict[str, ColumnScan]]]:
    """Every batch's problems and, for each batch without any, what typing needs to know of each of its
    columns (by batch index)."""
    infos, scans = scan_group(list(enumerate(batch_uris)), missing_values)
    return [infos[index] for index in range(len(batch_uris))], scans


def scan_group(batches: list[tuple[int, str]], missing_values: tuple[str, ...]
               ) -> tuple[dict[int, BatchInfo], dict[int, dict[str, ColumnScan]]]:
    """scan_batches for some of the batches, given as (index, uri): the unit of work of the Beam ingest
    (dataprep.beam_ingest), whose workers each scan a group of batches. Read chunk by chunk; the rows of
    several small batches are scanned together (about CHUNK_ROWS at a time), so memory holds one chunk and
    the per-call cost is paid per chunk, not per batch."""
    infos: dict[int, BatchInfo] = {}
    scans: dict[int, dict[str, ColumnScan]] = {}
    pending: list[pd.DataFrame] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if pending:
            _scan_chunk(pd.concat(pending, ignore_index=True).fillna(""), infos, scans, missing_values)
        pending, pending_rows = [], 0

    for index, uri in batches:
        infos[index] = BatchInfo(uri=uri, rows=0, columns=[])  # completed as it is read
        for frame in _checked_chunks(index, uri, infos):
            pending.append(frame)
            pending_rows += len(frame)
            if pending_rows >= CHUNK_ROWS:
                flush()
    flush()
    return infos, {index: found for index, found in scans.items() if not infos[index].problems}


def _checked_chunks(index: int, uri: str, infos: dict[int, BatchInfo]) -> Iterator[pd.DataFrame]:
    """A batch's rows as text, chunk by chunk, marked with its index, while no problem is found; infos[index]
    is kept up to date and holds every problem of the file once the chunks are exhausted."""
    with shards.open_shard(uri) as stream:
        size = _blank_size(stream)
        if size is not None:
            infos[index] = _empty_file(uri, size)
            return
        reader = _BatchReader(stream, uri, CHUNK_ROWS)
        for rows, _ in reader.chunks():
            if reader.problems():
                continue  # the batch is left out: its values need no typing
            infos[index] = BatchInfo(uri=uri, rows=reader.rows, columns=reader.columns)
            yield pd.DataFrame(rows, columns=reader.columns, dtype=object).assign(**{BATCH_COLUMN: index})
        infos[index] = BatchInfo(uri=uri, rows=reader.rows, columns=reader.columns, problems=reader.problems())


def _scan_chunk(frame: pd.DataFrame, infos: dict[int, BatchInfo], scans: dict[int, dict[str, ColumnScan]],
                missing_values: tuple[str, ...]) -> None:
    """Adds a chunk of text rows from one or more batches (BATCH_COLUMN says which) to each batch's column
    scans: the same counts as ColumnScan.add, grouped by batch."""
    batch = frame[BATCH_COLUMN].to_numpy()
    for column in frame.columns.drop(BATCH_COLUMN):
        values = frame[column]
        present = ~values.isin(missing_values)
        numbers = pd.to_numeric(values.where(present, None), errors="coerce")
        text = present & numbers.isna()
        tallies = pd.DataFrame({"present": present, "text": text, "fractional": numbers.notna() & (numbers % 1 != 0),
                                "largest": numbers.abs()}).groupby(batch).agg(
            {"present": "sum", "text": "sum", "fractional": "any", "largest": "max"})
        for index, counts in zip(tallies.index, tallies.itertuples(index=False), strict=True):
            if column not in infos[index].columns:
                continue  # "" where this batch has no such column
            scan = ColumnScan(present=int(counts.present), non_numeric=int(counts.text),
                              fractional=bool(counts.fractional),
                              largest=0.0 if pd.isna(counts.largest) else float(counts.largest))
            if scan.non_numeric:
                scan.samples = list(dict.fromkeys(values[text & (batch == index)].astype(str)))[:SAMPLE_COUNT]
            found = scans.setdefault(int(index), {})
            found[column] = found[column].merge(scan) if column in found else scan


def load_batches(batch_uris: list[str]) -> tuple[pd.DataFrame, list[BatchInfo]]:
    """Every readable batch's rows as text in one frame, each marked with its batch's index, and every
    batch's BatchInfo: the whole data in memory, for reviewing a sample (`--infer-schema`) and tests."""
    frames = []
    infos, _ = scan_batches(batch_uris, ("",))
    for index, info in enumerate(infos):
        if not info.problems:
            frames += [chunk.assign(**{BATCH_COLUMN: index}) for chunk in batch_chunks(info.uri)]
    if not frames:
        return pd.DataFrame({BATCH_COLUMN: pd.Series(dtype="int32")}), infos
    # A batch without a column gets "" there: validation names it from BatchInfo.columns.
    return pd.concat(frames, ignore_index=True).fillna(""), infos


def _repeated_columns(header: list[str], line: int) -> list[BatchProblem]:
    problems = []
    for name, count in collections.Counter(header).items():
        if count > 1:
            positions = [str(index + 1) for index, column in enumerate(header) if column == name]
            problems.append(BatchProblem(name, TOO_MANY_VALUES, (
                f"line {line}: the header names {name!r} {count} times (columns {', '.join(positions[:-1])} and "
                f"{positions[-1]}); each column must appear once, else which values are {name!r} is unknown")))
    return problems


@dataclasses.dataclass
class ColumnScan:
    """What typing needs to know of a column's text, gathered chunk by chunk and merged over batches."""

    present: int = 0  # cells that are not a missing-value marker
    non_numeric: int = 0  # present cells that are not numbers
    samples: list[str] = dataclasses.field(default_factory=list)  # the first distinct non-numeric cells
    fractional: bool = False  # a number with a fraction (or not finite)
    largest: float = 0.0  # the largest absolute number

    def add(self, raw: pd.Series, missing_values: tuple[str, ...]) -> None:
        values = raw[~raw.isin(missing_values)].astype(str)
        numbers = pd.to_numeric(values, errors="coerce")
        text = values[numbers.isna()]
        self.present += len(values)
        self.non_numeric += len(text)
        self._sample(text)
        numbers = numbers.dropna()
        if len(numbers):
            self.fractional = self.fractional or not bool((numbers % 1 == 0).all())
            self.largest = max(self.largest, float(numbers.abs().max()))

    def _sample(self, values) -> None:
        for value in values:
            if len(self.samples) >= SAMPLE_COUNT:
                return
            if value not in self.samples:
                self.samples.append(value)

    def merge(self, other: ColumnScan) -> ColumnScan:
        merged = dataclasses.replace(self, samples=list(self.samples))
        merged.present += other.present
        merged.non_numeric += other.non_numeric
        merged._sample(other.samples)
        merged.fractional = self.fractional or other.fractional
        merged.largest = max(self.largest, other.largest)
        return merged

    def kind(self) -> str:
        """"missing" (no value at all), "text", "int" or "float"."""
        if not self.present:
            return "missing"
        if self.non_numeric:
            return "text"
        return "int" if not self.fractional and self.largest < 2**53 else "float"


def typed_column(raw: pd.Series, kind: str, missing_values: tuple[str, ...]) -> pd.Series:
    """The column as its kind: Int64 or float64 with missing as NA, text with missing as None."""
    if kind == "missing":
        return pd.Series(np.nan, index=raw.index, dtype="float64")
    as_text = raw.where(~raw.isin(missing_values), None)
    if kind == "text":
        return as_text.astype(object)
    return pd.to_numeric(as_text, errors="coerce").astype("Int64" if kind == "int" else "float64")


def infer_column_type(raw: pd.Series, missing_values: tuple[str, ...]) -> pd.Series:
    """Numbers become Int64 or float64 (missing as NA); anything else stays text.

    A cell holding one of `missing_values` (the data set config's markers, such
    as "" and "NA") is missing. A single other non-numeric value keeps the whole
    column as text: validation then reports the type change and names the
    batches that carry it. Ingest decides the same over all batches, chunk by
    chunk, with `ColumnScan`.
    """
    scan = ColumnScan()
    scan.add(raw, missing_values)
    return typed_column(raw, scan.kind(), missing_values)


def non_numeric_values(raw: pd.Series, missing_values: tuple[str, ...]) -> pd.Series:
    """The cells that are neither a missing-value marker nor a number."""
    present = raw[~raw.isin(missing_values)].astype(str)
    return present[pd.to_numeric(present, errors="coerce").isna()]


def split_assignment(raw: pd.DataFrame, key_columns: tuple[str, ...], eval_percent: int) -> np.ndarray:
    """True for eval rows. Hashes the raw text of the key, so typing cannot move a row."""
    missing = [column for column in key_columns if column not in raw.columns]
    if missing:
        raise IngestError(f"split key column(s) {missing} not in the data; columns are {list(raw.columns)}")
    hashes = pd.util.hash_pandas_object(raw[list(key_columns)], index=False).to_numpy()
    return (hashes % np.uint64(100)) < np.uint64(eval_percent)


def type_columns(raw: pd.DataFrame, missing_values: tuple[str, ...]) -> pd.DataFrame:
    typed = pd.DataFrame({column: infer_column_type(raw[column], missing_values) for column in raw.columns
                          if column != BATCH_COLUMN}, index=raw.index)
    typed[BATCH_COLUMN] = raw[BATCH_COLUMN].astype("int32")
    return typed


def label_input_columns(expression: str) -> list[str]:
    """The columns a label expression (pandas `DataFrame.eval` syntax) reads, in order.

    `DataFrame.eval` resolves every bare name to a column, so every name is
    one, except a function being called; `backticks` quote a name with spaces.
    """
    quoted: dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        quoted[f"_quoted_{len(quoted)}"] = match.group(1)
        return f"_quoted_{len(quoted) - 1}"

    try:
        tree = ast.parse(re.sub(r"`([^`]*)`", placeholder, expression).strip(), mode="eval")
    except SyntaxError as error:
        raise IngestError(f"label expression {expression!r} is not a pandas expression: {error.msg}") from None
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    names = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Name) and id(node) not in called),
                   key=lambda node: node.col_offset)
    return list(dict.fromkeys(quoted.get(node.id, node.id) for node in names))


@dataclasses.dataclass
class Scanned:
    """Every batch's BatchInfo and, for the batches still in, their column scans."""

    infos: list[BatchInfo]
    scans: dict[int, dict[str, ColumnScan]]  # batch index -> column -> scan; only batches without problems

    def leave_out(self, problems: dict[int, list[BatchProblem]]) -> None:
        for index, found in problems.items():
            self.infos[index] = dataclasses.replace(self.infos[index], problems=self.infos[index].problems + found)
            self.scans.pop(index, None)

    def kept(self) -> list[tuple[int, str]]:
        """The kept batches as (index, uri), in order."""
        return [(index, self.infos[index].uri) for index in sorted(self.scans)]

    def columns(self) -> list[str]:
        """The kept batches' columns, in the order they first appear (as pandas.concat orders them)."""
        return list(dict.fromkeys(column for index in sorted(self.scans) for column in self.infos[index].columns))

    def merged(self, column: str) -> ColumnScan:
        merged = ColumnScan()
        for index in sorted(self.scans):
            if column in self.scans[index]:
                merged = merged.merge(self.scans[index][column])
        return merged


def require_label_inputs(scanned: Scanned, inputs: list[str], expression: str) -> None:
    """A readable batch without a column the label reads is left out (or its label would be all 0)."""
    scanned.leave_out({index: [BatchProblem(column, MISSING_COLUMN, f"the batch has no column {column!r}; the "
                                                                    f"label expression {expression!r} reads it")
                               for column in inputs if column not in scanned.infos[index].columns]
                       for index in list(scanned.scans)
                       if any(column not in scanned.infos[index].columns for column in inputs)})


def _text_in(scanned: Scanned, columns: list[str], why: str) -> dict[int, list[BatchProblem]]:
    """Per batch index: one problem for each of `columns` holding values that are not numbers."""
    problems: dict[int, list[BatchProblem]] = collections.defaultdict(list)
    for column in columns:
        for index in sorted(scanned.scans):
            scan = scanned.scans[index].get(column)
            if scan is not None and scan.non_numeric:
                problems[index].append(BatchProblem(column, WRONG_TYPE, (
                    f"{scan.non_numeric} value(s) are not numbers, such as {sample_values(scan.samples)}; {why} (a "
                    "value meaning 'no value' belongs in the config's missing_values)")))
    return problems


def typed_chunks(kept: Iterable[tuple[int, str]], kinds: dict[str, str],
                 config: DatasetConfig) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """The kept batches' rows, given as (index, uri), about CHUNK_ROWS at a time (several small batches make
    one chunk, so the per-call cost of typing is paid per chunk, not per batch): as text (every kept column,
    "" where a batch lacks one) and typed with the kinds decided over all batches, marked with the batch's
    index."""
    pending: list[pd.DataFrame] = []
    pending_rows = 0
    for index, uri in kept:
        for raw in kept_batch_chunks(index, uri, kinds):
            pending.append(raw)
            pending_rows += len(raw)
            if pending_rows >= CHUNK_ROWS:
                yield typed_chunk(pd.concat(pending, ignore_index=True), kinds, config)
                pending, pending_rows = [], 0
    if pending:
        yield typed_chunk(pd.concat(pending, ignore_index=True), kinds, config)


def kept_batch_chunks(index: int, uri: str, kinds: dict[str, str]) -> Iterator[pd.DataFrame]:
    """A kept batch's rows as text with every kept column ("" where the batch lacks one), marked with its index."""
    for raw in batch_chunks(uri):
        yield raw.reindex(columns=list(kinds), fill_value="").assign(**{BATCH_COLUMN: index})


def typed_chunk(raw: pd.DataFrame, kinds: dict[str, str], config: DatasetConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Text rows (from kept_batch_chunks) and the same rows typed with the kinds decided over all batches."""
    frame = pd.DataFrame({column: typed_column(raw[column], kinds[column], config.missing_values)
                          for column in kinds}, index=raw.index)
    frame[BATCH_COLUMN] = raw[BATCH_COLUMN].to_numpy(dtype="int32")
    return raw, frame


def labelled(typed: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """The typed rows with their label; an expression that fails on numbers throughout is the config's error."""
    try:
        typed[config.label.name] = _label(typed, config.label.expression)
    except Exception as error:  # numbers throughout: the expression itself does not fit the data set
        raise IngestError(f"label expression {config.label.expression!r} failed on the data: {error}") from error
    return typed


def _label(typed: pd.DataFrame, expression: str) -> pd.Series:
    return pd.Series(typed.eval(expression), index=typed.index).fillna(False).astype("int64")


def decide_types(scanned: Scanned, inputs: list[str], config: DatasetConfig) -> dict[str, str]:
    """The kind of every kept column, over all kept batches. A batch holding text in a column the label
    reads as numbers is left out first; so is one whose text makes the expression fail."""
    expression = config.label.expression
    reads = f"the label expression {expression!r} reads it"
    # A label input holds numbers when most of its values do, over all batches: text in one batch is then
    # damage. A column of text (`outcome == 'default'`) is left to the expression.
    numeric = [column for column in inputs if column in scanned.columns()
               and 2 * scanned.merged(column).non_numeric <= scanned.merged(column).present]
    scanned.leave_out(_text_in(scanned, numeric, f"{reads} as numbers"))
    while True:  # at most twice: after a failure, no batch with text in a label input is left
        kinds = {column: scanned.merged(column).kind() for column in scanned.columns()}
        text = [column for column in inputs if kinds.get(column) == "text"]
        if not text:  # numbers throughout: an expression that does not fit fails when labels are written
            return kinds
        try:  # the expression must hold on every row before any row is written
            for _, typed in typed_chunks(scanned.kept(), kinds, config):
                _label(typed, expression)
            return kinds
        except Exception as error:  # pandas raises many types here; all mean "the expression does not fit"
            cause = f"{reads} and fails on text: {str(error).splitlines()[0]}"
            scanned.leave_out(_text_in(scanned, text, cause))


_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "missing": pa.float64(), "text": pa.string()}


def examples_schema(kinds: dict[str, str], config: DatasetConfig) -> pa.Schema:
    """The Arrow schema of every shard, with pandas' metadata (so Int64 comes back as Int64)."""
    fields = [pa.field(column, _ARROW_TYPES[kind]) for column, kind in kinds.items()]
    fields += [pa.field(BATCH_COLUMN, pa.int32()), pa.field(config.label.name, pa.int64())]
    dtypes = {"int": "Int64", "float": "float64", "missing": "float64", "text": object}
    empty = pd.DataFrame({column: pd.Series(dtype=dtypes[kind]) for column, kind in kinds.items()}
                         | {BATCH_COLUMN: pd.Series(dtype="int32"), config.label.name: pd.Series(dtype="int64")})
    return pa.Table.from_pandas(empty, schema=pa.schema(fields), preserve_index=False).schema


def ingest(data_uri: str, config: DatasetConfig, output_dir: str | Path,
           shard_rows: int = shards.DEFAULT_SHARD_ROWS, row_filter: str = "", beam_runner: str = "DirectRunner",
           beam_pipeline_args: list[str] | None = None) -> IngestSummary:
    """Reads, types, labels and splits; writes train/eval Parquet shards and a manifest.

    Two passes over the batches, each holding one chunk of one batch at a time:
    the first finds every batch's problems and what each column holds (so a
    column is typed over all batches, as before); the second types, labels,
    splits and writes. The columns the label expression reads are checked per
    batch before it is computed, so a damaged batch is recorded and left out
    instead of failing it. A `bq://` table (with an optional `row_filter`) is read by
    dataprep.bigquery_source into the same shards. `beam_runner` and `beam_pipeline_args` choose where the
    batches are read: in this process (the DirectRunner without flags), or on Beam (dataprep.beam_ingest)."""
    from dataprep.beam_options import beam_options, runs_in_process

    on_beam = not runs_in_process(beam_runner, beam_pipeline_args)
    if on_beam:
        beam_options(beam_runner, beam_pipeline_args)  # refused by name before any work, bq:// included
    if data_uri.strip().startswith("bq://"):
        from dataprep.bigquery_source import ingest_table

        return ingest_table(data_uri, config, output_dir, shard_rows, row_filter)
    if row_filter.strip():
        raise IngestError(f"row_filter {row_filter!r} applies to a bq:// table; data_uri {data_uri!r} names files")
    if on_beam:
        from dataprep.beam_ingest import ingest_on_beam

        return ingest_on_beam(data_uri, config, output_dir, shard_rows, beam_runner, beam_pipeline_args)
    inputs = label_input_columns(config.label.expression)
    scanned = Scanned(*scan_batches(find_batches(data_uri), config.missing_values))
    require_label_inputs(scanned, inputs, config.label.expression)
    kinds = decide_types(scanned, inputs, config)
    if scanned.scans:
        split_assignment(pd.DataFrame(columns=list(kinds)), config.split_key, config.eval_percent)  # names a lack

    output = Path(output_dir)
    schema = examples_schema(kinds, config)
    label_sum = 0
    with (shards.ShardWriter(output / TRAIN_SPLIT, schema, shard_rows) as train,
          shards.ShardWriter(output / EVAL_SPLIT, schema, shard_rows) as evaluation):
        for raw, typed in typed_chunks(scanned.kept(), kinds, config):
            typed = labelled(typed, config)
            label_sum += int(typed[config.label.name].sum())
            is_eval = split_assignment(raw, config.split_key, config.eval_percent)
            train.write(pa.Table.from_pandas(typed[~is_eval], schema=schema, preserve_index=False))
            evaluation.write(pa.Table.from_pandas(typed[is_eval], schema=schema, preserve_index=False))
    return write_manifest(output, data_uri, scanned.infos, train.rows, evaluation.rows, label_sum)


def write_manifest(output: Path, data_uri: str, batches: list[BatchInfo], train_rows: int, eval_rows: int,
                   label_sum: int) -> IngestSummary:
    rows = train_rows + eval_rows
    summary = IngestSummary(data_uri=data_uri, batches=batches, rows=rows, train_rows=train_rows,
                            eval_rows=eval_rows, label_positive_rate=label_sum / rows if rows else None)
    (Path(output) / MANIFEST_FILE).write_text(json.dumps(dataclasses.asdict(summary), indent=1, allow_nan=False))
    return summary


def split_shards(examples_dir: str | Path, split: str) -> list[str]:
    """The Parquet shards of one split ("train" or "eval") of an examples (or transformed) folder,
    local or gs:// (a registered version's lineage names its examples by URI)."""
    if split not in (TRAIN_SPLIT, EVAL_SPLIT):
        raise ValueError(f"split {split!r}; expected {TRAIN_SPLIT!r} or {EVAL_SPLIT!r}")
    return shards.list_shards(storage_uri.join(str(examples_dir), split))


def load_split(examples_dir: str | Path, split: str, max_rows: int | None = None) -> pd.DataFrame:
    """A split in memory, whole or its first `max_rows` rows: for a sample, a smoke test's few rows and
    tests; the steps stream it (`shards.iter_chunks`)."""
    found = split_shards(examples_dir, split)
    batches, held = [], 0
    for chunk in shards.iter_chunks(found, chunk_rows=min(max_rows or shards.DEFAULT_CHUNK_ROWS,
                                                          shards.DEFAULT_CHUNK_ROWS)):
        batches.append(chunk.batch)
        held += chunk.batch.num_rows
        if max_rows is not None and held >= max_rows:
            break
    frame = pa.Table.from_batches(batches, schema=shards.shard_schema(found[0])).to_pandas()
    return frame if max_rows is None else frame.head(max_rows)


def load_manifest(examples_dir: str | Path) -> IngestSummary:
    raw = json.loads((Path(examples_dir) / MANIFEST_FILE).read_text())
    raw["batches"] = [BatchInfo(**batch | {"problems": [BatchProblem(**p) for p in batch.get("problems", [])]})
                      for batch in raw["batches"]]
    return IngestSummary(**raw)
