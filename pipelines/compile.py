"""`python runner.py --compile`: every pipeline's Vertex form into compiled/*.json.

The output is byte-for-byte deterministic for given settings, so compiled/ is
reviewed as a diff and a test checks it matches the code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kfp import compiler

from contract.paths import PROJECT_ROOT

COMPILED_DIR = PROJECT_ROOT / "compiled"


def pipelines_to_compile() -> dict[str, Callable[[], object]]:
    """Template name -> a builder of the pipeline's Vertex form."""
    from pipelines.batch_prediction_pipeline import build_batch_prediction_pipeline
    from pipelines.canary_decision_pipeline import build_canary_decision_pipeline
    from pipelines.deploy_pipeline import build_deploy_pipeline
    from pipelines.evaluation_pipeline import build_evaluation_pipeline
    from pipelines.training_pipeline import build_training_pipeline

    return {"training_pipeline": lambda: build_training_pipeline("vertex"),
            "deploy_pipeline": build_deploy_pipeline,
            "canary_decision_pipeline": build_canary_decision_pipeline,
            "evaluation_pipeline": build_evaluation_pipeline,
            "batch_prediction_pipeline": lambda: build_batch_prediction_pipeline("vertex")}


def compile_all(output_dir: str | Path | None = None) -> list[tuple[Path, float]]:
    target = Path(output_dir) if output_dir else COMPILED_DIR
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in pipelines_to_compile().items():
        started = time.perf_counter()
        path = target / f"{name}.json"
        compiler.Compiler().compile(pipeline_func=build(), package_path=str(path))
        written.append((path, time.perf_counter() - started))
    return written
