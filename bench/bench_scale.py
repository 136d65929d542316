"""Scale figures (issue 11): peak RSS and rows/s of each data step at 1x, 10x and 20x the sample.

The data: bench/synthetic.py (copy 0 is the sample; the others resampled,
jittered and shifted into new partitions). Each step runs in a fresh child
process (`python -m bench.bench_scale STEP ...`), on the previous step's
outputs, and reports its own wall time and peak resident set (VmHWM, read from
/proc/self/status before it exits: see bench/bench_triggers.py for why not
rusage). Imports are inside the clock and the peak: they are what a pipeline
step pays too, and they are the same at every size, so the ratio 20x/1x shows
what grows with the data. Aims: peak RSS 20x/1x <= 1.3 per step; rows/s at 20x
no worse than at 1x.

Ingest and validate run three ways (issue 23): in the step's process (what the
DirectRunner without flags runs), and as their Beam graphs on the DirectRunner in
one worker (in-process) and in two worker processes (`--direct_num_workers=2
--direct_running_mode=multi_processing`), so the Beam forms are measured against
today's figures in the same run. The workers' peak RSS is sampled from /proc
while they run (the largest worker's VmHWM), beside the step's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from contract.paths import DEFAULT_DATASET_CONFIG, PROJECT_ROOT

FACTORS = (1, 10, 20)
TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
# The Beam forms beside each in-process data step: (name, beam_pipeline_args).
BEAM_FORMS = {"beam-1": [], "beam-2": TWO_WORKERS}
AIM_RSS_RATIO = 1.3
TRAIN_EPOCHS = 2  # rows/s does not depend on it; the bench's time does
_RESULT_PREFIX = "BENCH_SCALE_RESULT "


def _config():
    from contract.dataset import load_dataset_config

    return load_dataset_config(DEFAULT_DATASET_CONFIG)


def step_ingest(data_uri: str, work: Path) -> int:
    from dataprep.ingest import ingest

    return ingest(data_uri, _config(), work / "examples").rows


def step_validate(data_uri: str, work: Path) -> int:
    from dataprep import validation as dv
    from dataprep.ingest import load_manifest

    dv.validate_examples(work / "examples", _config(), work / "statistics", work / "schema", work / "anomalies")
    return load_manifest(work / "examples").rows


def _ingest_on_beam(args: list[str], name: str):
    def step(data_uri: str, work: Path) -> int:
        from dataprep.beam_ingest import ingest_on_beam

        return ingest_on_beam(data_uri, _config(), work / f"examples-{name}", beam_pipeline_args=args).rows
    return step


def _validate_on_beam(args: list[str], name: str):
    def step(data_uri: str, work: Path) -> int:
        from dataprep.beam_validation import validate_on_beam
        from dataprep.ingest import load_manifest

        validate_on_beam(work / "examples", _config(), work / f"statistics-{name}", work / f"schema-{name}",
                         work / f"anomalies-{name}", beam_pipeline_args=args)
        return load_manifest(work / "examples").rows
    return step


def step_transform(data_uri: str, work: Path) -> int:
    from dataprep.transform import analyze_and_transform

    config = _config()
    result = analyze_and_transform(str(work / "examples"), str(config.source), str(config.schema_uri),
                                   str(work / "graph"), str(work / "transformed"))
    return result["train_rows"] + result["eval_rows"]


def step_train(data_uri: str, work: Path) -> int:
    from trainer.train import train_and_export

    config = _config()
    summary = train_and_export(str(work / "transformed"), str(work / "graph"), str(config.source),
                               str(config.schema_uri), str(work / "model"), {"epochs": TRAIN_EPOCHS})
    return summary["train_rows"] * TRAIN_EPOCHS


def step_evaluate(data_uri: str, work: Path) -> int:
    """What the evaluate step runs: the eval shards scored and measured inside Beam (no champion)."""
    from dataprep.ingest import load_manifest
    from evaluation.gate import Thresholds, evaluate_examples

    config = _config()
    evaluate_examples(str(work / "examples"), str(work / "model"), "", config, Thresholds(gate=config.gate),
                      str(work / "evaluation"))
    return load_manifest(work / "examples").eval_rows


STEPS = {"ingest": step_ingest, **{f"ingest-{name}": _ingest_on_beam(args, name) for name, args in BEAM_FORMS.items()},
         "validate": step_validate,
         **{f"validate-{name}": _validate_on_beam(args, name) for name, args in BEAM_FORMS.items()},
         "transform": step_transform, "train": step_train, "evaluate": step_evaluate}


class _WorkerPeaks(threading.Thread):
    """The largest VmHWM among this process's descendants (Beam's worker processes), sampled until the
    step ends: a child's own rusage would start from this process's peak (see bench_triggers)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb = 0.0

    def run(self) -> None:
        while True:
            for pid in _descendants(os.getpid()):
                try:
                    self.peak_mb = max(self.peak_mb, _peak_rss_mb(f"/proc/{pid}/status"))
                except (OSError, StopIteration):  # the worker ended between the listing and the read
                    continue
            time.sleep(0.1)


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _peak_rss_mb(status: str = "/proc/self/status") -> float:
    line = next(line for line in Path(status).read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _child(step: str, data_uri: str, work: str) -> None:
    """Runs one step and prints its figures; leaves with os._exit (tf.Transform's exit-time segfault,
    dataprep/isolation.py)."""
    sys.argv = sys.argv[:1]  # Beam reads sys.argv as pipeline options
    workers = _WorkerPeaks()
    workers.start()
    started = time.perf_counter()
    rows = STEPS[step](data_uri, Path(work))
    seconds = time.perf_counter() - started
    print(_RESULT_PREFIX + json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": _peak_rss_mb(),
                                       "worker_peak_rss_mb": workers.peak_mb}), flush=True)
    os._exit(0)


