"""Ingest on Beam: the batches under `data_uri` read, checked, typed, labelled and split by workers.

The same work as `dataprep.ingest.ingest`, done by the same functions: each stage
below calls ingest's plain-Python core (`scan_group`, `decide_types`,
`typed_chunks`, `labelled`, `split_assignment`, `ShardWriter`), so the answers
are the same by construction and the equivalence test proves it.

    Create(batch groups) -> [Reshuffle] -> ScanBatches      a group of batches per element: their
                                                            problems (file and line), column scans
      -> ToList -> Decide                                   one small element: label inputs checked,
                                                            kinds decided over all batches (two passes,
                                                            as in-process)
    Create(batch groups) -> [Reshuffle] -> TypeLabelSplit   (the decision as a side input) each group's
                                                            kept batches typed, labelled, split, written
                                                            as a piece per split
      -> ToList -> PlanShards                               pieces -> shards of at most shard_rows rows,
                                                            in (batch, line) order: today's shards
      -> [Reshuffle] -> WriteShards -> ToList -> Summarise  the summary the launcher writes as the manifest

A batch is the unit of parallelism: a CSV file is read whole by one worker (its
header and its line checks need the file from its start). Consecutive small
batches are grouped up to GROUP_BYTES, so that the per-call cost of pandas is
paid per chunk of rows, not per file (960 files of 300 rows took 6x as long one
by one). A damaged batch yields its problems, never an exception, so it is
reported and left out as in-process.
Shards are assembled from pieces (a Parquet file cannot be appended to by two
workers): memory holds a chunk whatever the data's size; the pieces (the rows once more, as Parquet) wait
on disk, or under the job's temp_location, until the shards are written.
"""

from __future__ import annotations

import dataclasses
import pickle
import tempfile
import time
from pathlib import Path

from contract.artifacts import EVAL_SPLIT, TRAIN_SPLIT
from contract.dataset import DatasetConfig
from dataprep.beam_options import DIRECT_RUNNER, BeamOptions, beam_options, release_freed_memory
from dataprep.ingest import (
    BatchInfo,
    ColumnScan,
    IngestError,
    IngestSummary,
    Scanned,
    decide_types,
    examples_schema,
    find_batches,
    label_input_columns,
    labelled,
    require_label_inputs,
    scan_group,
    split_assignment,
    typed_chunks,
    write_manifest,
)
from storage import shards
from storage import uri as storage_uri

SPLITS = (TRAIN_SPLIT, EVAL_SPLIT)
# Consecutive batches are read by one worker up to this many bytes (about 50,000 rows of the sample's kind).
GROUP_BYTES = 8 * 1024 * 1024
_RESULT_FILE = "ingest-result.pickle"


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the second pass needs of the first: every batch's info, and the kinds of the kept columns."""

    infos: list[BatchInfo]
    kept: list[int]  # batch indexes whose rows reach the splits
    kinds: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Piece:
    """A group's kept rows of one split, written by the worker that typed them."""

    split: str
    batch: int  # the group's first kept batch: orders the pieces
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


def batch_groups(batch_uris: list[str], group_bytes: int | None = None) -> list[list[tuple[int, str]]]:
    """Consecutive batches as (index, uri), grouped up to group_bytes (a batch whose size cannot be read
    here, a gs:// object without the mount, stands alone)."""
    group_bytes = group_bytes or GROUP_BYTES
    groups: list[list[tuple[int, str]]] = []
    held = group_bytes
    for index, uri in enumerate(batch_uris):
        local = storage_uri._local(uri)  # noqa: SLF001 - the mount/local mapping lives in storage.uri
        size = local.stat().st_size if local is not None and local.is_file() else group_bytes
        if held + size > group_bytes:
            groups.append([])
            held = 0
        groups[-1].append((index, uri))
        held += size
    return groups


def _decide(scanned: list[tuple[dict[int, BatchInfo], dict[int, dict[str, ColumnScan]]]],
            config: DatasetConfig) -> Decision:
    infos = {index: info for group_infos, _ in scanned for index, info in group_infos.items()}
    state = Scanned([infos[index] for index in range(len(infos))],
                    {index: found for _, scans in scanned for index, found in scans.items()})
    inputs = label_input_columns(config.label.expression)
    require_label_inputs(state, inputs, config.label.expression)
    kinds = decide_types(state, inputs, config)
    if state.scans:
        import pandas as pd

        split_assignment(pd.DataFrame(columns=list(kinds)), config.split_key, config.eval_percent)  # names a lack
    return Decision(state.infos, sorted(state.scans), kinds)


def _scan_group(group: list[tuple[int, str]], missing_values: tuple[str, ...]):
    release_freed_memory()  # a worker's first group: the peak stays flat however many it reads
    return scan_group(group, missing_values)


def _write_pieces(group: list[tuple[int, str]], decision: Decision, config: DatasetConfig, pieces_dir: str):
    """A group's kept batches typed, labelled and split, chunk by chunk, into one piece per split."""
    import pyarrow as pa

    release_freed_memory()
    kept = set(decision.kept)
    batches = [(index, uri) for index, uri in group if index in kept]
    if not batches:
        return
    index = batches[0][0]  # orders the piece among the others
    schema = examples_schema(decision.kinds, config)
    label_sums = dict.fromkeys(SPLITS, 0)
    writers = {split: shards.ShardWriter(storage_uri.join(pieces_dir, split), schema, max_rows=2**62,
                                         prefix=f"batch-{index:06d}") for split in SPLITS}
    for raw, typed in typed_chunks(batches, decision.kinds, config):
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

    release_freed_memory()
    schema = examples_schema(decision.kinds, config)
    writer = shards.ShardWriter(storage_uri.join(output_dir, plan.split), schema, max_rows=shard_rows,
                                first_shard=plan.number)
    with writer:
        for uri, first, end in plan.parts:
            for chunk in shards.iter_chunks([uri]):
                low, high = int(chunk.rows[0]), int(chunk.rows[-1]) + 1
                if low >= end:
                    break
                if high <= first:
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

    groups = [[(index, options.location(uri)) for index, uri in group] for group in batch_groups(batch_uris)]
    output, work = options.location(output_dir), options.location(work_dir)
    pieces_dir, result_uri = storage_uri.join(work, "pieces"), storage_uri.join(work, _RESULT_FILE)
    reshuffle = spread(options)

    def listed(purpose: str):
        found = pipeline | f"ListBatchesFor{purpose}" >> beam.Create(groups)
        return found | f"SpreadBatchesFor{purpose}" >> beam.Reshuffle() if reshuffle else found

    decision = (listed("Scan")
                | "ScanBatches" >> beam.Map(_scan_group, config.missing_values)
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
    release_freed_memory()  # before Beam starts its workers: they inherit it
    batch_uris = find_batches(data_uri)
    label_input_columns(config.label.expression)  # a malformed expression is refused before the job starts
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="beam-ingest-") as local_work:
        work = options.work_location(local_work, "ingest")
        pipeline = beam.Pipeline(runner=options.local_runner(), options=options.pipeline_options())
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
