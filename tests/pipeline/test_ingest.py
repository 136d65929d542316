import json

import pandas as pd
import pytest

from contract.dataset import BATCH_COLUMN
from dataprep.ingest import (
    IngestError,
    find_batches,
    infer_column_type,
    ingest,
    label_input_columns,
    load_manifest,
    load_split,
)
from tests.pipeline.conftest import (
    SAMPLE,
    SMALL_PARTITIONS,
    damage,
    drop_columns,
    duplicate_fare,
    extra_field_on_line,
    header_only,
    invalid_utf8_on_line,
    set_cells,
    zero_bytes,
)


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


def test_type_inference_keeps_a_bad_value_visible(dataset_config):
    markers = dataset_config.missing_values
    assert str(infer_column_type(pd.Series(["1", "", "3"]), markers).dtype) == "Int64"
    assert str(infer_column_type(pd.Series(["1.5", "2"]), markers).dtype) == "float64"
    mixed = infer_column_type(pd.Series(["1.5", "abc", ""]), markers)
    assert mixed.dtype == object and mixed.iloc[1] == "abc" and mixed.iloc[2] is None


def test_a_label_input_missing_from_every_batch_leaves_no_rows_and_names_it(small_landing, dataset_config, tmp_path):
    import dataclasses

    from contract.dataset import Label

    broken = dataclasses.replace(dataset_config, label=Label("big_tipper", "no_such_column > 1"))
    summary = ingest(str(small_landing), broken, tmp_path / "examples")
    assert summary.rows == 0
    assert [(p.column, p.rule) for info in summary.batches for p in info.problems] == [
        ("no_such_column", "SCHEMA_MISSING_COLUMN")] * 2


# ------------------------------------------------------------------ damaged batches
# Ingest never crashes on a damaged batch: it records what is wrong (BatchInfo.problems, which the
# validate step turns into critical anomalies) and leaves that batch's rows out.
GOOD, DAMAGED = SMALL_PARTITIONS


def _rows(landing, partition=GOOD) -> int:
    return len((landing / partition / "batch.csv").read_bytes().splitlines()) - 1


def _only_problem(summary, batch):
    [info] = [info for info in summary.batches if info.uri == str(batch)]
    [problem] = info.problems
    return problem


def test_a_duplicated_header_is_recorded_and_the_batch_left_out(small_landing, dataset_config, tmp_path):
    batch = damage(small_landing / DAMAGED / "batch.csv", duplicate_fare)
    summary = ingest(str(small_landing), dataset_config, tmp_path / "examples")
    problem = _only_problem(summary, batch)
    assert (problem.column, problem.rule) == ("fare", "FEATURE_TYPE_HIGH_NUMBER_VALUES")
    assert "line 1" in problem.description and "columns 2 and 19" in problem.description
    assert summary.rows == _rows(small_landing)
    assert set(load_split(tmp_path / "examples", "train")[BATCH_COLUMN]) == {0}


def test_a_header_only_batch_beside_good_ones_is_recorded(small_landing, dataset_config, tmp_path):
    batch = damage(small_landing / DAMAGED / "batch.csv", header_only)
    summary = ingest(str(small_landing), dataset_config, tmp_path / "examples")
    problem = _only_problem(summary, batch)
    assert (problem.column, problem.rule) == ("", "NO_DATA_IN_SPAN")
    assert "no rows" in problem.description
    assert summary.rows == _rows(small_landing)


def test_a_header_only_batch_alone_gives_empty_outputs_and_no_nan(small_landing, dataset_config, tmp_path):
    batch = damage(small_landing / DAMAGED / "batch.csv", header_only)
    summary = ingest(str(batch), dataset_config, tmp_path / "examples")
    assert (summary.rows, summary.train_rows, summary.eval_rows) == (0, 0, 0)
    assert _only_problem(summary, batch).rule == "NO_DATA_IN_SPAN"
    # KFP artifact metadata goes through protobuf JSON, which refuses NaN; so does strict JSON.
    json.dumps(summary.counts(), allow_nan=False)

    def refuse(constant):
        raise AssertionError(f"{constant} in the manifest")

    json.loads((tmp_path / "examples" / "manifest.json").read_text(), parse_constant=refuse)
    assert len(load_split(tmp_path / "examples", "train")) == len(load_split(tmp_path / "examples", "eval")) == 0
    assert load_manifest(tmp_path / "examples").batches[0].problems[0].rule == "NO_DATA_IN_SPAN"


