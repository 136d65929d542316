"""Local mode of the batch prediction pipeline: kfp.local runs its local form, then a summary.

    python runner.py --run local --pipeline batch_prediction --param source=data/processed/2014/03 \\
        --param destination=local/batch_predictions [--param key_field=...] [--param run_id=...]
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from pipelines.local_run import StepOutput, StepTimer, _task_outputs
from pipelines.settings import SETTINGS


def run_batch_prediction_locally(local_dir: Path | None = None, **parameters) -> int:
    """Runs the local form with kfp.local; prints each step, then the counts and where the output is."""
    from kfp import local

    from pipelines.batch_prediction_pipeline import build_batch_prediction_pipeline

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    state = Path(local_dir or SETTINGS.local_dir)
    pipeline_root = state / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    before = set(pipeline_root.iterdir())
    timer = StepTimer()
    output = StepOutput(sys.stdout, timer)
    logging.getLogger().addFilter(timer)
    started = time.perf_counter()
    failure: Exception | None = None
    # The steps find bq:// (DuckDB files) under this run's local state folder.
    previous_local_dir = os.environ.get("MLOPS_LOCAL_DIR")
    os.environ["MLOPS_LOCAL_DIR"] = str(state)
    try:
        with contextlib.redirect_stdout(output):
            build_batch_prediction_pipeline("local")(**({"registry_uri": str(state / "registry")} | parameters))
    except RuntimeError as error:  # a step failed; its own error is in its output
        failure = error
    finally:
        logging.getLogger().removeFilter(timer)
        if previous_local_dir is None:
            os.environ.pop("MLOPS_LOCAL_DIR", None)
        else:
            os.environ["MLOPS_LOCAL_DIR"] = previous_local_dir
    wall = time.perf_counter() - started
    new_runs = sorted(set(pipeline_root.iterdir()) - before)
    run_dir = new_runs[-1] if new_runs else None

    print("\n" + "=" * 72)
    print(f"batch prediction pipeline, local mode: {'FAILED' if failure else 'done'} in {wall:.1f} s  "
          f"(source={parameters.get('source')})")
    for task, seconds in timer.durations.items():
        print(f"  {task:<22} {seconds:6.1f} s")
    if run_dir is not None and not failure:
        model = _task_outputs(run_dir, "resolve-batch-model")
        predicted = _task_outputs(run_dir, "predict-batch")
        print(f"model: version {model.get('model_version')} of {model.get('model_resource_name')}")
        print(f"rows: {predicted.get('rows_predicted')} predicted, {predicted.get('rows_failed')} in errors")
        print(f"output: {predicted.get('output')}")
        print(f"artifacts: {run_dir}")
    print("=" * 72)
    for task in timer.failed:
        print(f"{task} failed: {output.error(task)}")
    if failure and not timer.failed:
        print(f"failed: {type(failure).__name__}: {str(failure).splitlines()[0]}")
    return 1 if failure else 0
