"""The local streaming predictor on real shards and the real SavedModel: counts, lineage, errors, reruns."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from batch_helpers import keyed, sample_rows, write_csv

from batch_prediction.output import ERRORS, MANIFEST_FILE, PREDICTIONS, output_files, read_manifest
from batch_prediction.predictor import ModelIdentity, predict_source
from batch_prediction.rows import SourceError
from serving.instances import instances_to_columns

IDENTITY = ModelIdentity("local/registry/chicago-taxi-big-tipper", "3")


def read_table(destination: Path, run_id: str, table: str = PREDICTIONS) -> list[dict]:
    files = output_files(str(destination), run_id, table)
    rows: list[dict] = []
    for file in files:
        if file.endswith(".parquet"):
            rows.extend(pq.read_table(file).to_pylist())
        else:
            rows.extend(json.loads(line) for line in Path(file).read_text().splitlines())
    return rows


@pytest.fixture
def damaged_source(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Two CSV shards with a key column; four rows in the second break the contract or the format."""
    header, rows = keyed(*sample_rows(120))
    write_csv(tmp_path / "source" / "a.csv", header, rows[:60])
    second = [list(row) for row in rows[60:]]
    fare, hour = header.index("fare"), header.index("trip_start_hour")
    second[3][fare] = "twelve dollars"  # trip-63: text for a number
    second[7][hour] = "3.5"  # trip-67: not an integer
    second[9][0] = ""  # no key
    path = write_csv(tmp_path / "source" / "b.csv", header, second)
    with open(path, "a") as file:
        file.write("trip-extra,1,2\n")  # too few fields: the format's problem
    return tmp_path / "source", {"trip-63": "fare", "trip-67": "trip_start_hour"}


def test_counts_lineage_and_errors(taxi_model, damaged_source, tmp_path):
    source, bad = damaged_source
    result = predict_source(taxi_model, IDENTITY, str(source), str(tmp_path / "out"), "run-1", key_field="trip_id")

    predictions = read_table(tmp_path / "out", "run-1")
    errors = read_table(tmp_path / "out", "run-1", ERRORS)
    assert result.rows_read == 121
    assert len(errors) == result.rows_failed == 4
    assert len(predictions) == result.rows_predicted == result.rows_read - len(errors)
    assert {row["key"] for row in predictions}.isdisjoint({"trip-63", "trip-67"})
    for row in predictions:
        assert row["key"].startswith("trip-")
        assert row["model_resource_name"] == IDENTITY.resource_name and row["model_version"] == "3"
        assert row["run_id"] == "run-1" and row["prediction_timestamp"].tzinfo is not None
        assert 0.0 <= row["prediction"] <= 1.0
    by_key = {error["key"]: error for error in errors}
    assert by_key["trip-63"]["row"] == 3 and by_key["trip-63"]["shard"].endswith("b.csv")
    assert "'fare' must be a number (float32), got string \"twelve dollars\"" in by_key["trip-63"]["reason"]
    assert "'trip_start_hour' must be an integer" in by_key["trip-67"]["reason"]
    keyless = sorted(error["reason"] for error in errors if error["key"] is None)
    assert keyless[0].startswith("3 fields; expected 19")  # the short line: no key can be read from it
    assert keyless[1] == "key field 'trip_id' is empty; expected a value that identifies the row"
    assert any(error["line"] == 62 for error in errors)
    manifest = read_manifest(str(tmp_path / "out"), "run-1")
    assert manifest["metrics"]["rows_predicted"] == 117 and manifest["metrics"]["rows_failed"] == 4


def test_predictions_equal_the_signature_called_directly(taxi_model, tmp_path):
    header, rows = keyed(*sample_rows(50))
    write_csv(tmp_path / "in" / "part.csv", header, rows)
    predict_source(taxi_model, IDENTITY, str(tmp_path / "in"), str(tmp_path / "out"), "r", key_field="trip_id")
    got = {row["key"]: row["prediction"] for row in read_table(tmp_path / "out", "r")}

    instances = [{name: _typed(row[header.index(name)], dtype) for name, dtype in taxi_model.spec.features.items()}
                 for row in rows]
    expected = taxi_model.call_blocks(taxi_model.block_tensors(instances_to_columns(instances, taxi_model.spec)))
    np.testing.assert_allclose([got[f"trip-{index}"] for index in range(50)], expected["probability"], rtol=1e-6)


def _typed(text: str, dtype: str):
    if text == "":
        return None
    return text if dtype == "string" else float(text)


def test_rerun_replaces_and_jsonl_output(taxi_model, tmp_path):
    header, rows = keyed(*sample_rows(30))
    write_csv(tmp_path / "in" / "part.csv", header, rows)
    for _ in range(2):
        predict_source(taxi_model, IDENTITY, str(tmp_path / "in"), str(tmp_path / "out"), "daily",
                       key_field="trip_id", output_format="jsonl")
    rows_out = read_table(tmp_path / "out", "daily")
    assert len(rows_out) == 30 and len({row["key"] for row in rows_out}) == 30
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["daily"]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no staging left behind
    assert set(rows_out[0]) == {"key", "prediction", "prediction_timestamp", "model_resource_name",
                                "model_version", "run_id"}
    assert (tmp_path / "out" / "daily" / MANIFEST_FILE).exists()


