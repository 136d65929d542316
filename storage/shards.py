"""The one way to read a data set kept as shards, in bounded chunks: memory does not grow with the data.

A data set here is a set of files (shards) under a folder or a `gs://` prefix:
Parquet (what the pipeline writes), CSV or JSONL (what users bring). Every
reader that must not hold a whole data set (statistics, training and
evaluation inputs, batch prediction) goes through `iter_chunks`, so there is one
place that knows how to list, open and stream each format, locally and on
Cloud Storage.

A row the format cannot parse (a CSV line with too many or too few fields, a
JSONL line that is not a JSON object) never stops a read: it is reported in the
chunk's `problems` with its shard, row and line, and the other rows are delivered.
What a row *means* (types, the model's input contract) is the caller's to check.

Every row has a number that does not move when other rows change: its 0-based
index among the shard's data rows, each one counted, also those the format
could not parse (CSV: every record after the header, a quoted newline inside
one record and blank lines do not count; JSONL: every non-blank line; Parquet:
every row). `Chunk.rows` holds it for each delivered row, `RowProblem.row` for
each refused one: batch prediction keys a row by it (`SHARD#ROW`).

Writing: `ShardWriter` rolls Parquet shards of at most `max_rows` rows each
under a local folder (or the `/gcs/` mount a Vertex step writes its outputs to),
so a writer holds one row group at a time, never the data set.
"""

from __future__ import annotations

import contextlib
import io
import json
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from storage import uri as storage_uri

FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
DEFAULT_CHUNK_ROWS = 8192
# Bytes per Cloud Storage range request when streaming a shard (the client's default is 40 MiB).
GCS_READ_CHUNK_BYTES = 8 * 1024 * 1024
# Rows per Parquet shard a ShardWriter writes: a shard is a unit of parallel work for Beam/Dataflow and tf.data.
DEFAULT_SHARD_ROWS = 250_000
# pyarrow's CSV block: bounds memory per read; a CSV line longer than this is refused by pyarrow.
CSV_BLOCK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class RowProblem:
    """A row the format could not parse, left out of the chunk."""

    shard: str
    row: int  # 0-based index among the shard's data rows, every one counted (see the module's docstring)
    line: int  # 1-based line in the shard (CSV: the header is line 1; pyarrow's record number, which is the
    # line unless a blank line or a quoted newline comes before)
    reason: str
    text: str = ""  # the row's text, cut to 200 characters

    def __str__(self) -> str:
        return f"{self.shard}, line {self.line}: {self.reason}"


@dataclass(frozen=True)
class Chunk:
    """At most `chunk_rows` rows of one shard, and the rows of that stretch that could not be parsed."""

    shard: str
    rows: np.ndarray  # int64, one per row of `batch`: its index among the shard's data rows, every one counted
    batch: pa.RecordBatch
    problems: tuple[RowProblem, ...] = field(default=())


def shard_format(uri: str) -> str | None:
    """'parquet', 'csv' or 'jsonl' by file name; None for anything else."""
    return FORMATS.get(posixpath.splitext(str(uri).lower())[1])


def _is_data_file(uri: str) -> bool:
    # Markers and temporary files (_SUCCESS, .part-0.tmp) are not data.
    name = posixpath.basename(str(uri))
    return not name.startswith(("_", ".")) and shard_format(uri) is not None


def list_shards(uri: str) -> list[str]:
    """The shards at `uri` (a file) or under it (a folder or prefix), sorted; FileNotFoundError when none."""
    shards = [found for found in storage_uri.list_files(uri) if _is_data_file(found)]
    if not shards:
        raise FileNotFoundError(f"no data files under {uri}; expected files ending in "
                                f"{', '.join(sorted(FORMATS))}")
    return shards


@contextlib.contextmanager
def open_shard(uri: str) -> Iterator[BinaryIO]:
    """A binary stream over one shard: a local file, or ranged reads from Cloud Storage (never the whole
    object in memory)."""
    uri = storage_uri.checked(uri)
    local = storage_uri._local(uri)  # noqa: SLF001 - the mount/local mapping lives in storage.uri
    if local is not None:
        try:
            stream = open(local, "rb")  # noqa: SIM115 - closed by the context manager
        except FileNotFoundError:
            raise FileNotFoundError(f"{uri} does not exist") from None
    else:
        bucket, name = storage_uri.split_gcs(storage_uri.canonical(uri))
        blob = storage_uri._client(uri).bucket(bucket).blob(name)  # noqa: SLF001
        stream = blob.open("rb", chunk_size=GCS_READ_CHUNK_BYTES)
    with stream:
        yield stream


