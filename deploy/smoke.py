"""The smoke test: a few eval-split instances, recorded with their predictions at registration, sent
through the endpoint after a deploy; the new deployed model must give the same answers.

A broken image, a contract the server reads differently from training, or a model
that fails to load is caught here, before the canary sees real traffic. The record
sits beside `saved_model.pb` (`smoke_test.json`), so it travels with the version
wherever the registry keeps it (a local folder, gs://).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract.artifacts import SMOKE_TEST_FILE
from contract.model_inputs import PROBABILITY_OUTPUT, InputSpec
from storage import uri as storage_uri

SMOKE_INSTANCES = 5
# The server calls the same graph as training's scoring, in another batch shape: float32 noise only.
TOLERANCE = 1e-5
# Requests are routed by the split: at 10% the canary answers one in ten. 300 misses it with
# probability 0.9**300, about 2e-14.
MAX_REQUESTS = 300

# (instances) -> (HTTP status, the deployed model id that answered, the JSON body)
Predict = Callable[[list[dict[str, Any]]], tuple[int, str, Any]]


class SmokeTestFailed(RuntimeError):
    pass


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _json_value(value.item())
    return value


def instances_from_frame(frame, spec: InputSpec) -> list[dict[str, Any]]:
    """Rows as prediction instances: the model's raw features only, missing values as null."""
    present = frame[list(spec.features)].astype(object)
    present = present.where(present.notna(), None)  # NaN and pandas' NA alike: null, the contract's missing value
    return [{name: _json_value(row[name]) for name in spec.features} for _, row in present.iterrows()]


def record_smoke_test(model_dir: str | Path, eval_frame, count: int = SMOKE_INSTANCES) -> dict[str, Any]:
    """Scores the first `count` eval rows with the exported model and writes them beside it."""
    from evaluation.gate import predict

    if len(eval_frame) == 0:
        raise SmokeTestFailed("the eval split is empty: no instance to record for the smoke test")
    spec = InputSpec.load(model_dir)
    rows = eval_frame.head(count)
    predictions = predict(str(model_dir), rows)
    instances = instances_from_frame(rows, spec)
    record = {"output": PROBABILITY_OUTPUT, "tolerance": TOLERANCE, "instances": instances,
              "predictions": [float(value) for value in predictions]}
    (Path(model_dir) / SMOKE_TEST_FILE).write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    return record


def load_smoke_test(version_uri: str) -> dict[str, Any] | None:
    """The record of a registered version, or None if it has none (registered before smoke tests)."""
    path = storage_uri.join(version_uri, SMOKE_TEST_FILE)
    try:
        record = json.loads(storage_uri.read_text(path))
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise SmokeTestFailed(f"{path} is not valid JSON ({error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("instances"), list) or \
            len(record.get("instances", [])) != len(record.get("predictions", [None])):
        raise SmokeTestFailed(f"{path}: expected {{\"instances\": [...], \"predictions\": [...]}} of equal length")
    return record


def run_smoke_test(predict: Predict, deployed_id: str, record: dict[str, Any],
                   max_requests: int = MAX_REQUESTS) -> str:
    """Sends the recorded instances until deployed model `deployed_id` answers them; compares. Returns a summary."""
    output, tolerance = record.get("output", PROBABILITY_OUTPUT), float(record.get("tolerance", TOLERANCE))
    for attempt in range(1, max_requests + 1):
        status, answered_by, body = predict(record["instances"])
        if answered_by != deployed_id:
            continue
        if status != 200:
            message = body.get("error", {}).get("message") if isinstance(body, dict) else body
            raise SmokeTestFailed(f"deployed model {deployed_id} answered the smoke test with HTTP {status}: {message}")
        try:
            got = [float(prediction[output]) for prediction in body["predictions"]]
        except (KeyError, TypeError, ValueError) as error:
            raise SmokeTestFailed(f"deployed model {deployed_id} answered without {output!r} per instance "
                                  f"({type(error).__name__}: {error}): {str(body)[:300]}") from None
        if len(got) != len(record["predictions"]):
            raise SmokeTestFailed(f"deployed model {deployed_id} gave {len(got)} predictions for "
                                  f"{len(record['instances'])} instances")
        worst = max(abs(a - b) for a, b in zip(got, record["predictions"], strict=True))
        if worst > tolerance:
            index = max(range(len(got)), key=lambda i: abs(got[i] - record["predictions"][i]))
            raise SmokeTestFailed(f"deployed model {deployed_id} answers differently from the registered version: "
                                  f"instance {index} got {got[index]!r}, recorded {record['predictions'][index]!r} "
                                  f"(tolerance {tolerance})")
        return (f"smoke test passed: deployed model {deployed_id} gave the recorded answers to "
                f"{len(got)} instances (largest difference {worst:.2g}, request {attempt})")
    raise SmokeTestFailed(f"deployed model {deployed_id} answered none of {max_requests} smoke-test requests: "
                          "its share of the split is 0 or it is not ready")
