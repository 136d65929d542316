"""Ingest on Beam: the batches under `data_uri` read, checked, typed, labelled and split by workers.

The same work as `dataprep.ingest.ingest`, done by the same functions: each stage
below calls ingest's plain-Python core (`scan_batch`, `decide_types`,
`kept_batch_chunks`, `typed_chunk`, `labelled`, `split_assignment`, `ShardWriter`),
so the answers are the same by construction and the equivalence test proves it.

    Create(batch URIs) -> [Reshuffle] -> ScanBatches        one batch per element: its problems
                                                            (file and line) and its column scans
      -> ToList -> Decide                                   one small element: label inputs checked,
                                                            kinds decided over all batches (two passes,
                                                            as in-process)
    Create(batch URIs) -> [Reshuffle] -> TypeLabelSplit     (the decision as a side input) each kept
                                                            batch typed, labelled, split, written as a
                                                            piece per split
      -> ToList -> PlanShards                               pieces -> shards of at most shard_rows rows,
                                                            in (batch, line) order: today's shards
      -> [Reshuffle] -> WriteShards -> ToList -> Summarise  the summary the launcher writes as the manifest

A batch is the unit of parallelism: a CSV file is read whole by one worker (its
header and its line checks need the file from its start). A damaged batch yields
its problems, never an exception, so it is reported and left out as in-process.
Shards are assembled from pieces (a Parquet file cannot be appended to by two
workers): memory holds a chunk, disk a batch's pieces, whatever the data's size.
"""

from __future__ import annotations

import dataclasses
import pickle
import tempfile
import time
from pathlib import Path

from contract.artifacts import EVAL_SPLIT, TRAIN_SPLIT
from contract.dataset import DatasetConfig
from dataprep.beam_options import DIRECT_RUNNER, BeamOptions, beam_options
from dataprep.ingest import (
    BatchInfo,
    ColumnScan,
    IngestError,
    IngestSummary,
    Scanned,
    decide_types,
    examples_schema,
    find_batches,
    kept_batch_chunks,
    label_input_columns,
    labelled,
    require_label_inputs,
    scan_batch,
    split_assignment,
    typed_chunk,
    write_manifest,
)
from storage import shards
from storage import uri as storage_uri

SPLITS = (TRAIN_SPLIT, EVAL_SPLIT)
_RESULT_FILE = "ingest-result.pickle"


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the second pass needs of the first: every batch's info, and the kinds of the kept columns."""

    infos: list[BatchInfo]
    kept: list[int]  # batch indexes whose rows reach the splits
    kinds: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Piece:
    """One kept batch's rows of one split, written by the worker that typed them."""

    split: str
    batch: int
    rows: int
    label_sum: int
    uri: str


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    split: str
    number: int
    parts: list[tuple[str, int, int]]  # (piece uri, first row, end row), in (batch, line) order


def spread(options: BeamOptions) -> bool:
    """Reshuffle only where there is more than one worker to spread over (in-process it costs a copy)."""
    settings = options.pipeline_options().get_all_options()
    return options.on_dataflow or (settings.get("direct_num_workers") or 1) > 1


def _decide(scanned: list[tuple[int, BatchInfo, dict[str, ColumnScan]]], config: DatasetConfig) -> Decision:
    ordered = sorted(scanned, key=lambda found: found[0])
    state = Scanned([info for _, info, _ in ordered], {index: scans for index, info, scans in ordered
                                                       if not info.problems})
    inputs = label_input_columns(config.label.expression)
    require_label_inputs(state, inputs, config.label.expression)
    kinds = decide_types(state, inputs, config)
    if state.scans:
        import pandas as pd

        split_assignment(pd.DataFrame(columns=list(kinds)), config.split_key, config.eval_percent)  # names a lack
    return Decision(state.infos, sorted(state.scans), kinds)


def _write_pieces(batch: tuple[int, str], decision: Decision, config: DatasetConfig, pieces_dir: str):
    """A kept batch typed, labelled and split, chunk by chunk, into one piece per split."""
    import pyarrow as pa

    index, uri = batch
    if index not in decision.kept:
        return
    schema = examples_schema(decision.kinds, config)
    label_sums = dict.fromkeys(SPLITS, 0)
    writers = {split: shards.ShardWriter(storage_uri.join(pieces_dir, split), schema, max_rows=2**62,
                                         prefix=f"batch-{index:06d}") for split in SPLITS}
    for raw in kept_batch_chunks(index, uri, decision.kinds):
        raw, typed = typed_chunk(raw, decision.kinds, config)
        typed = labelled(typed, config)
        is_eval = split_assignment(raw, config.split_key, config.eval_percent)
        for split, rows in ((TRAIN_SPLIT, typed[~is_eval]), (EVAL_SPLIT, typed[is_eval])):
            label_sums[split] += int(rows[config.label.name].sum())
            writers[split].write(pa.Table.from_pandas(rows, schema=schema, preserve_index=False))
    for split, writer in writers.items():
        [written] = writer.close()
        yield Piece(split, index, writer.rows, label_sums[split], written)


def _plan_shards(pieces: list[Piece], shard_rows: int):
    """Each split's rows, in (batch, line) order, cut into shards of shard_rows rows: the shards the
    in-process ingest writes. A split without rows still gets its one empty shard."""
    for split in SPLITS:
        ordered = sorted((piece for piece in pieces if piece.split == split and piece.rows), key=lambda p: p.batch)
        plans: list[ShardPlan] = []
        parts: list[tuple[str, int, int]] = []
        room = shard_rows
        for piece in ordered:
            start = 0
            while start < piece.rows:
                take = min(room, piece.rows - start)
                parts.append((piece.uri, start, start + take))
                start, room = start + take, room - take
                if not room:
                    plans.append(ShardPlan(split, len(plans), parts))
                    parts, room = [], shard_rows
        if parts or not plans:
            plans.append(ShardPlan(split, len(plans), parts))
        yield from plans


