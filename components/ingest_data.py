from typing import NamedTuple

from kfp.dsl import Dataset, Output

from components import project_component


@project_component
def ingest_data(data_uri: str, data_version: str, dataset_config: str, examples: Output[Dataset]) -> NamedTuple(
        "IngestCounts", rows=int, train_rows=int, eval_rows=int, batches=int):
    """Reads every batch.csv under data_uri; writes the train/eval split.

    `data_version` names the bytes under data_uri (an object generation, or a listing
    fingerprint: see docs/triggers.md). It is not read here: as an input it is part of
    this step's cache key on Vertex, so new bytes under the same data_uri are ingested
    again instead of reusing the examples of an earlier run. It is kept as lineage.
    """
    from collections import namedtuple

    from contract.dataset import load_dataset_config
    from dataprep.ingest import ingest

    summary = ingest(data_uri, load_dataset_config(dataset_config), examples.path)
    examples.metadata.update(summary.counts() | {"data_uri": data_uri, "data_version": data_version})
    counts = namedtuple("IngestCounts", ["rows", "train_rows", "eval_rows", "batches"])
    return counts(summary.rows, summary.train_rows, summary.eval_rows, len(summary.batches))
