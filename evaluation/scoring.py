"""The Beam side of scoring: a DoFn that scores eval shards with every model, loading each model
once per worker. Its own module so that importing evaluation.gate does not import Beam."""

from __future__ import annotations

import apache_beam as beam

from contract.dataset import DatasetConfig
from evaluation.gate import Scorer, scored_batch
from storage import shards


class ScoreShards(beam.DoFn):
    """Each eval shard's rows, chunk by chunk (`storage.shards.iter_chunks`), scored by every model:
    Arrow batches as `scored_batch` makes them."""

    def __init__(self, model_uris: dict[str, str], config: DatasetConfig) -> None:
        self.model_uris, self.config = model_uris, config

    def setup(self) -> None:
        self.scorers = {model: Scorer(uri) for model, uri in self.model_uris.items()}

    def process(self, shard: str):
        for chunk in shards.iter_chunks([shard]):
            frame = chunk.batch.to_pandas()
            yield scored_batch(frame, {model: score(frame) for model, score in self.scorers.items()}, self.config)

    def teardown(self) -> None:
        for scorer in getattr(self, "scorers", {}).values():
            scorer.close()
