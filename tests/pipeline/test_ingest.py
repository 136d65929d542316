import json

import pandas as pd
import pytest

from contract.dataset import BATCH_COLUMN
from dataprep.ingest import IngestError, find_batches, infer_column_type, ingest, load_manifest, load_split
from tests.pipeline.conftest import SAMPLE, SMALL_PARTITIONS


def test_finds_one_partition_a_year_and_a_list_of_prefixes():
    assert find_batches(str(SAMPLE / SMALL_PARTITIONS[0])) == [str(SAMPLE / SMALL_PARTITIONS[0] / "batch.csv")]
    assert len(find_batches(str(SAMPLE / "2014"))) == 12
    both = find_batches(",".join(str(SAMPLE / p) for p in SMALL_PARTITIONS))
    assert [uri.split("processed/")[1] for uri in both] == [f"{p}/batch.csv" for p in SMALL_PARTITIONS]


def test_missing_or_empty_data_uri_says_what_was_expected(tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        find_batches(str(tmp_path / "nowhere"))
    with pytest.raises(IngestError, match="no batch.csv under"):
        find_batches(str(tmp_path))


def test_ingest_counts_split_and_label(small_landing, dataset_config, tmp_path):
    summary = ingest(str(small_landing), dataset_config, tmp_path / "examples")
    train, evaluation = load_split(tmp_path / "examples", "train"), load_split(tmp_path / "examples", "eval")
    assert summary.rows == len(train) + len(evaluation) == sum(b.rows for b in summary.batches)
    assert len(summary.batches) == 2
    assert 0.1 < len(evaluation) / summary.rows < 0.3  # eval_percent is 20
    expected_label = (train["tips"] > 0.2 * train["fare"]).astype("int64")
    assert (train["big_tipper"] == expected_label).all()
    assert set(train[BATCH_COLUMN]) == {0, 1}
    assert load_manifest(tmp_path / "examples").rows == summary.rows
    assert json.loads((tmp_path / "examples" / "manifest.json").read_text())["train_rows"] == len(train)


def test_split_is_stable_whichever_prefix_a_trip_arrives_under(small_landing, dataset_config, tmp_path):
    ingest(str(small_landing), dataset_config, tmp_path / "both")
    ingest(str(small_landing / SMALL_PARTITIONS[0]), dataset_config, tmp_path / "one")
    key = ["trip_start_timestamp", "fare", "trip_miles"]
    eval_both = load_split(tmp_path / "both", "eval")[key].astype(str).apply(tuple, axis=1)
    eval_one = load_split(tmp_path / "one", "eval")[key].astype(str).apply(tuple, axis=1)
    assert set(eval_one) <= set(eval_both)
    train_one = load_split(tmp_path / "one", "train")[key].astype(str).apply(tuple, axis=1)
    assert not set(train_one) & set(eval_both)


def test_type_inference_keeps_a_bad_value_visible():
    assert str(infer_column_type(pd.Series(["1", "", "3"])).dtype) == "Int64"
    assert str(infer_column_type(pd.Series(["1.5", "2"])).dtype) == "float64"
    mixed = infer_column_type(pd.Series(["1.5", "abc", ""]))
    assert mixed.dtype == object and mixed.iloc[1] == "abc" and mixed.iloc[2] is None


def test_label_expression_that_does_not_fit_the_data_is_named(small_landing, dataset_config, tmp_path):
    import dataclasses

    from contract.dataset import Label

    broken = dataclasses.replace(dataset_config, label=Label("big_tipper", "no_such_column > 1"))
    with pytest.raises(IngestError, match="no_such_column"):
        ingest(str(small_landing), broken, tmp_path / "examples")
