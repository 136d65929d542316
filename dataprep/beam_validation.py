"""Statistics and validation on Beam: the split shards read by workers, tallied by validation's own code.

    Create(shards) -> [Reshuffle] -> TallyShards          a shard per element, read a chunk at a time into
                                                          its partial tallies: validation.StatisticsTallies
                                                          (counts, mean and variance, min/max, distinct
                                                          texts, quantile sketches) and, per (batch,
                                                          feature), validation's _FeatureTally
      -> MergeStatistics (per split), MergeValidation     CombineFns over the shards' partial tallies
    Create(shards) -> [Reshuffle] -> HistogramShards      a second read (the buckets need min and max: the
      -> MergeHistograms (per split)                      numeric columns' merged tallies as a side input)
    Write{Statistics,Validation,Histograms}               each merged result written where the step reads it

Each shard (at most 250,000 rows) becomes partial tallies in the worker that read
it, and partial tallies merge in any order into the answer of the sequential pass:
the tallies keep where each sample and first value was found, so the merged result
does not depend on which worker read what. (A partial tally per chunk, rather than
per shard, made the DirectRunner hold every chunk's tallies between stages: memory
grew with the rows; so did handing the text columns' distinct values on as a side input
or to one summarising stage, which each made another copy of them.) The launching step then builds the protos,
checks the schema and raises on a critical anomaly with the same functions as the
in-process path (`dataprep.validation`).
"""

from __future__ import annotations

import pickle
import tempfile
import time
from pathlib import Path

from contract.artifacts import EVAL_SPLIT, TRAIN_SPLIT
from contract.dataset import DatasetConfig
from dataprep import validation as dv
from dataprep.beam_ingest import spread
from dataprep.beam_options import DIRECT_RUNNER, BeamOptions, beam_options, release_freed_memory
from storage import uri as storage_uri

SPLITS = (TRAIN_SPLIT, EVAL_SPLIT)


def _chunks(shard: tuple[int, str, int, str]):
    """Each chunk of one shard with where it is, (split's rank, shard's rank, first row): the order in which
    the sequential pass reads it (train, then eval)."""
    from storage import shards

    release_freed_memory()  # a worker's first shard: the peak stays flat however many it reads
    split_rank, _, shard_rank, uri = shard
    if shard_rank == 0:  # as in-process, an empty first chunk carries the columns and types of an empty split
        yield (split_rank, shard_rank, -1), shards.shard_schema(uri).empty_table().to_pandas()
    for chunk in shards.iter_chunks([uri]):
        first = int(chunk.rows[0]) if len(chunk.rows) else 0
        yield (split_rank, shard_rank, first), chunk.batch.to_pandas()


def _tally_shard(shard: tuple[int, str, int, str], batches, schema):
    """One shard's partial tallies: (split, its statistics, its validation tallies)."""
    statistics, validation = dv.StatisticsTallies(), {}
    for where, frame in _chunks(shard):
        statistics.add(frame, where)
        dv.add_validation_tallies(validation, frame, where, batches, schema)
    return shard[1], statistics, validation


def _histogram_shard(shard: tuple[int, str, int, str], statistics: dict):
    split = shard[1]
    tallies, found = statistics.get(split), {}
    if tallies is not None and tallies.needs_histograms():
        for _, frame in _chunks(shard):
            _sum_histograms(found, tallies.histograms(frame))
    return split, found


class _Merge:
    """A CombineFn over partial tallies that have `merge` (or dicts of them, merged by `merge_dicts`)."""

    def __new__(cls, make, merge):
        import apache_beam as beam

        class Merge(beam.CombineFn):
            def create_accumulator(self):
                return make()

            def add_input(self, accumulator, partial):
                return merge(accumulator, partial)

            def merge_accumulators(self, accumulators):
                accumulators = iter(accumulators)
                merged = next(accumulators)
                for accumulator in accumulators:
                    merged = merge(merged, accumulator)
                return merged

            def extract_output(self, accumulator):
                return accumulator

        return Merge()


def _merge_statistics(merged, partial):
    return merged.merge(partial)


def _sum_histograms(merged: dict, partial: dict) -> dict:
    for column, counts in partial.items():
        merged[column] = merged[column] + counts if column in merged else counts
    return merged


