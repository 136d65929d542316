"""Replays the labelled rows of a data partition through the local endpoint at a steady rate, so that a
canary gets traffic, and records each answer with its label (feedback the canary decision reads)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections import Counter

from contract.dataset import load_dataset_config
from contract.model_inputs import PROBABILITY_OUTPUT, InputSpec
from deploy.local import FEEDBACK_FILE, LocalBackend
from deploy.smoke import instances_from_frame
from serving.endpoint import EndpointError


@dataclasses.dataclass(frozen=True)
class ReplaySummary:
    requests: int
    errors: int
    by_model: dict[str, int]
    seconds: float


def labelled_rows(data_uri: str, dataset_config: str):
    """Every labelled row (train and eval split) of the partition, typed and labelled as the pipeline does."""
    import pandas as pd

    from dataprep.ingest import ingest, load_split

    config = load_dataset_config(dataset_config)
    with tempfile.TemporaryDirectory(prefix="replay-") as scratch:
        summary = ingest(data_uri, config, scratch)
        frame = pd.concat([load_split(scratch, "train"), load_split(scratch, "eval")], ignore_index=True)
    if not summary.rows:
        raise ValueError(f"no labelled rows under {data_uri!r}: expected a partition of batch.csv files")
    return frame, config.label.name


def replay(backend: LocalBackend, data_uri: str, dataset_config: str, rate_per_s: float, count: int = 0,
           print_every: int = 0) -> ReplaySummary:
    """Sends one row per request at `rate_per_s`, cycling over the rows until `count` requests (0: each row once)."""
    if not rate_per_s > 0:
        raise ValueError(f"rate must be a number of requests per second > 0, got {rate_per_s!r}")
    if not backend.endpoint.router_url():
        raise EndpointError(f"no endpoint is serving from {backend.state_dir}: start it with "
                            "`python runner.py endpoint serve` first")
    frame, label = labelled_rows(data_uri, dataset_config)
    deployed = backend.live()
    if not deployed:
        raise EndpointError(f"nothing is deployed on {backend.where}")
    spec = InputSpec.load(backend.endpoint.describe()["deployedModels"][0]["model"])
    instances = instances_from_frame(frame, spec)
    labels = [int(value) for value in frame[label]]
    total = count or len(instances)
    by_model: Counter[str] = Counter()
    errors = 0
    started = time.perf_counter()
    with open(backend.state_dir / FEEDBACK_FILE, "a") as feedback:
        for sent in range(total):
            pause = started + sent / rate_per_s - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            row = sent % len(instances)
            status, answered_by, body = backend.predict([instances[row]])
            by_model[answered_by or "?"] += 1
            if status != 200:
                errors += 1
                continue
            feedback.write(json.dumps({"time": time.time(), "deployedModelId": answered_by, "label": labels[row],
                                       "probability": body["predictions"][0][PROBABILITY_OUTPUT]}) + "\n")
            if print_every and (sent + 1) % print_every == 0:
                print(f"  {sent + 1}/{total} requests, {errors} errors, by deployed model {dict(by_model)}")
    return ReplaySummary(total, errors, dict(by_model), time.perf_counter() - started)

