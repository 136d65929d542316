"""Statistics and validation on Beam: the split shards read by workers, tallied by validation's own code.

    Create(shards) -> [Reshuffle] -> ReadForStatistics    a shard per element, read a chunk at a time
      -> TallyStatistics -> MergeStatistics (per split)   validation.StatisticsTallies: counts, mean and
                                                          variance, min/max, distinct texts, quantile sketches
      -> TallyValidation -> MergeValidation               per (batch, feature): validation's _FeatureTally
    Create(shards) -> [Reshuffle] -> ReadForHistograms    a second read (the buckets need min and max: the
      -> Histograms -> MergeHistograms (per split)        merged statistics as a side input)
      -> Summarise                                        one small result for the step

Each chunk becomes a partial tally in the stage that read it, and partial tallies
merge (a CombineFn) in any order into the answer of the sequential pass: the tallies
keep where each sample and first value was found, so the merged result does not
depend on which worker read what. The launching step then builds the protos,
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
from dataprep.beam_options import DIRECT_RUNNER, BeamOptions, beam_options
from storage import uri as storage_uri

SPLITS = (TRAIN_SPLIT, EVAL_SPLIT)
_RESULT_FILE = "validation-result.pickle"


def _read(shard: tuple[int, str, int, str]):
    """(split, where, chunk) for each chunk of one shard: where = (split's rank, shard's rank, first row)
    orders the chunk as the sequential pass reads it (train, then eval)."""
    from storage import shards

    split_rank, split, shard_rank, uri = shard
    if shard_rank == 0:  # as in-process, an empty first chunk carries the columns and types of an empty split
        yield split, (split_rank, shard_rank, -1), shards.shard_schema(uri).empty_table().to_pandas()
    for chunk in shards.iter_chunks([uri]):
        first = int(chunk.rows[0]) if len(chunk.rows) else 0
        yield split, (split_rank, shard_rank, first), chunk.batch.to_pandas()


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


def _statistics_of(element):
    split, where, frame = element
    return split, dv.StatisticsTallies().add(frame, where)


def _validation_of(element, batches, schema):
    _, where, frame = element
    return dv.add_validation_tallies({}, frame, where, batches, schema)


def _histograms_of(element, statistics: dict):
    split, _, frame = element
    tallies = statistics.get(split)
    return split, (tallies.histograms(frame) if tallies is not None and tallies.needs_histograms() else {})


def _result(_, statistics: dict, histograms: dict, validation: dict, result_uri: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(result_uri) as stream:
        stream.write(pickle.dumps((statistics, histograms, validation)))


def build_validation_pipeline(pipeline, options: BeamOptions, examples_dir: str, batches, schema,
                              work_dir: str) -> str:
    """Adds statistics and validation to a Beam pipeline; returns where its result is written."""
    import apache_beam as beam

    from dataprep.ingest import split_shards

    listed = [(split_rank, split, shard_rank, options.location(uri))
              for split_rank, split in enumerate(SPLITS)
              for shard_rank, uri in enumerate(split_shards(examples_dir, split))]
    result_uri = storage_uri.join(options.location(work_dir), _RESULT_FILE)
    reshuffle = spread(options)

    def chunks(purpose: str):
        found = pipeline | f"ListShardsFor{purpose}" >> beam.Create(listed)
        if reshuffle:
            found = found | f"SpreadShardsFor{purpose}" >> beam.Reshuffle()
        return found | f"ReadFor{purpose}" >> beam.FlatMap(_read)

    first = chunks("Statistics")
    statistics = (first
                  | "TallyStatistics" >> beam.Map(_statistics_of)
                  | "MergeStatistics" >> beam.CombinePerKey(_Merge(dv.StatisticsTallies, _merge_statistics)))
    validation = (first
                  | "TallyValidation" >> beam.Map(_validation_of, batches, schema)
                  | "MergeValidation" >> beam.CombineGlobally(_Merge(dict, dv.merge_validation_tallies)))
    histograms = (chunks("Histograms")
                  | "Histograms" >> beam.Map(_histograms_of, beam.pvalue.AsDict(statistics))
                  | "MergeHistograms" >> beam.CombinePerKey(_Merge(dict, _sum_histograms)))
    _ = (pipeline
         | "Start" >> beam.Create([None])
         | "Summarise" >> beam.Map(_result, beam.pvalue.AsDict(statistics), beam.pvalue.AsDict(histograms),
                                   beam.pvalue.AsSingleton(validation), result_uri))
    return result_uri


def validate_on_beam(examples_dir: str | Path, config: DatasetConfig, statistics_dir: str | Path,
                     schema_dir: str | Path, anomalies_dir: str | Path, beam_runner: str = DIRECT_RUNNER,
                     beam_pipeline_args: list[str] | None = None) -> list[dv.Anomaly]:
    """The validate step with its passes over the rows on Beam; what it writes and raises is the in-process
    step's (`dataprep.validation.validate_examples`)."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from dataprep.ingest import load_manifest

    options = beam_options(beam_runner, beam_pipeline_args)
    started = time.perf_counter()
    batches = load_manifest(examples_dir).batches
    schema = dv.schema_for(examples_dir, config, schema_dir)
    with tempfile.TemporaryDirectory(prefix="beam-validation-") as local_work:
        temp = options.temp_location()
        work = storage_uri.join(temp, f"validation-{time.time_ns()}") if options.on_dataflow and temp else local_work
        pipeline = beam.Pipeline(options=options.pipeline_options())
        result_uri = build_validation_pipeline(pipeline, options, str(examples_dir), batches, schema, work)
        pipeline.run().wait_until_finish()
        with FileSystems.open(result_uri) as stream:
            statistics, histograms, tallies = pickle.loads(stream.read())
        if work != local_work:
            FileSystems.delete([work])
    datasets = []
    for split in SPLITS:
        split_tallies = statistics.get(split) or dv.StatisticsTallies()
        for column, counts in histograms.get(split, {}).items():
            split_tallies.columns[column].histogram += counts
        datasets.append((split, split_tallies))
    found = dv.write_outcome(datasets, tallies, batches, schema, config, statistics_dir, anomalies_dir)
    print(f"validation on Beam ({beam_runner}): {len(found)} anomalies in {time.perf_counter() - started:.1f} s")
    dv.raise_on_critical(found)
    return found
