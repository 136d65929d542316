import json
from pathlib import Path

import pandas as pd
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from contract.dataset import DEFAULT_MISSING_VALUES
from contract.schema import load_schema
from dataprep import validation as dv
from dataprep.ingest import find_batches, load_batches, type_columns
from tests.pipeline.conftest import (
    SAMPLE,
    SMALL_PARTITIONS,
    damage,
    drop_columns,
    duplicate_fare,
    extra_field_on_line,
    header_only,
    invalid_utf8_on_line,
    zero_bytes,
)


def _read(landing: Path, missing_values=DEFAULT_MISSING_VALUES):
    raw, batches = load_batches(find_batches(str(landing)))
    return type_columns(raw, missing_values), batches


def _rewrite(batch_csv: Path, change) -> None:
    frame = pd.read_csv(batch_csv, dtype=str, keep_default_na=False)
    change(frame).to_csv(batch_csv, index=False)


@pytest.fixture(scope="module")
def schema(dataset_config):
    return load_schema(dataset_config.schema_uri)


def test_every_shipped_batch_meets_the_reviewed_schema(dataset_config, schema):
    frame, batches = _read(SAMPLE)
    assert len(batches) == 48
    assert dv.critical(dv.validate(frame, batches, schema, dataset_config)) == []


def test_dropped_column_is_critical_and_names_the_batch(small_landing, dataset_config, schema):
    broken = small_landing / SMALL_PARTITIONS[1] / "batch.csv"
    _rewrite(broken, lambda frame: frame.drop(columns=["payment_type"]))
    anomalies = dv.validate(*_read(small_landing), schema, dataset_config)
    [missing] = [a for a in dv.critical(anomalies) if a.rule == "SCHEMA_MISSING_COLUMN"]
    assert missing.feature == "payment_type" and missing.batch == str(broken)
    with pytest.raises(dv.DataValidationError, match="payment_type: SCHEMA_MISSING_COLUMN"):
        dv.raise_on_critical(anomalies)


def test_type_change_is_critical_with_an_example_value(small_landing, dataset_config, schema):
    broken = small_landing / SMALL_PARTITIONS[0] / "batch.csv"
    _rewrite(broken, lambda frame: frame.assign(fare=frame["fare"].where(frame.index % 10 != 0, "n/a")))
    [anomaly] = dv.critical(dv.validate(*_read(small_landing), schema, dataset_config))
    assert (anomaly.feature, anomaly.rule, anomaly.batch) == ("fare", "UNEXPECTED_DATA_TYPE", str(broken))
    assert "expected FLOAT" in anomaly.description and "'n/a'" in anomaly.description
    assert "found 46 non-numeric" in anomaly.description  # one row in ten of the batch's 459


def test_unparseable_numbers_name_the_count_and_three_samples(small_landing, dataset_config, schema):
    broken = small_landing / SMALL_PARTITIONS[0] / "batch.csv"
    bad = ["n/a", "?", "twelve", "--"]
    _rewrite(broken, lambda frame: frame.assign(trip_miles=[bad[i % 4] if i < 10 else value
                                                            for i, value in enumerate(frame["trip_miles"])]))
    [anomaly] = dv.critical(dv.validate(*_read(small_landing), schema, dataset_config))
    assert (anomaly.feature, anomaly.rule, anomaly.batch) == ("trip_miles", "UNEXPECTED_DATA_TYPE", str(broken))
    assert "10 non-numeric value(s)" in anomaly.description
    assert "'n/a', '?', 'twelve'" in anomaly.description and "missing_values" in anomaly.description


def test_missing_value_markers_in_a_numeric_column_are_not_anomalies(small_landing, dataset_config, schema):
    batch = small_landing / SMALL_PARTITIONS[0] / "batch.csv"
    markers = ["NA", "null", "N/A", "NaN", ""]
    _rewrite(batch, lambda frame: frame.assign(dropoff_latitude=[
        markers[i] if i < 5 else value for i, value in enumerate(frame["dropoff_latitude"])]))
    frame, batches = _read(small_landing, dataset_config.missing_values)
    assert str(frame["dropoff_latitude"].dtype) == "float64" and frame["dropoff_latitude"].head(5).isna().all()
    assert dv.critical(dv.validate(frame, batches, schema, dataset_config)) == []


