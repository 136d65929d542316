from pathlib import Path

import pandas as pd
import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

from contract.schema import load_schema
from dataprep import validation as dv
from dataprep.ingest import find_batches, load_batches, type_columns
from tests.pipeline.conftest import SAMPLE, SMALL_PARTITIONS


def _read(landing: Path):
    raw, batches = load_batches(find_batches(str(landing)))
    return type_columns(raw), batches


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