def iter_chunks(source: str | Iterable[str], chunk_rows: int = DEFAULT_CHUNK_ROWS,
                columns: list[str] | None = None) -> Iterator[Chunk]:
    """Every row of every shard, in order, as chunks of at most `chunk_rows` rows.

    `source` is a folder/prefix/file URI, or shard URIs from `list_shards`.
    CSV cells arrive as text, exactly as written (the caller applies missing
    values and types); Parquet keeps its types; JSONL keeps JSON's.
    `columns` keeps only those columns (a missing one is the caller's to notice).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}; expected a positive number of rows")
    shards = list_shards(source) if isinstance(source, str) else list(source)
    for shard in shards:
        kind = shard_format(shard)
        if kind is None:
            raise ValueError(f"{shard}: not a data file; expected a name ending in {', '.join(sorted(FORMATS))}")
        yield from _READERS[kind](shard, chunk_rows, columns)


def shard_schema(uri: str) -> pa.Schema:
    """The Arrow schema of one Parquet shard (with its metadata), read from its footer: what an empty
    shard still tells a reader."""
    with open_shard(uri) as stream:
        return pq.ParquetFile(stream).schema_arrow


def _rebatched(shard: str, batches: Iterable[pa.RecordBatch], chunk_rows: int, problems: list[RowProblem],
               refused: list[int] | None = None) -> Iterator[Chunk]:
    """Batches of any size as chunks of exactly `chunk_rows` (the last may be shorter), each carrying
    the problems found while its rows were read.

    `refused`: the row numbers of the rows the reader left out so far, ascending (it grows while reading;
    the reader reports a row before it delivers any row after it). The k-th delivered row's number is k
    plus the number of refused rows before it."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    delivered = 0

    def emit(table: pa.Table) -> Chunk:
        nonlocal delivered
        batch = table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist(
            [], schema=table.schema)
        found = tuple(problems)
        problems.clear()
        positions = np.arange(delivered, delivered + table.num_rows, dtype=np.int64)
        if refused:
            # refused[j] - j: how many rows were delivered before the j-th refused one; a delivered row
            # comes after every refused row whose count is at most its own position.
            before = np.asarray(refused, dtype=np.int64) - np.arange(len(refused), dtype=np.int64)
            positions = positions + np.searchsorted(before, positions, side="right")
        delivered += table.num_rows
        return Chunk(shard, positions, batch, found)

    for batch in batches:
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield emit(table.slice(0, chunk_rows))
            rest = table.slice(chunk_rows)
            pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows or problems:
        schema = pending[0].schema if pending else pa.schema([])
        yield emit(pa.Table.from_batches(pending, schema=schema))


def _parquet_chunks(shard: str, chunk_rows: int, columns: list[str] | None) -> Iterator[Chunk]:
    with open_shard(shard) as stream:
        # pre_buffer (pyarrow's default) reads ahead every row group asked for, i.e. the whole shard: memory
        # would grow with the shard. Without it, one row group is read at a time.
        parquet = pq.ParquetFile(stream, pre_buffer=False)
        present = [name for name in columns if name in parquet.schema_arrow.names] if columns else None
        yield from _rebatched(shard, parquet.iter_batches(batch_size=chunk_rows, columns=present), chunk_rows, [])


def _csv_header(stream: BinaryIO, shard: str) -> list[str]:
    line = stream.readline()
    stream.seek(0)
    try:
        text = line.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"{shard}: the header line is not UTF-8 text") from None
    if not text.strip():
        return []
    import csv

    return next(csv.reader([text]))


def _csv_chunks(shard: str, chunk_rows: int, columns: list[str] | None) -> Iterator[Chunk]:
    problems: list[RowProblem] = []
    refused: list[int] = []

    def left_out(row: pa_csv.InvalidRow) -> str:
        # `number` is the record's 1-based number, the header being 1 (known because the read is serial).
        got = f"{row.actual_columns} fields" if row.actual_columns is not None else "a different number of fields"
        refused.append(row.number - 2)
        problems.append(RowProblem(shard, row.number - 2, row.number,
                                   f"{got}; expected {row.expected_columns} (the header's)", (row.text or "")[:200]))
        return "skip"

    with open_shard(shard) as stream:
        header = _csv_header(stream, shard)
        if not header:
            return
        if len(set(header)) != len(header):
            repeated = sorted({name for name in header if header.count(name) > 1})
            raise ValueError(f"{shard}: the header repeats column(s) {', '.join(repeated)}; expected each once")
        convert = pa_csv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            include_columns=[name for name in columns if name in header] if columns else None,
            # Cells arrive as written: "" stays "", never null, so the caller's missing_values decide.
            strings_can_be_null=False, quoted_strings_can_be_null=False)
        try:
            reader = pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
                parse_options=pa_csv.ParseOptions(invalid_row_handler=left_out),
                convert_options=convert)
            yield from _rebatched(shard, reader, chunk_rows, problems, refused)
        except pa.ArrowInvalid as error:
            raise ValueError(f"{shard}: not readable as CSV ({error}); expected UTF-8 comma-separated "
                             "rows under one header line") from None


