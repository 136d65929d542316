"""Replay landed trips through the local endpoint as prediction traffic (the drift demo's traffic).

`replay(endpoint, data_uri, ...)` reads every batch.csv under `data_uri`, turns each
row into an instance of the deployed model's input contract (its `input_spec.json`:
each feature typed as the model takes it, a missing cell as null) and sends them in
requests of `per_request` instances. The label is not sent: the endpoint takes
features only.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any

from contract.model_inputs import InputSpec


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    requests: int
    instances: int


def _typed(value: Any, dtype: str) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if dtype == "int64":
        return int(float(value))
    if dtype == "float32":
        return float(value)
    return str(value)


def replay(endpoint, data_uri: str, model_uri: str | Path, per_request: int = 16,
           missing_values: tuple[str, ...] = ("",)) -> ReplayResult:
    """Sends the rows under `data_uri` (a folder or gs:// prefix of batches) to `endpoint`, a
    serving.client.LocalEndpoint that is serving; returns what was sent."""
    import pandas as pd

    from dataprep.ingest import find_batches
    from storage import uri as storage_uri

    spec = InputSpec.load(str(model_uri))
    requests = instances = 0
    for batch_uri in find_batches(data_uri):
        frame = pd.read_csv(io.BytesIO(storage_uri.read_bytes(batch_uri)), dtype=str, keep_default_na=False)
        rows = [{name: _typed(None if row.get(name, "") in missing_values else row[name], dtype)
                 for name, dtype in spec.features.items()} for row in frame.to_dict(orient="records")]
        for start in range(0, len(rows), per_request):
            endpoint.predict(rows[start:start + per_request])
            requests += 1
        instances += len(rows)
    return ReplayResult(requests, instances)
