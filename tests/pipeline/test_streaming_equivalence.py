"""The streaming steps (issue 11) against the in-memory path they replaced, on the shipped sample.

Chunks and shards are made small here, so that the sample crosses many chunk
and shard boundaries: what holds at these sizes holds at any.
"""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from contract.schema import load_schema
from dataprep import ingest as streaming
from dataprep import validation as dv
from dataprep.ingest import load_split
from tests.pipeline import in_memory_reference as reference
from tests.pipeline.conftest import (
    SAMPLE,
    SMALL_PARTITIONS,
    damage,
    duplicate_fare,
    extra_field_on_line,
    invalid_utf8_on_line,
    set_cells,
)

CHUNK_ROWS = 97  # a prime: chunk edges fall anywhere in a batch
SHARD_ROWS = 1000


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(streaming, "CHUNK_ROWS", CHUNK_ROWS)


def _same_split(streamed: pd.DataFrame, expected: pd.DataFrame) -> None:
    # Rows come out batch by batch in both paths: the same order, not only the same set.
    pd.testing.assert_frame_equal(streamed.reset_index(drop=True), expected.reset_index(drop=True))


@pytest.fixture(scope="module")
def sample_ingested(tmp_path_factory, dataset_config):
    folder = tmp_path_factory.mktemp("streamed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(streaming, "CHUNK_ROWS", CHUNK_ROWS)
        summary = streaming.ingest(str(SAMPLE), dataset_config, folder, shard_rows=SHARD_ROWS)
    return summary, folder


def test_streaming_ingest_equals_the_in_memory_path_on_the_sample(sample_ingested, dataset_config):
    summary, folder = sample_ingested
    expected, train, evaluation = reference.ingest(str(SAMPLE), dataset_config)
    assert summary == expected
    assert len(streaming.split_shards(folder, "train")) == -(-len(train) // SHARD_ROWS) > 1
    _same_split(load_split(folder, "train"), train)
    _same_split(load_split(folder, "eval"), evaluation)


def test_streaming_ingest_records_the_same_problems_wherever_a_chunk_ends(small_landing, dataset_config, tmp_path,
                                                                          small_chunks):
    good, damaged = (small_landing / partition / "batch.csv" for partition in SMALL_PARTITIONS)
    damage(good, invalid_utf8_on_line(300))  # beyond the first chunks
    damage(good, extra_field_on_line(250))
    damage(good, extra_field_on_line(401))
    copy = small_landing / "2014/05/01/0000"
    copy.mkdir(parents=True)
    (copy / "batch.csv").write_bytes(damaged.read_bytes())
    damage(copy / "batch.csv", duplicate_fare)
    damage(damaged, set_cells("tips", {line: b"$2" for line in range(150, 160)}))
    summary = streaming.ingest(str(small_landing), dataset_config, tmp_path / "examples", shard_rows=SHARD_ROWS)
    expected, train, evaluation = reference.ingest(str(small_landing), dataset_config)
    assert summary == expected
    assert [[problem.rule for problem in info.problems] for info in summary.batches] == [
        ["ENUM_TYPE_INVALID_UTF8", "FEATURE_TYPE_HIGH_NUMBER_VALUES"], ["UNEXPECTED_DATA_TYPE"],
        ["FEATURE_TYPE_HIGH_NUMBER_VALUES"]]
    assert "line 250 has 19 fields; the header has 18 (1 more such row(s))" in \
        summary.batches[0].problems[1].description
    assert train.empty and load_split(tmp_path / "examples", "train").empty


def test_a_text_label_input_types_and_labels_as_before(small_landing, dataset_config, tmp_path, small_chunks):
    import dataclasses

    from contract.dataset import Label

    # payment_type is text in every batch: the expression compares it, and no batch is left out.
    config = dataclasses.replace(dataset_config, label=Label("big_tipper", "payment_type == 'Credit Card'"))
    summary = streaming.ingest(str(small_landing), config, tmp_path / "examples")
    expected, train, _ = reference.ingest(str(small_landing), config)
    assert summary == expected and summary.rows > 0
    _same_split(load_split(tmp_path / "examples", "train"), train)


# ------------------------------------------------------------------ statistics and validation
def _both(folder):
    return pd.concat([load_split(folder, "train"), load_split(folder, "eval")])


def _streamed_both(folder):
    train, evaluation = dv.split_frames(folder, "train"), dv.split_frames(folder, "eval")
    return lambda: itertools.chain(train(), evaluation())


def test_streaming_statistics_equal_the_in_memory_ones(sample_ingested):
    _, folder = sample_ingested
    for split in ("train", "eval"):
        frame = load_split(folder, split)
        [streamed] = dv.statistics_list({split: dv.split_frames(folder, split)}).datasets
        [expected] = reference.statistics_list({split: frame}).datasets
        assert streamed.num_examples == expected.num_examples == len(frame)
        for got, want in zip(streamed.features, expected.features, strict=True):
            name = want.path.step[0]
            if want.HasField("num_stats"):
                present = frame[name].dropna().astype("float64").to_numpy()
                assert got.num_stats.mean == pytest.approx(want.num_stats.mean, rel=1e-9, abs=1e-12)
                assert got.num_stats.std_dev == pytest.approx(want.num_stats.std_dev, rel=1e-9, abs=1e-12)
                # The median comes from a quantiles sketch (as in TFDV): its rank is within the sketch's error.
                if len(present):
                    below = (present < got.num_stats.median).mean()
                    at_most = (present <= got.num_stats.median).mean()
                    assert below - 0.01 <= 0.5 <= at_most + 0.01, name
                for stats in (got.num_stats, want.num_stats):
                    stats.ClearField("mean"), stats.ClearField("std_dev"), stats.ClearField("median")
            else:
                assert got.string_stats.avg_length == pytest.approx(want.string_stats.avg_length, rel=1e-12)
                got.string_stats.ClearField("avg_length"), want.string_stats.ClearField("avg_length")
            assert got == want  # counts, min, max, zeros, histograms, top values: identical


def test_streaming_schema_inference_equals_the_in_memory_one_and_the_reviewed_schema(sample_ingested,
                                                                                      dataset_config):
    _, folder = sample_ingested
    streamed = dv.infer_schema(_streamed_both(folder), dataset_config)
    assert streamed == reference.infer_schema(_both(folder), dataset_config)
    assert streamed == load_schema(dataset_config.schema_uri)


def test_streaming_validation_finds_the_same_anomalies_in_every_chunk(small_landing, dataset_config, tmp_path):
    first, second = (small_landing / partition / "batch.csv" for partition in SMALL_PARTITIONS)
    damage(first, set_cells("payment_type", {line: b"Bitcoin" for line in range(2, 400, 9)}))
    damage(first, set_cells("trip_start_hour", {line: b"31" for line in range(300, 306)}))
    damage(second, set_cells("trip_miles", {line: b"n/a" for line in range(100, 400, 50)}))
    damage(second, set_cells("trip_seconds", {line: b"" for line in range(2, 300)}))
    damage(second, set_cells("pickup_latitude", {line: b"50.1" for line in range(2, 40)}))
    summary = streaming.ingest(str(small_landing), dataset_config, tmp_path / "examples", shard_rows=50)
    schema = load_schema(dataset_config.schema_uri)
    streamed = dv.validate(_streamed_both(tmp_path / "examples"), summary.batches, schema, dataset_config)
    expected = reference.validate(_both(tmp_path / "examples"), summary.batches, schema, dataset_config)
    assert streamed == expected
    assert {(a.feature, a.rule) for a in streamed} >= {
        ("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"), ("trip_start_hour", "INT_TYPE_BIG_INT"),
        ("trip_miles", "UNEXPECTED_DATA_TYPE"), ("trip_seconds", "FEATURE_TYPE_LOW_FRACTION_PRESENT"),
        ("pickup_latitude", "FLOAT_TYPE_BIG_FLOAT")}


# ------------------------------------------------------------------ transform
def _sorted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a canonical order (Beam does not keep row order across shards), floats rounded only
    for ordering, so that values equal within float tolerance sort alike."""
    key = frame.round(4)
    order = key.sort_values(list(key.columns), kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def _flat(path) -> pd.DataFrame:
    """A transformed Parquet file as flat columns (the in-memory path wrote one-value lists)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return pd.DataFrame({name: (column.combine_chunks().flatten() if hasattr(column.type, "value_type")
                                else column.combine_chunks()).to_numpy() for name, column in
                         zip(table.column_names, table.columns, strict=True)})


@pytest.fixture(scope="module")
def sample_transformed(sample_ingested, dataset_config, tmp_path_factory):
    """The sample transformed both ways: the streaming Beam pipeline and the in-memory reference."""
    from dataprep.isolation import run_isolated
    from dataprep.transform import run_transform

    _, examples = sample_ingested
    root = tmp_path_factory.mktemp("transformed")
    arguments = (str(examples), str(dataset_config.source), str(dataset_config.schema_uri))
    streamed = run_transform(*arguments, str(root / "graph"), str(root / "streamed"))
    expected = run_isolated("tests.pipeline.in_memory_reference:analyze_and_transform", examples_dir=arguments[0],
                            dataset_config=arguments[1], schema_path=arguments[2],
                            transform_graph_dir=str(root / "reference_graph"),
                            transformed_dir=str(root / "reference"))
    return {"root": root, "streamed": streamed, "expected": expected}


def test_streaming_transform_equals_the_in_memory_one_on_the_sample(sample_transformed):
    root = sample_transformed["root"]
    streamed, expected = sample_transformed["streamed"], sample_transformed["expected"]
    assert (streamed["train_rows"], streamed["eval_rows"]) == (expected["train_rows"], expected["eval_rows"])
    assert streamed["transformed_features"] == expected["transformed_features"]
    assert sorted(path.name for path in (root / "graph" / "transform_fn" / "assets").iterdir()) == sorted(
        path.name for path in (root / "reference_graph" / "transform_fn" / "assets").iterdir())
    for asset in (root / "graph" / "transform_fn" / "assets").iterdir():  # vocabularies: identical
        assert asset.read_bytes() == (root / "reference_graph" / "transform_fn" / "assets" / asset.name).read_bytes()
    for split in ("train", "eval"):
        got = _sorted_rows(load_split(root / "streamed", split))
        want = _sorted_rows(_flat(root / "reference" / f"{split}.parquet")[list(got.columns)])
        assert len(got) == len(want) > 0
        pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ training input
def test_training_streams_every_transformed_row_once_per_epoch(sample_transformed, dataset_config):
    import numpy as np

    from trainer.train import transformed_dataset

    root = sample_transformed["root"] / "streamed"
    label = dataset_config.label.name
    expected = load_split(root, "train")
    names = [column for column in expected.columns if column != label]
    for seed in (None, 7):  # in shard order, then shuffled
        features, labels = [], []
        for batch_features, batch_labels in transformed_dataset(str(root), "train", names, label, 1000, seed):
            features.append(np.hstack([batch_features[name].numpy() for name in names]))
            labels.append(batch_labels.numpy())
        got = pd.DataFrame(np.vstack(features), columns=names).assign(**{label: np.concatenate(labels)})
        assert len(got) == len(expected)
        pd.testing.assert_frame_equal(_sorted_rows(got), _sorted_rows(expected[[*names, label]]), check_dtype=False)
        if seed is not None:
            assert not np.array_equal(got[label].to_numpy(), expected[label].to_numpy())  # shuffled


# ------------------------------------------------------------------ evaluation
def test_streaming_evaluation_equals_the_in_memory_one_on_the_sample(sample_ingested, sample_transformed,
                                                                    dataset_config, tmp_path):
    from evaluation.gate import Thresholds, evaluate_examples, predict
    from trainer.train import train_and_export

    _, examples = sample_ingested
    root = sample_transformed["root"]
    train_and_export(str(root / "streamed"), str(root / "graph"), str(dataset_config.source),
                     str(dataset_config.schema_uri), str(tmp_path / "model"), {"epochs": 1})
    thresholds = Thresholds(gate=dataset_config.gate)
    model = str(tmp_path / "model")
    # The model is its own champion too: both TFMA branches of the one pipeline run.
    streamed = evaluate_examples(str(examples), model, model, dataset_config, thresholds, str(tmp_path / "s"))
    frame = load_split(examples, "eval")
    scores = predict(model, frame)
    expected = reference.evaluate(frame, scores, scores, dataset_config, thresholds, str(tmp_path / "r"))
    assert (streamed.blessed, streamed.failures, streamed.confusion) == (
        expected.blessed, expected.failures, expected.confusion)
    assert streamed.metrics.keys() == expected.metrics.keys() and len(streamed.metrics) > 10  # slices
    for name, by_model in expected.metrics.items():
        for model_name, values in by_model.items():
            assert streamed.metrics[name][model_name] == pytest.approx(values, rel=1e-6, abs=1e-9, nan_ok=True)
    for curves in ("roc", "calibration"):
        for model_name, points in getattr(expected, curves).items():
            for axis, values in points.items():
                assert getattr(streamed, curves)[model_name][axis] == pytest.approx(values, rel=1e-6, abs=1e-9)