def run_step(step: str, data_uri: str, work: Path) -> dict:
    child = subprocess.run([sys.executable, "-m", "bench.bench_scale", step, data_uri, str(work)],
                           cwd=PROJECT_ROOT, capture_output=True, text=True)
    found = [line for line in child.stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
    if child.returncode != 0 or not found:
        raise RuntimeError(f"bench step {step} failed (exit {child.returncode}):\n{child.stderr[-3000:]}")
    return json.loads(found[-1][len(_RESULT_PREFIX):])


def measure(factors=FACTORS, steps=tuple(STEPS)) -> dict[int, dict[str, dict]]:
    from bench.synthetic import make_landing

    figures: dict[int, dict[str, dict]] = {}
    for factor in factors:
        with tempfile.TemporaryDirectory(prefix=f"bench-scale-{factor}x-") as scratch:
            landing = make_landing(Path(scratch) / "data", factor)
            figures[factor] = {}
            for step in steps:
                figures[factor][step] = run_step(step, str(landing), Path(scratch) / "work")
                shown = figures[factor][step]
                workers = f" (workers {shown['worker_peak_rss_mb']:.0f} MB)" if shown["worker_peak_rss_mb"] else ""
                print(f"  {factor:>2}x {step:<16} {shown['rows']:>9} rows {shown['seconds']:7.1f} s "
                      f"{shown['rows'] / shown['seconds']:>9.0f} rows/s {shown['peak_rss_mb']:7.0f} MB{workers}",
                      flush=True)
    return figures


def main(steps: tuple[str, ...] = tuple(STEPS)) -> None:
    print(f"data steps at {', '.join(f'{f}x' for f in FACTORS)} the sample; each step a fresh process "
          f"(imports included); train: {TRAIN_EPOCHS} epochs, rows/s counts rows x epochs")
    figures = measure(steps=steps)
    low, high = FACTORS[0], FACTORS[-1]
    ratio = f"{high}x/{low}x"
    print(f"\n  {'step':<16} {'RSS ' + ratio:>12} {'workers ' + ratio:>15} {'rows/s ' + ratio:>15}")
    for step in steps:
        rss = figures[high][step]["peak_rss_mb"] / figures[low][step]["peak_rss_mb"]
        workers = (figures[high][step]["worker_peak_rss_mb"] / figures[low][step]["worker_peak_rss_mb"]
                   if figures[low][step]["worker_peak_rss_mb"] else None)
        speed = _rate(figures[high][step]) / _rate(figures[low][step])
        worst = max(rss, workers or 0)
        print(f"  {step:<16} {rss:>12.2f} {'-' if workers is None else f'{workers:.2f}':>15} {speed:>15.2f}   "
              f"(aims: RSS <= {AIM_RSS_RATIO}: {'met' if worst <= AIM_RSS_RATIO else 'not met'}; rows/s >= 1: "
              f"{'met' if speed >= 1 else 'not met'})")
    families = [family for family in ("ingest", "validate") if family in steps]
    if families:
        print(f"\n  rows/s of the Beam forms against the in-process step, same run "
              f"(beam-1: DirectRunner in-process; beam-2: {' '.join(TWO_WORKERS)})")
        for family in families:
            for factor in FACTORS:
                base = _rate(figures[factor][family])
                shown = "  ".join(f"{name} {_rate(figures[factor][f'{family}-{name}']):>8.0f} "
                                  f"({_rate(figures[factor][f'{family}-{name}']) / base:.2f}x)"
                                  for name in BEAM_FORMS if f"{family}-{name}" in steps)
                print(f"  {family:<8} {factor:>2}x  in-process {base:>8.0f}  {shown}")
    print(json.dumps(figures))


def _rate(figure: dict) -> float:
    return figure["rows"] / figure["seconds"]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] in STEPS:
        _child(*sys.argv[1:])
    elif len(sys.argv) == 3 and sys.argv[1] == "--steps":  # some steps only: --steps ingest,ingest-beam-1
        main(tuple(sys.argv[2].split(",")))
    else:
        raise SystemExit(f"usage: python -m bench.bench_scale {{{'|'.join(STEPS)}}} DATA_URI WORK_DIR "
                         "(or: python -m bench scale)")