def _write_shard(plan: ShardPlan, decision: Decision, config: DatasetConfig, output_dir: str, shard_rows: int):
    """One shard from its pieces' row ranges, read a chunk at a time."""
    import pyarrow as pa

    schema = examples_schema(decision.kinds, config)
    writer = shards.ShardWriter(storage_uri.join(output_dir, plan.split), schema, max_rows=shard_rows,
                                first_shard=plan.number)
    with writer:
        for uri, first, end in plan.parts:
            for chunk in shards.iter_chunks([uri]):
                low, high = int(chunk.rows[0]), int(chunk.rows[-1]) + 1
                if high <= first or low >= end:
                    continue
                table = pa.Table.from_batches([chunk.batch])
                writer.write(table.slice(max(first - low, 0), min(end, high) - max(first, low)))
    return plan.split, writer.rows


def _result(written: list[tuple[str, int]], pieces: list[Piece], decision: Decision, result_uri: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    rows = {split: sum(count for name, count in written if name == split) for split in SPLITS}
    label_sum = sum(piece.label_sum for piece in pieces)
    with FileSystems.create(result_uri) as stream:
        stream.write(pickle.dumps((decision.infos, rows[TRAIN_SPLIT], rows[EVAL_SPLIT], label_sum)))


def build_ingest_pipeline(pipeline, options: BeamOptions, batch_uris: list[str], config: DatasetConfig,
                          output_dir: str, work_dir: str, shard_rows: int = shards.DEFAULT_SHARD_ROWS) -> str:
    """Adds the ingest to a Beam pipeline; returns where its result (infos, counts) is written. Locations
    are given to Beam as `options.location` says (gs:// on Dataflow, whose workers have no mount)."""
    import apache_beam as beam

    batches = [(index, options.location(uri)) for index, uri in enumerate(batch_uris)]
    output, work = options.location(output_dir), options.location(work_dir)
    pieces_dir, result_uri = storage_uri.join(work, "pieces"), storage_uri.join(work, _RESULT_FILE)
    reshuffle = spread(options)

    def listed(purpose: str):
        found = pipeline | f"ListBatchesFor{purpose}" >> beam.Create(batches)
        return found | f"SpreadBatchesFor{purpose}" >> beam.Reshuffle() if reshuffle else found

    decision = (listed("Scan")
                | "ScanBatches" >> beam.Map(lambda batch: (batch[0], *scan_batch(*batch, config.missing_values)))
                | "CollectScans" >> beam.combiners.ToList()
                | "Decide" >> beam.Map(_decide, config))
    pieces = (listed("Typing")
              | "TypeLabelSplit" >> beam.FlatMap(_write_pieces, beam.pvalue.AsSingleton(decision), config, pieces_dir)
              | "CollectPieces" >> beam.combiners.ToList())
    plans = pieces | "PlanShards" >> beam.FlatMap(_plan_shards, shard_rows)
    if reshuffle:
        plans = plans | "SpreadShards" >> beam.Reshuffle()
    written = (plans
               | "WriteShards" >> beam.Map(_write_shard, beam.pvalue.AsSingleton(decision), config, output, shard_rows)
               | "CollectShards" >> beam.combiners.ToList())
    _ = written | "Summarise" >> beam.Map(_result, beam.pvalue.AsSingleton(pieces), beam.pvalue.AsSingleton(decision),
                                          result_uri)
    return result_uri


def ingest_on_beam(data_uri: str, config: DatasetConfig, output_dir: str | Path,
                   shard_rows: int = shards.DEFAULT_SHARD_ROWS, beam_runner: str = DIRECT_RUNNER,
                   beam_pipeline_args: list[str] | None = None) -> IngestSummary:
    """The ingest step on Beam: the pipeline writes the shards, then this process writes the manifest
    (as in-process) from the pipeline's small result."""
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    options = beam_options(beam_runner, beam_pipeline_args)
    batch_uris = find_batches(data_uri)
    label_input_columns(config.label.expression)  # a malformed expression is refused before the job starts
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="beam-ingest-") as local_work:
        temp = options.temp_location()
        work = storage_uri.join(temp, f"ingest-{time.time_ns()}") if options.on_dataflow and temp else local_work
        pipeline = beam.Pipeline(options=options.pipeline_options())
        result_uri = build_ingest_pipeline(pipeline, options, batch_uris, config, str(output_dir), work, shard_rows)
        try:
            pipeline.run().wait_until_finish()
        except Exception as error:  # the runner wraps what a stage raised; an IngestError keeps its message
            cause = _ingest_error(error)
            if cause is not None:
                raise IngestError(cause) from error
            raise
        with FileSystems.open(result_uri) as stream:
            infos, train_rows, eval_rows, label_sum = pickle.loads(stream.read())
        if work != local_work:
            FileSystems.delete([work])
    summary = write_manifest(Path(output_dir), data_uri, infos, train_rows, eval_rows, label_sum)
    print(f"ingest on Beam ({beam_runner}): {summary.rows} rows, {len(infos)} batches in "
          f"{time.perf_counter() - started:.1f} s")
    return summary


def _ingest_error(error: BaseException) -> str | None:
    """The message of an IngestError a stage raised, however the runner wrapped it."""
    seen = error
    while seen is not None:
        if isinstance(seen, IngestError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    return text.split("IngestError: ", 1)[1].splitlines()[0] if "IngestError: " in text else None