def test_unseen_categories_beyond_tolerance_are_critical_below_it_a_warning(small_landing, dataset_config, schema):
    batch = small_landing / SMALL_PARTITIONS[0] / "batch.csv"
    rows = len(pd.read_csv(batch))
    _rewrite(batch, lambda frame: frame.assign(payment_type=frame["payment_type"].where(frame.index >= 1, "Bitcoin")))
    [few] = [a for a in dv.validate(*_read(small_landing), schema, dataset_config) if a.feature == "payment_type"]
    assert few.severity == dv.WARNING and few.rule == "ENUM_TYPE_UNEXPECTED_STRING_VALUES"
    share = int(rows * 0.2)
    _rewrite(batch, lambda frame: frame.assign(payment_type=frame["payment_type"].where(frame.index >= share,
                                                                                      "Bitcoin")))
    [many] = [a for a in dv.validate(*_read(small_landing), schema, dataset_config) if a.feature == "payment_type"]
    assert many.severity == dv.CRITICAL and "'Bitcoin'" in many.description


def test_out_of_range_numbers_and_low_presence_are_critical(small_landing, dataset_config, schema):
    batch = small_landing / SMALL_PARTITIONS[0] / "batch.csv"
    _rewrite(batch, lambda frame: frame.assign(trip_start_hour="31", trip_seconds=""))
    rules = {(a.feature, a.rule) for a in dv.critical(dv.validate(*_read(small_landing), schema, dataset_config))}
    assert ("trip_start_hour", "INT_TYPE_BIG_INT") in rules
    assert ("trip_seconds", "FEATURE_TYPE_LOW_FRACTION_PRESENT") in rules


def test_new_column_is_only_a_warning(small_landing, dataset_config, schema):
    _rewrite(small_landing / SMALL_PARTITIONS[0] / "batch.csv", lambda frame: frame.assign(surge="1"))
    anomalies = dv.validate(*_read(small_landing), schema, dataset_config)
    assert [(a.feature, a.rule, a.severity) for a in anomalies] == [("surge", "SCHEMA_NEW_COLUMN", dv.WARNING)]


def test_artifacts_are_tensorflow_metadata_protos(small_landing, dataset_config, schema, tmp_path):
    frame, batches = _read(small_landing)
    stats = dv.statistics_list({"train": frame})
    fare = next(f for f in stats.datasets[0].features if f.path.step[0] == "fare")
    assert fare.num_stats.max == pytest.approx(frame["fare"].max())
    company = next(f for f in stats.datasets[0].features if f.path.step[0] == "company")
    assert company.string_stats.common_stats.num_missing == frame["company"].isna().sum()

    anomaly = dv.Anomaly("fare", "UNEXPECTED_DATA_TYPE", dv.CRITICAL, "b.csv", "text")
    proto = dv.anomalies_proto([anomaly], schema)
    assert proto.anomaly_info["fare"].severity == anomalies_pb2.AnomalyInfo.ERROR
    dv.write_validation_outputs([anomaly], schema, tmp_path)
    assert (tmp_path / "anomalies.pbtxt").read_text().count("UNEXPECTED_DATA_TYPE") >= 1


def test_inferred_schema_matches_the_reviewed_contract(dataset_config, schema):
    frame, _ = _read(SAMPLE)
    inferred = dv.infer_schema(frame, dataset_config)
    assert inferred == schema  # the committed schema is what inference gives on the shipped sample
    hour = next(f for f in inferred.feature if f.name == "trip_start_hour")
    assert (hour.type, hour.int_domain.min, hour.int_domain.max) == (schema_pb2.INT, 0, 23)


# ------------------------------------------------------- problems ingest recorded
GOOD, DAMAGED = SMALL_PARTITIONS


def _validate_ingested(landing, dataset_config, tmp_path, data_uri=None):
    from dataprep.ingest import ingest

    ingest(str(data_uri or landing), dataset_config, tmp_path / "examples")
    return dv.validate_examples(tmp_path / "examples", dataset_config, tmp_path / "statistics",
                                tmp_path / "schema", tmp_path / "anomalies")