def test_local_bigquery_in_and_out(taxi_model, tmp_path):
    """bq:// source and destination: tables in a DuckDB file a user can query; a rerun replaces its rows."""
    from batch_prediction.local_bigquery import connect, database_path

    header, rows = keyed(*sample_rows(40))
    write_csv(tmp_path / "trips.csv", header, rows)
    with connect("my-project", tmp_path) as connection:
        connection.execute("CREATE SCHEMA taxi")
        connection.execute(f"CREATE TABLE taxi.trips AS SELECT * FROM read_csv('{tmp_path / 'trips.csv'}')")
        connection.execute("UPDATE taxi.trips SET fare = NULL WHERE trip_id = 'trip-5'")
    for run_id in ("night-1", "night-1", "night-2"):
        result = predict_source(taxi_model, IDENTITY, "bq://my-project.taxi.trips", "bq://my-project.scores",
                                run_id, key_field="trip_id", local_dir=tmp_path)
        assert result.output == "bq://my-project.scores" and result.rows_predicted == 40

    with duckdb.connect(str(database_path("my-project", tmp_path)), read_only=True) as connection:
        counts = connection.execute("SELECT run_id, count(*), count(DISTINCT key) FROM scores.predictions "
                                    "GROUP BY run_id ORDER BY run_id").fetchall()
        assert counts == [("night-1", 40, 40), ("night-2", 40, 40)]
        types = dict(connection.execute("SELECT column_name, data_type FROM information_schema.columns "
                                        "WHERE table_name = 'predictions'").fetchall())
        assert types["prediction_timestamp"] == "TIMESTAMP WITH TIME ZONE" and types["prediction"] == "DOUBLE"


def test_a_failed_run_leaves_the_previous_output(taxi_model, tmp_path):
    header, rows = keyed(*sample_rows(10))
    write_csv(tmp_path / "in" / "a.csv", header, rows)
    predict_source(taxi_model, IDENTITY, str(tmp_path / "in"), str(tmp_path / "out"), "r", key_field="trip_id")
    write_csv(tmp_path / "in" / "b.csv", [name for name in header if name != "fare"],
              [row[:2] + row[3:] for row in rows])  # b.csv has no fare column
    with pytest.raises(SourceError, match=r"b.csv: column\(s\) fare missing; the model takes"):
        predict_source(taxi_model, IDENTITY, str(tmp_path / "in"), str(tmp_path / "out"), "r", key_field="trip_id")
    assert len(read_table(tmp_path / "out", "r")) == 10
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["r"]


def test_a_key_without_key_field_names_its_row_whatever_other_rows_hold(taxi_model, tmp_path):
    """Issue 18, defect 2: with two malformed lines before it, the 22nd data row (line 23) is `#21`, not `#19`;
    a malformed row's error carries its own key; mending the bad lines renumbers nothing."""
    header, rows = sample_rows(30)
    lines = [",".join(header)] + [",".join(row) for row in rows]
    lines[4] += ",extra"  # data row 3: one field too many
    lines[11] = "1,2"  # data row 10: too few
    shard = tmp_path / "in" / "batch.csv"
    shard.parent.mkdir()
    shard.write_text("\n".join(lines) + "\n")
    predict_source(taxi_model, IDENTITY, str(shard.parent), str(tmp_path / "out"), "damaged")
    damaged = {row["key"]: row["prediction"] for row in read_table(tmp_path / "out", "damaged")}
    errors = {error["key"]: error for error in read_table(tmp_path / "out", "damaged", ERRORS)}
    assert set(errors) == {f"{shard}#3", f"{shard}#10"}
    assert (errors[f"{shard}#10"]["row"], errors[f"{shard}#10"]["line"]) == (10, 12)
    assert set(damaged) == {f"{shard}#{row}" for row in range(30)} - set(errors)

    shard.write_text("\n".join([",".join(header)] + [",".join(row) for row in rows]) + "\n")
    predict_source(taxi_model, IDENTITY, str(shard.parent), str(tmp_path / "out"), "mended")
    mended = {row["key"]: row["prediction"] for row in read_table(tmp_path / "out", "mended")}
    assert {key: mended[key] for key in damaged} == damaged  # every row kept its key and its score
    expected = taxi_model.call_blocks(taxi_model.block_tensors(instances_to_columns(
        [{name: _typed(rows[21][header.index(name)], dtype) for name, dtype in taxi_model.spec.features.items()}],
        taxi_model.spec)))["probability"]
    np.testing.assert_allclose(damaged[f"{shard}#21"], expected[0], rtol=1e-6)  # line 23's row
