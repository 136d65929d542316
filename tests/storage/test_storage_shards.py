"""storage.shards: every format read in bounded chunks, locally and from gs:// on the GCS emulator, with rows
the format cannot parse reported by shard and line instead of stopping the read."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage import shards
from tests.gcs_emulator import GcsEmulator

HEADER = "trip_id,fare,payment_type\n"


def _csv(rows: int) -> str:
    return HEADER + "".join(f"t{i},{i}.5,Cash\n" for i in range(rows))


def test_csv_chunks_are_bounded_keep_order_and_arrive_as_written_text(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(_csv(25))
    (tmp_path / "b.csv").write_text(HEADER + 't99,,"Credit, Card"\n')
    chunks = list(shards.iter_chunks(str(tmp_path), chunk_rows=10))
    assert [(Path(c.shard).name, int(c.rows[0]), c.batch.num_rows) for c in chunks] == [
        ("a.csv", 0, 10), ("a.csv", 10, 10), ("a.csv", 20, 5), ("b.csv", 0, 1)]
    assert chunks[0].batch.column("trip_id").to_pylist()[:2] == ["t0", "t1"]
    assert chunks[0].batch.schema.field("fare").type == pa.string()
    # An empty cell stays "" (missing values are the caller's call); a quoted comma stays in its field.
    assert chunks[3].batch.to_pylist() == [{"trip_id": "t99", "fare": "", "payment_type": "Credit, Card"}]


def test_csv_rows_with_the_wrong_number_of_fields_are_reported_by_line_and_the_rest_still_read(tmp_path: Path) -> None:
    (tmp_path / "batch.csv").write_text(HEADER + "t1,1.0,Cash\nt2,2.0,Cash,extra\nt3,3.0\nt4,4.0,Cash\n")
    [chunk] = shards.iter_chunks(str(tmp_path / "batch.csv"))
    assert chunk.batch.column("trip_id").to_pylist() == ["t1", "t4"]
    assert [(p.row, p.line, p.reason) for p in chunk.problems] == [
        (1, 3, "4 fields; expected 3 (the header's)"), (2, 4, "2 fields; expected 3 (the header's)")]
    assert "t2,2.0,Cash,extra" in chunk.problems[0].text
    assert chunk.rows.tolist() == [0, 3]  # t4 keeps its number: the rows left out before it still count


def test_a_rows_number_counts_every_data_row_so_bad_rows_elsewhere_move_nothing(tmp_path: Path,
                                                                                monkeypatch) -> None:
    """The 22nd data row (line 23) after two short/long lines is row 21, not 19 (issue 18, defect 2), across
    chunks and pyarrow blocks; blank lines and a quoted newline inside a record are not rows."""
    monkeypatch.setattr(shards, "CSV_BLOCK_BYTES", 64)  # many blocks: the count must hold across them
    lines = [f"t{index},{index}.5,Cash" for index in range(30)]
    lines[3] = "t3,3.5,Cash,extra"
    lines[10] = "t10"
    (tmp_path / "batch.csv").write_text(HEADER + "\n".join(lines) + "\n")
    chunks = list(shards.iter_chunks(str(tmp_path / "batch.csv"), chunk_rows=4))
    number = {row: trip for chunk in chunks
              for row, trip in zip(chunk.rows.tolist(), chunk.batch.column("trip_id").to_pylist(), strict=True)}
    assert number[21] == "t21" and all(trip == f"t{row}" for row, trip in number.items())
    assert sorted((p.row, p.line) for c in chunks for p in c.problems) == [(3, 5), (10, 12)]
    (tmp_path / "batch.csv").write_text(HEADER + 't0,0.5,"Cash\nor card"\n\nt1,1.5,Cash\nt2\nt3,3.5,Cash\n')
    [chunk] = shards.iter_chunks(str(tmp_path / "batch.csv"))
    assert chunk.rows.tolist() == [0, 1, 3] and [(p.row, p.line) for p in chunk.problems] == [(2, 4)]


@pytest.mark.parametrize(("content", "expected"), [
    (b"", None),
    (HEADER.encode(), 0),
    (b"trip_id,fare,trip_id\nt1,1,t1\n", r"repeats column\(s\) trip_id"),
    (b"trip_id,fare\n\xff\xfe,1\n", "not readable as CSV"),
])
def test_csv_edge_files(tmp_path: Path, content: bytes, expected: str | int | None) -> None:
    (tmp_path / "batch.csv").write_bytes(content)
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            list(shards.iter_chunks(str(tmp_path)))
    else:
        assert sum(c.batch.num_rows for c in shards.iter_chunks(str(tmp_path))) == (expected or 0)


def test_jsonl_reports_bad_lines_and_keeps_every_key(tmp_path: Path) -> None:
    (tmp_path / "part.jsonl").write_text('{"a": 1}\nnot json\n[1, 2]\n\n{"a": 2, "b": "é"}\n')
    [chunk] = shards.iter_chunks(str(tmp_path))
    assert chunk.batch.to_pylist() == [{"a": 1, "b": None}, {"a": 2, "b": "é"}]
    assert [(p.row, p.line) for p in chunk.problems] == [(1, 2), (2, 3)]
    assert chunk.rows.tolist() == [0, 3]  # the blank line is no row; the two bad lines are
    assert "expected one JSON object per line" in chunk.problems[0].reason


def test_parquet_and_column_selection(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": list(range(30)), "y": [float(i) for i in range(30)]}), tmp_path / "s-0.parquet",
                   row_group_size=7)
    chunks = list(shards.iter_chunks(str(tmp_path), chunk_rows=12, columns=["y"]))
    assert [c.batch.num_rows for c in chunks] == [12, 12, 6]
    assert chunks[0].batch.schema.names == ["y"] and chunks[2].batch.column("y").to_pylist()[-1] == 29.0


def test_markers_and_other_files_are_not_shards_and_an_empty_folder_says_what_it_expected(tmp_path: Path) -> None:
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "README.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no data files under .*expected files ending in \.csv"):
        shards.list_shards(str(tmp_path))
    (tmp_path / "part-0.csv").write_text(_csv(1))
    assert [Path(s).name for s in shards.list_shards(str(tmp_path))] == ["part-0.csv"]
    with pytest.raises(ValueError, match="chunk_rows=0"):
        next(shards.iter_chunks(str(tmp_path), chunk_rows=0))


def test_gcs_shards_stream_in_ranges_and_read_the_same_rows(gcs_emulator: GcsEmulator, gcs_bucket: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"trip_id": f"t{i}", "fare": i} for i in range(500)]
    gcs_emulator.upload(gcs_bucket, "in/part-0.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    gcs_emulator.upload(gcs_bucket, "in/part-1.csv", _csv(40).encode())
    gcs_emulator.upload(gcs_bucket, "in/_SUCCESS", b"")
    # Small ranges, so a shard is read in several requests rather than downloaded whole.
    monkeypatch.setattr(shards, "GCS_READ_CHUNK_BYTES", 256 * 1024)
    chunks = list(shards.iter_chunks(f"gs://{gcs_bucket}/in", chunk_rows=200))
    assert [(c.shard.rsplit("/", 1)[1], c.batch.num_rows) for c in chunks] == [
        ("part-0.jsonl", 200), ("part-0.jsonl", 200), ("part-0.jsonl", 100), ("part-1.csv", 40)]
    assert chunks[0].shard.startswith("gs://") and chunks[2].batch.column("fare").to_pylist()[-1] == 499


def test_shard_writer_rolls_bounded_shards_that_iter_chunks_reads_back_in_order(tmp_path: Path) -> None:
    schema = pa.schema([("trip_id", pa.int64()), ("fare", pa.float64())])
    with shards.ShardWriter(tmp_path / "train", schema, max_rows=4) as writer:
        for start in (0, 3, 6):  # writes that straddle shard boundaries
            writer.write(pa.table({"trip_id": list(range(start, start + 3)), "fare": [0.5] * 3}, schema=schema))
    assert [Path(shard).name for shard in shards.list_shards(str(tmp_path / "train"))] == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.read_metadata(shard).num_rows for shard in shards.list_shards(str(tmp_path / "train"))] == [4, 4, 1]
    read = [row for chunk in shards.iter_chunks(str(tmp_path / "train")) for row in chunk.batch.to_pylist()]
    assert [row["trip_id"] for row in read] == list(range(9)) and writer.rows == 9


def test_shard_writer_keeps_the_schema_without_rows_and_refuses_other_columns(tmp_path: Path) -> None:
    schema = pa.schema([("trip_id", pa.int64())])
    with shards.ShardWriter(tmp_path / "eval", schema) as writer, pytest.raises(ValueError, match="trip_id: string"):
        writer.write(pa.table({"trip_id": ["t1"]}))
    [shard] = shards.list_shards(str(tmp_path / "eval"))
    assert shards.shard_schema(shard) == schema and list(shards.iter_chunks(shard)) == []
    with pytest.raises(ValueError, match="max_rows=0"):
        shards.ShardWriter(tmp_path / "x", schema, max_rows=0)


def test_shard_writer_uploads_gs_shards_where_there_is_no_mount(gcs_emulator: GcsEmulator, gcs_bucket: str,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Dataflow worker's case (no /gcs/ mount): each shard is written to a local file, then uploaded; the
    first shard's number is given (one worker writes shards 3 and 4 of a split)."""
    monkeypatch.setenv("MLOPS_GCS_MOUNT", str(tmp_path / "no-mount"))
    schema = pa.schema([("trip_id", pa.int64())])
    with shards.ShardWriter(f"gs://{gcs_bucket}/train", schema, max_rows=4, first_shard=3) as writer:
        writer.write(pa.table({"trip_id": list(range(6))}, schema=schema))
    assert gcs_emulator.names(f"gs://{gcs_bucket}/train") == ["train/part-00003.parquet", "train/part-00004.parquet"]
    read = [row["trip_id"] for chunk in shards.iter_chunks(f"gs://{gcs_bucket}/train")
            for row in chunk.batch.to_pylist()]
    assert read == list(range(6)) and not (tmp_path / "no-mount").exists()


def test_a_failed_shard_writer_leaves_no_complete_looking_shard(tmp_path: Path) -> None:
    schema = pa.schema([("trip_id", pa.int64())])
    with pytest.raises(RuntimeError), shards.ShardWriter(tmp_path / "train", schema) as writer:
        writer.write(pa.table({"trip_id": [1, 2]}, schema=schema))
        raise RuntimeError("the step failed")
    assert list((tmp_path / "train").iterdir()) == []


def test_a_jsonl_column_of_mixed_types_turns_to_text_alone(tmp_path: Path) -> None:
    """One bad value (text in a number column) made every column JSON text, so keys came out quoted ('"a"');
    now only that column is text: strings as written, other values as their JSON."""
    (tmp_path / "part.jsonl").write_text('{"k": "a", "fare": 1.5}\n{"k": "b", "fare": "twelve"}\n'
                                         '{"k": "c", "fare": [1, 2]}\n{"k": "d"}\n')
    [chunk] = shards.iter_chunks(str(tmp_path))
    assert chunk.batch.column("k").to_pylist() == ["a", "b", "c", "d"]
    assert chunk.batch.column("fare").to_pylist() == ["1.5", "twelve", "[1, 2]", None]
