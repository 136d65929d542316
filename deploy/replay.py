"""Replays the labelled rows of a data partition through the local endpoint at a steady rate, so that a
canary gets traffic, and writes each answered row's label to the feedback table the canary decision joins
with the endpoint's request log: each instance carries an `instance_id`, as a client that wants its
later labels counted sends one (deploy/evidence.py)."""

from __future__ import annotations

import dataclasses
import secrets
import tempfile
import time
from collections import Counter

from contract.dataset import load_dataset_config
from contract.model_inputs import INSTANCE_ID_KEY, InputSpec
from deploy.evidence import CanaryTables
from deploy.local import LocalBackend
from deploy.local_evidence import write_feedback
from deploy.smoke import instances_from_frame
from serving.endpoint import EndpointError

FEEDBACK_BATCH = 500  # labels written to the feedback table at once


@dataclasses.dataclass(frozen=True)
class ReplaySummary:
    requests: int
    errors: int
    by_model: dict[str, int]
    seconds: float
    labelled: int  # feedback rows written


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
           print_every: int = 0, start: int = 0, tables: CanaryTables | None = None) -> ReplaySummary:
    """Sends one row per request at `rate_per_s`, from row `start` on, cycling over the rows until `count`
    requests (0: each row once); each answered row's label goes to the feedback table."""
    if not rate_per_s > 0:
        raise ValueError(f"rate must be a number of requests per second > 0, got {rate_per_s!r}")
    if start < 0:
        raise ValueError(f"start must be a row number >= 0, got {start!r}")
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
    total = count or max(0, len(instances) - start)
    runner = backend.query_runner(tables)
    by_model: Counter[str] = Counter()
    errors = labelled = 0
    pending: list[dict] = []
    token = secrets.token_hex(4)  # instance ids unique across replays
    started = time.perf_counter()
    for sent in range(total):
        pause = started + sent / rate_per_s - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        row = (start + sent) % len(instances)
        instance_id = f"replay-{token}-{sent}"
        status, answered_by, body = backend.predict([instances[row] | {INSTANCE_ID_KEY: instance_id}])
        by_model[answered_by or "?"] += 1
        if status != 200:
            errors += 1
            continue
        pending.append({"instance_id": instance_id, "label": labels[row], "feedback_time": time.time()})
        if len(pending) >= FEEDBACK_BATCH:
            labelled += write_feedback(runner, pending, time.time(), require_logged=False)
            pending = []
        if print_every and (sent + 1) % print_every == 0:
            print(f"  {sent + 1}/{total} requests, {errors} errors, by deployed model {dict(by_model)}")
    labelled += write_feedback(runner, pending, time.time(), require_logged=False)
    return ReplaySummary(total, errors, dict(by_model), time.perf_counter() - started, labelled)
