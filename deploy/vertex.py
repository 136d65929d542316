"""The Vertex AI backend: an endpoint and the Model Registry's aliases, through the aiplatform SDK.

- The endpoint is found by display name, or created (`Endpoint.create`).
- Live state: the endpoint read afresh (`deployedModels` with `modelVersionId`, `trafficSplit`).
- Deploy: `Endpoint.deploy(model@version, traffic_split={"0": p, champion_id: 100 - p}, machine type,
  replicas)`, a long-running operation the SDK polls; the whole split is given, so Vertex applies it
  atomically with the new model (which gets traffic only once deployed, i.e. ready).
- Split: `Endpoint.update(traffic_split=...)` (PATCH, update mask traffic_split).
- Undeploy: `Endpoint.undeploy(id)` only after its traffic was moved (Vertex refuses otherwise).
- Two transitions never both act: the endpoint's `etag`. The lock is a label
  (`mlops-deploy-lock`: expiry and owner) written with `Endpoint.update(labels=...)`, which sends the
  endpoint as last read, etag included; Vertex refuses a write whose etag is stale, so of two
  writers that read the same endpoint only one takes the lock. The journal of a transition is a
  label too (`mlops-transition`), so it lives and dies with the endpoint, as does the canary's
  rollout state (`mlops-rollout`, deploy/rollout.py), written under the lock.
- Evidence: Cloud Monitoring for the step's requests, errors and latency, BigQuery for the request-response
  log and the feedback table (deploy/vertex_evidence.py).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any

from deploy.plan import Deployed, Transition, plan_advance, plan_deploy, plan_promote, plan_rollback
from deploy.rollout import RolloutState
from registry.model_registry import ModelVersion, VertexModelRegistry

LOCK_LABEL = "mlops-deploy-lock"
JOURNAL_LABEL = "mlops-transition"
ROLLOUT_LABEL = "mlops-rollout"
MANAGED_LABEL = "mlops-managed"  # always set: the SDK skips an update whose labels are empty
LOCK_SECONDS = 3600  # a holder killed mid-transition blocks others this long at most; the next run resumes
LOCK_WAIT_SECONDS = 600


class LockNotTaken(RuntimeError):
    pass


def encode_transition(transition: Transition) -> str:
    """As a label value (lowercase letters, digits, '-', '_', at most 63): kind, versions, canary percent."""
    percent = next((step.split.get(transition.version, 0) for step in transition.steps
                    if step.kind in ("deploy", "split") and step.split and transition.kind in ("canary", "advance")),
                   0)
    return f"{transition.kind}_{transition.version}_{transition.champion_version}_{percent}"


def decode_transition(value: str, model_name: str) -> Transition:
    kind, version, champion, percent = value.split("_")
    if kind == "promote":
        return plan_promote(model_name, version, champion)
    if kind == "rollback":
        return plan_rollback(model_name, version, champion, "resumed after an interruption")
    if kind == "first":
        return plan_deploy([], model_name, version, None)
    if kind == "advance":
        return plan_advance(model_name, version, champion, int(percent))
    return plan_deploy([Deployed("?", champion, 100)], model_name, version, champion, int(percent))


class VertexBackend:
    def __init__(self, project: str, location: str, endpoint_display_name: str, model_name: str,
                 machine_type: str = "n1-standard-2", min_replica_count: int = 1, max_replica_count: int = 1,
                 serving_image: str = "") -> None:
        self.registry = VertexModelRegistry(project, location, serving_image)
        self.project, self.location = project, location
        self.display_name = endpoint_display_name
        self.model_name = model_name
        self.machine_type, self.min_replica_count, self.max_replica_count = \
            machine_type, min_replica_count, max_replica_count
        self.where = f"Vertex AI endpoint {endpoint_display_name!r} ({project}/{location})"
        self._endpoint = None

    def endpoint(self):
        """The endpoint, found by display name or created, read afresh."""
        from google.cloud import aiplatform

        if self._endpoint is None:
            found = aiplatform.Endpoint.list(filter=f'display_name="{self.display_name}"', project=self.project,
                                             location=self.location)
            self._endpoint = found[0] if found else aiplatform.Endpoint.create(
                display_name=self.display_name, labels={MANAGED_LABEL: "true"}, project=self.project,
                location=self.location)
        self._endpoint._sync_gca_resource()
        return self._endpoint

    def live(self) -> list[Deployed]:
        resource = self.endpoint().gca_resource
        split = dict(resource.traffic_split)
        parent = self.registry._parent(self.model_name) if resource.deployed_models else None
        ours = parent.resource_name if parent else None
        # A deployed model serves a version of this model when its resource is this model's (`models/ID@N`).
        return [Deployed(model.id, model.model_version_id if re.sub(r"@.*$", "", model.model) == ours else "",
                         int(split.get(model.id, 0))) for model in resource.deployed_models]

    def _model(self, version: str):
        from google.cloud import aiplatform

        parent = self.registry._parent(self.model_name)
        return aiplatform.Model(f"{parent.resource_name}@{version}")

    def deploy(self, version: ModelVersion, split: Mapping[str, int]) -> str:
        self.endpoint().deploy(self._model(version.version), traffic_split=dict(split),
                               deployed_model_display_name=f"{self.model_name}-v{version.version}",
                               machine_type=self.machine_type, min_replica_count=self.min_replica_count,
                               max_replica_count=self.max_replica_count)
        return next(model.id for model in self.live() if model.version == version.version)

    def update_split(self, split: Mapping[str, int]) -> None:
        self.endpoint().update(traffic_split=dict(split))

    def undeploy(self, deployed_id: str) -> None:
        self.endpoint().undeploy(deployed_id)

    def _labels(self) -> dict[str, str]:
        return dict(self.endpoint().gca_resource.labels)

    def _write_labels(self, change: Mapping[str, str | None]) -> None:
        """One etag-guarded write (the endpoint as just read): raises google.api_core Aborted if stale."""
        labels = {key: value for key, value in ({**self._labels(), MANAGED_LABEL: "true", **change}).items()
                  if value is not None}
        self._endpoint.update(labels=labels)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        from google.api_core import exceptions

        owner = secrets.token_hex(4)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            held = self._labels().get(LOCK_LABEL, "")
            if not held or int(held.split("-")[0]) < time.time():
                try:
                    self._write_labels({LOCK_LABEL: f"{int(time.time()) + LOCK_SECONDS}-{owner}"})
                    break
                except (exceptions.Aborted, exceptions.FailedPrecondition, exceptions.Conflict):
                    pass  # another writer changed the endpoint first: read again
            if time.monotonic() > deadline:
                raise LockNotTaken(f"{self.where} is held by another deploy or decision ({held}): gave up after "
                                   f"{LOCK_WAIT_SECONDS} s")
            time.sleep(2.0)
        try:
            yield
        finally:
            self._write_labels({LOCK_LABEL: None})

    def read_journal(self) -> dict[str, Any] | None:
        value = self._labels().get(JOURNAL_LABEL)
        return decode_transition(value, self.model_name).to_dict() if value else None

    def write_journal(self, transition: Mapping[str, Any]) -> None:
        self._write_labels({JOURNAL_LABEL: encode_transition(Transition.from_dict(transition))})

    def clear_journal(self) -> None:
        self._write_labels({JOURNAL_LABEL: None})

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        yield  # a Vertex endpoint serves what is deployed

    def start_window(self) -> None:
        pass  # Cloud Monitoring keeps time series: the step's window is by time (the rollout state's step_started)

    def read_rollout(self) -> RolloutState | None:
        value = self._labels().get(ROLLOUT_LABEL)
        return RolloutState.decode(value) if value else None

    def write_rollout(self, state: RolloutState | None) -> None:
        self._write_labels({ROLLOUT_LABEL: state.encode() if state else None})

    def step_stats(self, live: list[Deployed], since: float, now: float) -> dict[str, Any]:
        from deploy.vertex_evidence import step_stats_from_monitoring

        return step_stats_from_monitoring(self.project, self.endpoint().name, live, since, now)

    def query_runner(self, tables=None):
        from deploy.vertex_evidence import BigQueryRunner

        return BigQueryRunner(tables, self.project)

    def predict(self, instances: list[dict[str, Any]]) -> tuple[int, str, Any]:
        from google.api_core import exceptions

        if self._endpoint is None:
            self.endpoint()
        try:  # no fresh read per request: the smoke test sends up to hundreds
            answer = self._endpoint.predict(instances=instances)
        except exceptions.GoogleAPICallError as error:
            return int(error.code or 500), "", {"error": {"message": error.message}}
        return 200, answer.deployed_model_id, {"predictions": answer.predictions}

