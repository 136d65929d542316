"""Ingest: read every `batch.csv` under `data_uri`, type it, label it, split it.

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
from pathlib import Path

import numpy as np
import pandas as pd

from contract.artifacts import EVAL_FILE, MANIFEST_FILE, TRAIN_FILE
from contract.dataset import BATCH_COLUMN, DatasetConfig
from contract.paths import BATCH_FILE_NAME, LANDING_PREFIX, PROJECT_ROOT
from storage import uri as storage_uri

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


def _repeated_columns(header: list[str], line: int) -> list[BatchProblem]:
    problems = []
    for name, count in collections.Counter(header).items():
        if count > 1:
            positions = [str(index + 1) for index, column in enumerate(header) if column == name]
            problems.append(BatchProblem(name, TOO_MANY_VALUES, (
                f"line {line}: the header names {name!r} {count} times (columns {', '.join(positions[:-1])} and "
                f"{positions[-1]}); each column must appear once, else which values are {name!r} is unknown")))
    return problems


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


def combine(batches: list[tuple[pd.DataFrame | None, BatchInfo]]) -> tuple[pd.DataFrame, list[BatchInfo]]:
    """The usable batches' rows in one frame, each marked with its batch's index in the list."""
    frames = [frame.assign(**{BATCH_COLUMN: index}) for index, (frame, _) in enumerate(batches) if frame is not None]
    infos = [info for _, info in batches]
    if not frames:
        return pd.DataFrame({BATCH_COLUMN: pd.Series(dtype="int32")}), infos
    # A batch without a column gets "" there: validation names it from BatchInfo.columns.
    return pd.concat(frames, ignore_index=True).fillna(""), infos


def load_batches(batch_uris: list[str]) -> tuple[pd.DataFrame, list[BatchInfo]]:
    return combine(read_batches(batch_uris))


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


def ingest(data_uri: str, config: DatasetConfig, output_dir: str | Path) -> IngestSummary:
    """Reads, types, labels and splits; writes train/eval Parquet and a manifest.

    The columns the label expression reads are checked per batch before it is
    computed, so a damaged batch is recorded and left out instead of failing it."""
    inputs = label_input_columns(config.label.expression)
    raw, infos = combine([_require_label_inputs(frame, info, inputs, config.label.expression)
                          for frame, info in read_batches(find_batches(data_uri))])
    raw, typed, infos = _type_and_label(raw, infos, inputs, config)
    is_eval = (split_assignment(raw, config.split_key, config.eval_percent) if len(raw)
               else np.zeros(0, dtype=bool))

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    typed[~is_eval].reset_index(drop=True).to_parquet(output / TRAIN_FILE, index=False)
    typed[is_eval].reset_index(drop=True).to_parquet(output / EVAL_FILE, index=False)
    summary = IngestSummary(
        data_uri=data_uri, batches=infos, rows=len(typed), train_rows=int((~is_eval).sum()),
        eval_rows=int(is_eval.sum()),
        label_positive_rate=float(typed[config.label.name].mean()) if len(typed) else None,
    )
    (output / MANIFEST_FILE).write_text(json.dumps(dataclasses.asdict(summary), indent=1, allow_nan=False))
    return summary


def load_split(examples_dir: str | Path, split: str) -> pd.DataFrame:
    return pd.read_parquet(Path(examples_dir) / (TRAIN_FILE if split == "train" else EVAL_FILE))


def load_manifest(examples_dir: str | Path) -> IngestSummary:
    raw = json.loads((Path(examples_dir) / MANIFEST_FILE).read_text())
    raw["batches"] = [BatchInfo(**batch | {"problems": [BatchProblem(**p) for p in batch.get("problems", [])]})
                      for batch in raw["batches"]]
    return IngestSummary(**raw)
