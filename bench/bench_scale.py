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
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contract.paths import DEFAULT_DATASET_CONFIG, PROJECT_ROOT

FACTORS = (1, 10, 20)
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


STEPS = {"ingest": step_ingest, "validate": step_validate, "transform": step_transform, "train": step_train,
         "evaluate": step_evaluate}


def _peak_rss_mb() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _child(step: str, data_uri: str, work: str) -> None:
    """Runs one step and prints its figures; leaves with os._exit (tf.Transform's exit-time segfault,
    dataprep/isolation.py)."""
    sys.argv = sys.argv[:1]  # Beam reads sys.argv as pipeline options
    started = time.perf_counter()
    rows = STEPS[step](data_uri, Path(work))
    seconds = time.perf_counter() - started
    print(_RESULT_PREFIX + json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}),
          flush=True)
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
                print(f"  {factor:>2}x {step:<10} {shown['rows']:>9} rows {shown['seconds']:7.1f} s "
                      f"{shown['rows'] / shown['seconds']:>9.0f} rows/s {shown['peak_rss_mb']:7.0f} MB", flush=True)
    return figures


def main() -> None:
    print(f"data steps at {', '.join(f'{f}x' for f in FACTORS)} the sample; each step a fresh process "
          f"(imports included); train: {TRAIN_EPOCHS} epochs, rows/s counts rows x epochs")
    figures = measure()
    low, high = FACTORS[0], FACTORS[-1]
    ratio = f"{high}x/{low}x"
    print(f"\n  {'step':<10} {'RSS ' + ratio:>12} {'rows/s ' + ratio:>15}")
    for step in STEPS:
        rss = figures[high][step]["peak_rss_mb"] / figures[low][step]["peak_rss_mb"]
        speed = ((figures[high][step]["rows"] / figures[high][step]["seconds"])
                 / (figures[low][step]["rows"] / figures[low][step]["seconds"]))
        print(f"  {step:<10} {rss:>12.2f} {speed:>15.2f}   (aims: RSS <= {AIM_RSS_RATIO}: "
              f"{'met' if rss <= AIM_RSS_RATIO else 'not met'}; rows/s >= 1: {'met' if speed >= 1 else 'not met'})")
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] in STEPS:
        _child(*sys.argv[1:])
    else:
        raise SystemExit(f"usage: python -m bench.bench_scale {{{'|'.join(STEPS)}}} DATA_URI WORK_DIR "
                         "(or: python -m bench scale)")
