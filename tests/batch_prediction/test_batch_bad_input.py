"""Bad input of every kind: the message a person gets names what was wrong and what was expected."""

from __future__ import annotations

import pytest
from batch_helpers import keyed, sample_rows, write_csv
from test_batch_predictor import read_table

from batch_prediction.output import ERRORS, read_manifest
from batch_prediction.predictor import ModelIdentity, predict_source

IDENTITY = ModelIdentity("local/registry/taxi", "1")


def _header_only(folder, header, rows):
    (folder / "a.csv").write_text(",".join(header) + "\n")


def _zero_bytes(folder, header, rows):
    (folder / "a.csv").write_bytes(b"")


@pytest.mark.parametrize("make, error, message", [
    (lambda folder, header, rows: None, FileNotFoundError, r"no data files under .*; expected files ending in .csv"),
    (lambda folder, header, rows: write_csv(folder / "a.csv", [*header, "fare"], [[*row, "1"] for row in rows]),
     ValueError, r"a.csv: the header repeats column\(s\) fare; expected each once"),
    (lambda folder, header, rows: write_csv(folder / "a.csv", header[1:], [row[1:] for row in rows]),
     ValueError, r"a.csv: key field 'trip_id' is not a column of this shard; expected the key_field parameter"),
    (lambda folder, header, rows: (folder / "a.csv").write_bytes(b"\xff\xfetrip_id\n"),
     ValueError, r"a.csv: the header line is not UTF-8 text"),
], ids=["empty source", "duplicated header", "missing key field", "not UTF-8"])
def test_a_source_that_cannot_be_scored_is_refused(make, error, message, taxi_model, tmp_path):
    header, rows = keyed(*sample_rows(5))
    (tmp_path / "in").mkdir()
    make(tmp_path / "in", header, rows)
    with pytest.raises(error, match=message):
        predict_source(taxi_model, IDENTITY, str(tmp_path / "in"), str(tmp_path / "out"), "r", key_field="trip_id")
    assert not (tmp_path / "out" / "r").exists()


@pytest.mark.parametrize("make", [_header_only, _zero_bytes], ids=["header only", "zero bytes"])
def test_an_empty_shard_publishes_an_empty_run(make, taxi_model, tmp_path):
    (tmp_path / "in").mkdir()
    make(tmp_path / "in", *keyed(*sample_rows(1)))
    result = predict_source(taxi_model, IDENTITY, str(tmp_path / "in"), str(tmp_path / "out"), "r")
    assert (result.rows_read, result.rows_predicted) == (0, 0)
    assert read_manifest(str(tmp_path / "out"), "r")["rows"] == {"predictions": 0, "errors": 0}


def test_non_ascii_huge_and_jsonl_rows(taxi_model, tmp_path):
    header, rows = keyed(*sample_rows(6))
    rows = [list(row) for row in rows]
    rows[0][header.index("company")] = "Täxi Ünïon 出租车"
    rows[1][0] = "clé-ü-1"
    rows[2][header.index("company")] = "x" * 3_000_000  # a 3 MB cell: one huge row
    write_csv(tmp_path / "in" / "a.csv", header, rows)
    (tmp_path / "in" / "b.jsonl").write_text('{"trip_id": "j-1", "fare": 12.5, "company": "Ünïon"}\n'
                                             '{"trip_id": "j-2", "trip_start_hour": 3.5}\n[1, 2]\nnot json\n')
    result = predict_source(taxi_model, IDENTITY, str(tmp_path / "in"), str(tmp_path / "out"), "r",
                            key_field="trip_id", output_format="jsonl")
    keys = {row["key"] for row in read_table(tmp_path / "out", "r")}
    assert keys == {"trip-0", "clé-ü-1", "trip-2", "trip-3", "trip-4", "trip-5", "j-1"}
    reasons = sorted(error["reason"] for error in read_table(tmp_path / "out", "r", ERRORS))
    assert reasons == ["a JSON list; expected a JSON object per line",
                       "feature 'trip_start_hour' must be an integer (int64), got 3.5",
                       "not JSON (Expecting value); expected one JSON object per line"]
    assert result.rows_failed == 3
