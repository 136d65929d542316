from typing import NamedTuple

from kfp.dsl import Dataset, Output

from components import project_component


@project_component
def ingest_data(data_uri: str, data_version: str, dataset_config: str, row_filter: str,
                examples: Output[Dataset], beam_runner: str = "DirectRunner",
                beam_pipeline_args: list = []) -> NamedTuple(  # noqa: B006 (KFP default)
        "IngestCounts", rows=int, train_rows=int, eval_rows=int, batches=int):
    """Reads every batch.csv under data_uri, or the rows of a bq:// table snapshot that `row_filter`
    selects; writes the train/eval split.

    `data_version` names the bytes under data_uri (an object generation, a listing
    fingerprint, or a BigQuery snapshot's name and time: see docs/triggers.md). It is not
    read here: as an input it is part of this step's cache key on Vertex, so new bytes
    under the same data_uri are ingested again instead of reusing the examples of an
    earlier run. It is kept as lineage.

    `beam_runner` and `beam_pipeline_args` choose where the batches are read (dataprep.beam_options:
    this process for the DirectRunner without flags, else the Beam graph of dataprep.beam_ingest).
    """
    from collections import namedtuple

    from contract.dataset import load_dataset_config
    from dataprep.ingest import ingest

    summary = ingest(data_uri, load_dataset_config(dataset_config), examples.path, row_filter=row_filter,
                     beam_runner=beam_runner, beam_pipeline_args=beam_pipeline_args)
    examples.metadata.update(summary.counts() | {"data_uri": data_uri, "data_version": data_version}
                             | ({"row_filter": row_filter} if row_filter else {}))
    counts = namedtuple("IngestCounts", ["rows", "train_rows", "eval_rows", "batches"])
    return counts(summary.rows, summary.train_rows, summary.eval_rows, len(summary.batches))