@pytest.mark.parametrize("change, feature, rule", [
    (duplicate_fare, "fare", "FEATURE_TYPE_HIGH_NUMBER_VALUES"),
    (header_only, "", "NO_DATA_IN_SPAN"),
    (zero_bytes, "", "NO_DATA_IN_SPAN"),
    (invalid_utf8_on_line(3), "payment_type", "ENUM_TYPE_INVALID_UTF8"),
    (extra_field_on_line(3), "", "FEATURE_TYPE_HIGH_NUMBER_VALUES"),
])
def test_each_recorded_problem_stops_the_run_naming_the_batch(small_landing, dataset_config, tmp_path, change,
                                                              feature, rule):
    batch = damage(small_landing / DAMAGED / "batch.csv", change)
    with pytest.raises(dv.DataValidationError) as stopped:
        _validate_ingested(small_landing, dataset_config, tmp_path)
    first_line = str(stopped.value).splitlines()[0]
    assert (f"{feature}: {rule}" if feature else rule) in first_line
    assert str(batch) in first_line
    written = json.loads((tmp_path / "anomalies" / "anomalies.json").read_text())
    assert [(a["feature"], a["rule"], a["severity"], a["batch"]) for a in written] == [
        (feature, rule, dv.CRITICAL, str(batch))]  # the only anomaly: an unread file adds no header noise
    proto = text_format.Parse((tmp_path / "anomalies" / "anomalies.pbtxt").read_text(), anomalies_pb2.Anomalies())
    info = proto.anomaly_info[feature] if feature else proto.dataset_anomaly_info
    assert info.severity == anomalies_pb2.AnomalyInfo.ERROR and info.reason[0].type == getattr(
        anomalies_pb2.AnomalyInfo, rule)


def test_a_missing_label_input_is_reported_once_with_the_other_missing_columns(small_landing, dataset_config,
                                                                             tmp_path):
    batch = damage(small_landing / DAMAGED / "batch.csv", drop_columns("tips", "payment_type"))
    with pytest.raises(dv.DataValidationError):
        _validate_ingested(small_landing, dataset_config, tmp_path)
    written = json.loads((tmp_path / "anomalies" / "anomalies.json").read_text())
    assert sorted((a["feature"], a["rule"], a["batch"]) for a in written) == [
        ("payment_type", "SCHEMA_MISSING_COLUMN", str(batch)), ("tips", "SCHEMA_MISSING_COLUMN", str(batch))]
    [tips] = [a for a in written if a["feature"] == "tips"]
    assert "label expression" in tips["description"]  # ingest's explanation, not a second generic one


def test_a_header_only_batch_alone_stops_with_statistics_of_zero_rows(small_landing, dataset_config, tmp_path):
    batch = damage(small_landing / DAMAGED / "batch.csv", header_only)
    with pytest.raises(dv.DataValidationError, match="NO_DATA_IN_SPAN"):
        _validate_ingested(small_landing, dataset_config, tmp_path, data_uri=batch)
    stats = text_format.Parse((tmp_path / "statistics" / "statistics.pbtxt").read_text(),
                              statistics_pb2.DatasetFeatureStatisticsList())
    assert [dataset.num_examples for dataset in stats.datasets] == [0, 0]


def _config_beside(tmp_path, dataset_config) -> Path:
    """A copy of the shipped config whose schema (relative to it) lands in tmp_path."""
    config = tmp_path / "config.yaml"
    config.write_text(Path(dataset_config.source).read_text())
    return config


def test_infer_schema_treats_missing_value_markers_as_missing(small_landing, dataset_config, tmp_path, capsys):
    batch = small_landing / DAMAGED / "batch.csv"
    _rewrite(batch, lambda frame: frame.assign(trip_miles=["NA", "null", "N/A"] + list(frame["trip_miles"][3:])))
    config = _config_beside(tmp_path, dataset_config)
    assert dv.infer_schema_cli(str(small_landing), str(config)) == 0
    inferred = load_schema(tmp_path / Path(dataset_config.schema_uri).name)
    trip_miles = next(feature for feature in inferred.feature if feature.name == "trip_miles")
    assert trip_miles.type == schema_pb2.FLOAT


def test_infer_schema_refuses_unreadable_batches_and_names_them(small_landing, dataset_config, tmp_path, capsys):
    batch = damage(small_landing / DAMAGED / "batch.csv", duplicate_fare)
    config = _config_beside(tmp_path, dataset_config)
    assert dv.infer_schema_cli(str(small_landing), str(config)) == 1
    output = capsys.readouterr().out
    assert "fare: FEATURE_TYPE_HIGH_NUMBER_VALUES" in output and str(batch) in output
    assert not (tmp_path / Path(dataset_config.schema_uri).name).exists()