def _write(result, work: str, name: str) -> None:
    """One merged result, for the step to read: (split, tallies) as `{name}-{split}.pickle`, else `{name}.pickle`."""
    from apache_beam.io.filesystems import FileSystems

    split, result = result if name != "validation" else ("", result)
    with FileSystems.create(storage_uri.join(work, f"{name}{'-' + split if split else ''}.pickle")) as stream:
        stream.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))


def _read(work: str, name: str, empty):
    from apache_beam.io.filesystems import FileSystems

    uri = storage_uri.join(work, f"{name}.pickle")
    if not FileSystems.exists(uri):
        return empty
    with FileSystems.open(uri) as stream:
        return pickle.loads(stream.read())


def build_validation_pipeline(pipeline, options: BeamOptions, examples_dir: str, batches, schema,
                              work_dir: str) -> str:
    """Adds statistics and validation to a Beam pipeline; returns the folder its results are written to."""
    import apache_beam as beam

    from dataprep.ingest import split_shards

    listed = [(split_rank, split, shard_rank, options.location(uri))
              for split_rank, split in enumerate(SPLITS)
              for shard_rank, uri in enumerate(split_shards(examples_dir, split))]
    work = options.location(work_dir)
    reshuffle = spread(options)

    def shards(purpose: str):
        found = pipeline | f"ListShardsFor{purpose}" >> beam.Create(listed)
        return found | f"SpreadShardsFor{purpose}" >> beam.Reshuffle() if reshuffle else found

    partials = shards("Statistics") | "TallyShards" >> beam.Map(_tally_shard, batches, schema)
    statistics = (partials
                  | "StatisticsOfShards" >> beam.Map(lambda partial: (partial[0], partial[1]))
                  | "MergeStatistics" >> beam.CombinePerKey(_Merge(dv.StatisticsTallies, _merge_statistics)))
    validation = (partials
                  | "ValidationOfShards" >> beam.Map(lambda partial: partial[2])
                  | "MergeValidation" >> beam.CombineGlobally(_Merge(dict, dv.merge_validation_tallies)))
    bounds = statistics | "NumericBounds" >> beam.Map(lambda merged: (merged[0], merged[1].numeric_bounds()))
    histograms = (shards("Histograms")
                  | "HistogramShards" >> beam.Map(_histogram_shard, beam.pvalue.AsDict(bounds))
                  | "MergeHistograms" >> beam.CombinePerKey(_Merge(dict, _sum_histograms)))
    for name, merged in (("statistics", statistics), ("validation", validation), ("histograms", histograms)):
        _ = merged | f"Write{name.title()}" >> beam.Map(_write, work, name)
    return work


def validate_on_beam(examples_dir: str | Path, config: DatasetConfig, statistics_dir: str | Path,
                     schema_dir: str | Path, anomalies_dir: str | Path, beam_runner: str = DIRECT_RUNNER,
                     beam_pipeline_args: list[str] | None = None) -> list[dv.Anomaly]:
    """The validate step with its passes over the rows on Beam; what it writes and raises is the in-process
    step's (`dataprep.validation.validate_examples`)."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from dataprep.ingest import load_manifest

    options = beam_options(beam_runner, beam_pipeline_args)
    release_freed_memory()  # before Beam starts its workers: they inherit it
    started = time.perf_counter()
    batches = load_manifest(examples_dir).batches
    schema = dv.schema_for(examples_dir, config, schema_dir)
    with tempfile.TemporaryDirectory(prefix="beam-validation-") as local_work:
        work = options.work_location(local_work, "validation")
        pipeline = beam.Pipeline(runner=options.local_runner(), options=options.pipeline_options())
        results = build_validation_pipeline(pipeline, options, str(examples_dir), batches, schema, work)
        pipeline.run().wait_until_finish()
        datasets = []
        for split in SPLITS:
            split_tallies = _read(results, f"statistics-{split}", dv.StatisticsTallies())
            for column, counts in _read(results, f"histograms-{split}", {}).items():
                split_tallies.columns[column].histogram += counts
            datasets.append((split, split_tallies))
        tallies = _read(results, "validation", {})
        if work != local_work:
            FileSystems.delete([work])
    found = dv.write_outcome(datasets, tallies, batches, schema, config, statistics_dir, anomalies_dir)
    print(f"validation on Beam ({beam_runner}): {len(found)} anomalies in {time.perf_counter() - started:.1f} s")
    dv.raise_on_critical(found)
    return found