@pytest.mark.parametrize("change, column, rule, where", [
    (zero_bytes, "", "NO_DATA_IN_SPAN", "line 1"),
    (invalid_utf8_on_line(6), "payment_type", "ENUM_TYPE_INVALID_UTF8",
     r"line 6: 1 value(s) are not UTF-8, such as b'Cash\xe9\xff'"),
    (extra_field_on_line(7), "", "FEATURE_TYPE_HIGH_NUMBER_VALUES", "line 7 has 19 fields; the header has 18"),
    (lambda lines: lines[:-1] + [lines[-1][:20]], "", "FEATURE_TYPE_LOW_NUMBER_VALUES",
     "line 464 has 6 fields; the header has 18"),  # a file cut off in its last line
    (lambda lines: lines[:1] + [b"x" * 200_000] + lines[1:], "", "STATS_NOT_AVAILABLE",
     "line 2: not readable as CSV: field larger than field limit"),  # and no false "no rows"
])
def test_an_unreadable_file_is_recorded_with_its_line(small_landing, dataset_config, tmp_path, change, column, rule,
                                                      where):
    batch = damage(small_landing / DAMAGED / "batch.csv", change)
    summary = ingest(str(small_landing), dataset_config, tmp_path / "examples")
    problem = _only_problem(summary, batch)
    assert (problem.column, problem.rule) == (column, rule)
    assert where in problem.description
    assert summary.rows == _rows(small_landing)


def test_a_missing_label_input_is_recorded_and_other_batches_keep_their_labels(small_landing, dataset_config,
                                                                             tmp_path):
    batch = damage(small_landing / DAMAGED / "batch.csv", drop_columns("tips"))
    summary = ingest(str(small_landing), dataset_config, tmp_path / "examples")
    problem = _only_problem(summary, batch)
    assert (problem.column, problem.rule) == ("tips", "SCHEMA_MISSING_COLUMN")
    assert "'tips > 0.2 * fare'" in problem.description
    train = load_split(tmp_path / "examples", "train")
    assert set(train[BATCH_COLUMN]) == {0}
    assert (train["big_tipper"] == (train["tips"] > 0.2 * train["fare"]).astype("int64")).all()


def test_a_label_input_turned_to_text_is_recorded_with_count_and_samples(small_landing, dataset_config, tmp_path):
    text = dict(zip(range(2, 21), [b"$1.50", b"$2", b"about 3", b"$1.50"] * 5, strict=False))
    batch = damage(small_landing / DAMAGED / "batch.csv", set_cells("tips", text))
    summary = ingest(str(small_landing), dataset_config, tmp_path / "examples")
    problem = _only_problem(summary, batch)
    assert (problem.column, problem.rule) == ("tips", "UNEXPECTED_DATA_TYPE")
    assert "19 value(s)" in problem.description and "'$1.50', '$2', 'about 3'" in problem.description
    assert summary.rows == _rows(small_landing)


def test_a_label_input_that_is_text_in_its_only_batch_is_recorded(small_landing, dataset_config, tmp_path):
    batch = damage(small_landing / DAMAGED / "batch.csv", set_cells("tips", b"lots"))
    rows = _rows(small_landing, DAMAGED)
    summary = ingest(str(batch), dataset_config, tmp_path / "examples")
    problem = _only_problem(summary, batch)
    assert (problem.column, problem.rule) == ("tips", "UNEXPECTED_DATA_TYPE")
    assert f"{rows} value(s)" in problem.description and "'lots'" in problem.description
    assert summary.rows == 0


def test_missing_value_markers_count_as_missing(small_landing, dataset_config, tmp_path):
    markers = {2: b"NA", 3: b"null", 4: b"N/A", 5: b"NaN", 6: b""}
    batch = small_landing / DAMAGED / "batch.csv"
    damage(batch, set_cells("trip_miles", markers))
    damage(batch, set_cells("tips", markers))
    summary = ingest(str(small_landing), dataset_config, tmp_path / "examples")
    assert [info.problems for info in summary.batches] == [[], []]
    frame = pd.concat([load_split(tmp_path / "examples", split) for split in ("train", "eval")])
    damaged = frame[frame[BATCH_COLUMN] == 1]
    assert str(frame["trip_miles"].dtype) == "float64" and str(frame["tips"].dtype) == "float64"
    assert damaged["trip_miles"].isna().sum() == damaged["tips"].isna().sum() == 5


def test_type_inference_uses_the_configured_markers(dataset_config):
    typed = infer_column_type(pd.Series(["1", "NA", "null", "N/A", "", "3"]), dataset_config.missing_values)
    assert str(typed.dtype) == "Int64" and typed.isna().sum() == 4
    assert infer_column_type(pd.Series(["1", "NA"]), ("",)).dtype == object  # "NA" is a value unless configured


def test_label_inputs_are_read_from_the_expression():
    assert label_input_columns("tips > 0.2 * fare") == ["tips", "fare"]
    assert label_input_columns("outcome == 'default'") == ["outcome"]
    assert label_input_columns("abs(`trip total` - fare) > 1 and not flagged") == ["trip total", "fare", "flagged"]
    with pytest.raises(IngestError, match="tips >"):
        label_input_columns("tips >")
