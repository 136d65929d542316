"""Data for the monitor's tests: the shipped sample's years as request-log traffic, and a registry whose
champion's lineage points at training examples ingested from the 2013 partitions (no model is trained:
the monitor reads only the lineage and the examples)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from contract.dataset import load_dataset_config
from contract.model_inputs import InputSpec
from contract.paths import LANDING_PREFIX, PROJECT_ROOT
from registry.model_registry import CHALLENGER, CHAMPION, LocalModelRegistry
from serving.request_log import RequestLog, RequestLogSettings

MODEL = "chicago-taxi-big-tipper"


def year_instances(year: str) -> list[dict]:
    """The year's trips as endpoint instances: the data set's features, null for a missing value."""
    config = load_dataset_config()
    frames = [pd.read_csv(path) for path in sorted((PROJECT_ROOT / LANDING_PREFIX / year).rglob("batch.csv"))]
    frame = pd.concat(frames)[config.feature_names]
    return [{name: None if isinstance(value, float) and math.isnan(value) else value for name, value in row.items()}
            for row in frame.to_dict(orient="records")]


def log_traffic(log_dir: Path, instances: list[dict], per_request: int = 16) -> None:
    log = RequestLog(log_dir, "local", RequestLogSettings())
    for start in range(0, len(instances), per_request):
        body = json.dumps({"instances": instances[start:start + per_request]}).encode()
        log.write("1", body, json.dumps({"predictions": [0.5] * len(instances[start:start + per_request])}).encode())
    log.close()


def registry_with_2013_champion(root: Path) -> Path:
    from dataprep.ingest import ingest

    examples = root / "examples"
    ingest(str(PROJECT_ROOT / LANDING_PREFIX / "2013"), load_dataset_config(), examples)
    model = root / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    InputSpec({name: "string" for name in load_dataset_config().feature_names}).write(model)
    registry = root / "registry"
    LocalModelRegistry(registry).register(MODEL, str(model), {"examples": str(examples),
                                                               "data_uri": "data/processed/2013"},
                                          (CHALLENGER, CHAMPION))
    return registry
