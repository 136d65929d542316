from typing import NamedTuple

from kfp.dsl import Dataset, Output

from components import project_component


@project_component
def ingest_data(data_uri: str, dataset_config: str, examples: Output[Dataset]) -> NamedTuple(
        "IngestCounts", rows=int, train_rows=int, eval_rows=int, batches=int):
    """Reads every batch.csv under data_uri; writes the train/eval split."""
    from collections import namedtuple

    from contract.dataset import load_dataset_config
    from dataprep.ingest import ingest

    summary = ingest(data_uri, load_dataset_config(dataset_config), examples.path)
    examples.metadata.update(summary.counts() | {"data_uri": data_uri})
    counts = namedtuple("IngestCounts", ["rows", "train_rows", "eval_rows", "batches"])
    return counts(summary.rows, summary.train_rows, summary.eval_rows, len(summary.batches))