def _jsonl_chunks(shard: str, chunk_rows: int, columns: list[str] | None) -> Iterator[Chunk]:
    problems: list[RowProblem] = []
    rows: list[dict] = []
    numbers: list[int] = []
    data_rows = 0  # non-blank lines so far: every one is a data row, parsed or not

    def chunk() -> Chunk:
        made = Chunk(shard, np.asarray(numbers, dtype=np.int64), _from_rows(rows, columns), tuple(problems))
        rows.clear()
        numbers.clear()
        problems.clear()
        return made

    with open_shard(shard) as stream:
        lines = io.TextIOWrapper(stream, encoding="utf-8", errors="strict")
        try:
            for number, raw in enumerate(lines, start=1):
                if not raw.strip():
                    continue
                data_rows += 1
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as error:
                    problems.append(RowProblem(shard, data_rows - 1, number, f"not JSON ({error.msg}); expected "
                                               "one JSON object per line", raw[:200]))
                    continue
                if not isinstance(row, dict):
                    problems.append(RowProblem(shard, data_rows - 1, number, f"a JSON {type(row).__name__}; "
                                               "expected a JSON object per line", raw[:200]))
                    continue
                rows.append(row)
                numbers.append(data_rows - 1)
                if len(rows) >= chunk_rows:
                    yield chunk()
        except UnicodeDecodeError:
            raise ValueError(f"{shard}: not UTF-8 text; expected UTF-8 JSON lines") from None
        if rows or problems:
            yield chunk()


def _from_rows(rows: list[dict], columns: list[str] | None) -> pa.RecordBatch:
    names = columns or list(dict.fromkeys(name for row in rows for name in row))
    arrays = []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Mixed JSON types in one column (1 and "twelve"): every value as text, a string as it is, any other
            # value as its JSON text; the caller's contract check decides what is acceptable. The other
            # columns keep their types (a key column stays the keys as written).
            arrays.append(pa.array([value if value is None or isinstance(value, str) else json.dumps(value)
                                    for value in values], pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=names)


_READERS = {"parquet": _parquet_chunks, "csv": _csv_chunks, "jsonl": _jsonl_chunks}


class ShardWriter:
    """Writes rows as Parquet shards `{prefix}-00000.parquet`, `{prefix}-00001.parquet`, ... under `folder`,
    each at most `max_rows` rows, all with `schema`.

    Each `write` appends row groups to the open shard and rolls to a new one when
    it is full. `close` (or leaving the `with` block) returns the shards written;
    with no row at all it writes one empty shard, so a reader still finds the
    columns and their types. A shard is written under a temporary name
    (`.{name}.tmp`, which `list_shards` ignores) and renamed when complete.
    `first_shard` numbers the first shard (a Beam worker writing one shard of many).

    A `gs://` folder (a Dataflow worker, which has no `/gcs/` mount) is written through a local temporary
    file, uploaded when the shard is complete: disk holds one shard, memory one row group.
    """

    def __init__(self, folder: str | Path, schema: pa.Schema, max_rows: int = DEFAULT_SHARD_ROWS,
                 prefix: str = "part", first_shard: int = 0) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows={max_rows}; expected a positive number of rows per shard")
        folder = storage_uri.checked(str(folder))
        self._gcs = storage_uri.is_gcs(folder) and not storage_uri.gcs_mount().is_dir()
        if self._gcs:
            import tempfile

            self._uri = folder.rstrip("/")
            self._scratch = tempfile.TemporaryDirectory(prefix="shards-")
            self.folder = Path(self._scratch.name)
        else:
            self.folder = storage_uri.mounted_path(folder) if storage_uri.is_gcs(folder) else Path(folder)
            self.folder.mkdir(parents=True, exist_ok=True)
        self.schema, self.max_rows, self.prefix, self.first_shard = schema, max_rows, prefix, first_shard
        self.rows = 0
        self._shards: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_shard = 0

    def _open(self) -> None:
        name = f"{self.prefix}-{self.first_shard + len(self._shards):05d}.parquet"
        self._temporary = self.folder / f".{name}.tmp"
        self._writer = pq.ParquetWriter(self._temporary, self.schema)
        self._shards.append(f"{self._uri}/{name}" if self._gcs else str(self.folder / name))
        self._rows_in_shard = 0

    def _finish(self) -> None:
        self._writer.close()
        if self._gcs:
            bucket, name = storage_uri.split_gcs(self._shards[-1])
            storage_uri._client(self._shards[-1]).bucket(bucket).blob(name).upload_from_filename(  # noqa: SLF001
                str(self._temporary))
            self._temporary.unlink()
        else:
            self._temporary.rename(self._shards[-1])
        self._writer = None

    def write(self, rows: pa.RecordBatch | pa.Table) -> None:
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_batches([rows])
        if not table.schema.equals(self.schema, check_metadata=False):
            raise ValueError(f"rows for {self.folder} have columns {table.schema}; the shards' are {self.schema}")
        while table.num_rows:
            if self._writer is None:
                self._open()
            room = self.max_rows - self._rows_in_shard
            part, table = table.slice(0, room), table.slice(room)
            self._writer.write_table(part)
            self._rows_in_shard += part.num_rows
            self.rows += part.num_rows
            if self._rows_in_shard == self.max_rows:
                self._finish()

    def close(self) -> list[str]:
        if not self._shards:  # no row: one empty shard carries the schema
            self._open()
        if self._writer is not None:
            self._finish()
        return list(self._shards)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
        elif self._writer is not None:  # a failed write leaves no shard that looks complete
            self._writer.close()
            self._temporary.unlink(missing_ok=True)
            self._shards.pop()
