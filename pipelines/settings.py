"""Compile-time and run-time settings, declared once, read from the environment.

Compilation is deterministic for given settings: the defaults below are what
`make compile` bakes into compiled/; a deployment compiles with its own
values by setting the MLOPS_* variables below in the compiling process.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from contract.paths import DEFAULT_LOCAL_DIR, LOCAL_DIR_ENV


@dataclasses.dataclass(frozen=True)
class Settings:
    # The image every lightweight component runs in on Vertex: this project, installed.
    pipeline_image: str = "us-central1-docker.pkg.dev/vertex-mlops/mlops/pipeline:latest"
    # The custom prediction container (serving/Dockerfile) registered with each model.
    serving_image: str = "us-central1-docker.pkg.dev/vertex-mlops/mlops/serving:latest"
    # Vertex Training machine for the train step (the scale path of that step).
    training_machine_type: str = "n1-standard-4"
    # Where local mode keeps its pipeline root, registry, endpoint and reports.
    local_dir: Path = DEFAULT_LOCAL_DIR

    @classmethod
    def from_environment(cls) -> Settings:
        defaults = cls()
        return cls(
            pipeline_image=os.environ.get("MLOPS_PIPELINE_IMAGE", defaults.pipeline_image),
            serving_image=os.environ.get("MLOPS_SERVING_IMAGE", defaults.serving_image),
            training_machine_type=os.environ.get("MLOPS_TRAINING_MACHINE_TYPE", defaults.training_machine_type),
            local_dir=Path(os.environ.get(LOCAL_DIR_ENV, defaults.local_dir)),
        )


SETTINGS = Settings.from_environment()
