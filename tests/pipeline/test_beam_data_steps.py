"""Ingest and validation on Beam (issue 23) against the in-process steps, on the DirectRunner.

The Beam graphs call the in-process steps' own functions, so the answers must be
equal: the same shards (names and rows, in order), the same manifest and problem
list, the same statistics and anomalies. Chunks and shards are small on the sample
so that it crosses many boundaries; the damaged landing runs in two worker processes
(`--direct_running_mode=multi_processing`), the form a Dataflow job takes: batches
and shards spread over workers, partial tallies merged in whatever order they come.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from contract.artifacts import ANOMALIES_JSON_FILE, MANIFEST_FILE, STATISTICS_FILE
from dataprep import beam_ingest
from dataprep import ingest as in_process
from dataprep import validation as dv
from dataprep.beam_ingest import ingest_on_beam
from dataprep.beam_validation import validate_on_beam
from tests.pipeline.conftest import (
    SAMPLE,
    copy_partitions,
    damage,
    drop_columns,
    duplicate_fare,
    extra_field_on_line,
    header_only,
    invalid_utf8_on_line,
    set_cells,
    zero_bytes,
)

CHUNK_ROWS = 499  # a prime: chunk edges fall anywhere in a batch
SHARD_ROWS = 1000
GROUP_BYTES = 150_000  # about three of the sample's batches a worker's group (a piece per group and split)
TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _cut_last_row(lines: list[bytes]) -> list[bytes]:
    """The last row loses its last three fields (a file cut off while written)."""
    return lines[:-1] + [lines[-1].rsplit(b",", 3)[0]]


# One damage per batch, the good ones around them; the last batch has unseen categories (a validation anomaly).
DAMAGES = {
    "2013/02/01/0000": duplicate_fare,
    "2013/03/01/0000": header_only,
    "2013/04/01/0000": zero_bytes,
    "2013/05/01/0000": invalid_utf8_on_line(30),
    "2013/06/01/0000": extra_field_on_line(20),
    "2013/07/01/0000": _cut_last_row,
    "2013/08/01/0000": drop_columns("tips"),  # a label input missing
    "2013/09/01/0000": set_cells("tips", {line: b"$2" for line in range(5, 9)}),  # a label input holding text
    "2013/10/01/0000": set_cells("payment_type", {line: b"Bitcoin" for line in range(2, 60, 3)}),
}
PARTITIONS = ("2013/01/01/0000", *DAMAGES, "2013/11/01/0000")


def _both_ways(root, data_uri: str, config, beam_args: list[str], chunk_rows: int | None = None):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(beam_ingest, "GROUP_BYTES", GROUP_BYTES)
        if chunk_rows:
            patch.setattr(in_process, "CHUNK_ROWS", chunk_rows)
        expected = in_process.ingest(data_uri, config, root / "in_process", shard_rows=SHARD_ROWS)
        streamed = ingest_on_beam(data_uri, config, root / "beam", SHARD_ROWS, beam_pipeline_args=beam_args)
    return expected, streamed


@pytest.fixture(scope="module")
def sample_both_ways(tmp_path_factory, dataset_config):
    root = tmp_path_factory.mktemp("beam-sample")
    expected, streamed = _both_ways(root, str(SAMPLE), dataset_config, [], CHUNK_ROWS)
    return root, expected, streamed


@pytest.fixture(scope="module")
def damaged_both_ways(tmp_path_factory, dataset_config):
    root = tmp_path_factory.mktemp("beam-damaged")
    landing = copy_partitions(root / "data", PARTITIONS)
    for partition, change in DAMAGES.items():
        damage(landing / partition / "batch.csv", change)
    # Through ingest's own switch: a Beam flag runs the Beam graph.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(beam_ingest, "GROUP_BYTES", GROUP_BYTES)
        calls = []
        patch.setattr("dataprep.beam_ingest.ingest_on_beam", lambda *args, **kwargs: calls.append(1) or
                      ingest_on_beam(*args, **kwargs))
        expected = in_process.ingest(str(landing), dataset_config, root / "in_process", shard_rows=SHARD_ROWS)
        streamed = in_process.ingest(str(landing), dataset_config, root / "beam", shard_rows=SHARD_ROWS,
                                     beam_pipeline_args=TWO_WORKERS)
        assert calls == [1]
    return root, expected, streamed


def _same_shards(root) -> None:
    for split in ("train", "eval"):
        expected = in_process.split_shards(root / "in_process", split)
        streamed = in_process.split_shards(root / "beam", split)
        assert [uri.rsplit("/", 1)[1] for uri in streamed] == [uri.rsplit("/", 1)[1] for uri in expected]
        for got, want in zip(streamed, expected, strict=True):
            assert pq.read_schema(got) == pq.read_schema(want)  # pandas' metadata too: Int64 stays Int64
            pd.testing.assert_frame_equal(pq.read_table(got).to_pandas(), pq.read_table(want).to_pandas())
    assert (root / "beam" / MANIFEST_FILE).read_text() == (root / "in_process" / MANIFEST_FILE).read_text()


def test_beam_ingest_writes_the_in_process_shards_and_manifest_on_the_sample(sample_both_ways):
    root, expected, streamed = sample_both_ways
    assert streamed == expected and expected.rows > 15_000
    assert len(beam_ingest.batch_groups([info.uri for info in expected.batches], GROUP_BYTES)) > 10
    assert len(in_process.split_shards(root / "beam", "train")) > 1
    _same_shards(root)


def test_beam_ingest_in_two_processes_reports_every_damaged_batch_as_in_process(damaged_both_ways):
    root, expected, streamed = damaged_both_ways
    assert streamed == expected
    problems = {info.uri.split("/data/processed/")[1].rsplit("/", 1)[0]: [p.rule for p in info.problems]
                for info in streamed.batches}
    assert problems == {
        "2013/01/01/0000": [], "2013/02/01/0000": ["FEATURE_TYPE_HIGH_NUMBER_VALUES"],
        "2013/03/01/0000": ["NO_DATA_IN_SPAN"], "2013/04/01/0000": ["NO_DATA_IN_SPAN"],
        "2013/05/01/0000": ["ENUM_TYPE_INVALID_UTF8"], "2013/06/01/0000": ["FEATURE_TYPE_HIGH_NUMBER_VALUES"],
        "2013/07/01/0000": ["FEATURE_TYPE_LOW_NUMBER_VALUES"], "2013/08/01/0000": ["SCHEMA_MISSING_COLUMN"],
        "2013/09/01/0000": ["UNEXPECTED_DATA_TYPE"], "2013/10/01/0000": [], "2013/11/01/0000": []}
    assert "line 30" in streamed.batches[4].problems[0].description  # the file and line are named
    assert streamed.rows == sum(info.rows for info in streamed.batches if not info.problems) > 0
    _same_shards(root)


def test_beam_ingest_types_and_labels_a_text_label_input_as_in_process(tmp_path, dataset_config):
    import dataclasses

    from contract.dataset import Label

    # payment_type is text: the expression compares it; the kinds are decided after trying it on every row.
    config = dataclasses.replace(dataset_config, label=Label("big_tipper", "payment_type == 'Credit Card'"))
    landing = copy_partitions(tmp_path / "data")
    expected, streamed = _both_ways(tmp_path, str(landing), config, [])
    assert streamed == expected and expected.label_positive_rate
    _same_shards(tmp_path)


def test_a_config_that_fits_no_data_is_refused_by_name_on_beam_too(tmp_path, dataset_config):
    import dataclasses

    config = dataclasses.replace(dataset_config, split_key=("trip_id",))  # not a column of the data
    landing = copy_partitions(tmp_path / "data")
    for run in (in_process.ingest, ingest_on_beam):
        with pytest.raises(in_process.IngestError, match=r"split key column\(s\) \['trip_id'\] not in the data"):
            run(str(landing), config, tmp_path / run.__name__)


def _validated(root, name: str, config, run) -> tuple[list, str]:
    outputs = [root / f"{name}-{kind}" for kind in ("statistics", "schema", "anomalies")]
    try:
        found, error = run(root / name, config, *outputs), ""
    except dv.DataValidationError as stopped:
        found, error = None, str(stopped)
    anomalies = json.loads((outputs[2] / ANOMALIES_JSON_FILE).read_text())
    return found, error, anomalies, (outputs[0] / STATISTICS_FILE).read_text()


def test_beam_validation_finds_the_in_process_statistics_and_anomalies_on_the_sample(sample_both_ways,
                                                                                     dataset_config):
    root, _, _ = sample_both_ways
    expected = _validated(root, "in_process", dataset_config, dv.validate_examples)
    streamed = _validated(root, "beam", dataset_config, validate_on_beam)
    assert streamed == expected
    assert expected[0] == [] and "num_stats" in expected[3]  # no anomaly; numeric statistics with histograms


def test_beam_validation_in_two_processes_stops_on_the_same_anomalies(damaged_both_ways, dataset_config):
    root, _, _ = damaged_both_ways
    expected = _validated(root, "in_process", dataset_config, dv.validate_examples)

    def on_beam(*args):
        return dv.validate_examples(*args, beam_pipeline_args=TWO_WORKERS)  # through the step's own switch

    streamed = _validated(root, "beam", dataset_config, on_beam)
    assert streamed == expected
    _, error, anomalies, _ = streamed
    assert error.startswith("8 critical data anomalies")  # a problem per damaged batch
    assert {(a["feature"], a["rule"]) for a in anomalies} >= {
        ("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"), ("tips", "SCHEMA_MISSING_COLUMN"),
        ("", "NO_DATA_IN_SPAN")}
