"""The Vertex AI backend: an endpoint and the Model Registry's aliases, through the aiplatform SDK.

- The endpoint is found by display name, or created (`Endpoint.create`) with request-response logging to
  BigQuery on (`RequestLogging`: Model Monitoring v2 reads an endpoint's traffic only from that log,
  v1beta1 `ModelMonitoringInput.VertexEndpointLogs`); an endpoint found without the configured logging is
  brought to it (one etag-guarded PATCH of `predict_request_response_logging_config`, nothing if it holds).
- Live state: the endpoint read afresh (`deployedModels` with `modelVersionId`, `trafficSplit`).
- Deploy: `Endpoint.deploy(model@version, traffic_split={"0": p, champion_id: 100 - p}, machine type,
  replicas)`, a long-running operation the SDK polls; the whole split is given, so Vertex applies it
  atomically with the new model (which gets traffic only once deployed, i.e. ready).
- Split: `Endpoint.update(traffic_split=...)` (PATCH, update mask traffic_split).
- Undeploy: `Endpoint.undeploy(id)` only after its traffic was moved (Vertex refuses otherwise).
- Two transitions never both act: the endpoint's `etag`. The lock is a label (`mlops-deploy-lock`: expiry
  and owner) written with `Endpoint.update(labels=...)`, which sends the endpoint as last read, etag
  included; Vertex refuses a write whose etag is stale. The lock is taken with the etag of the very read
  that found it free, so a writer that came in between makes our write fail, never the reverse. Every
  later label write (journal, release) first checks the lock is still ours, and the release clears only
  our own: a hold that expired and was taken by another writer is left to it, and `LockLost` says so.
  The journal of a transition is a label too (`mlops-transition`), so it lives and dies with the endpoint,
  as does the canary's rollout state (`mlops-rollout`, deploy/rollout.py), written under the lock.
- Evidence: Cloud Monitoring for the step's requests, errors and latency, BigQuery for the request-response
  log and the feedback table (deploy/vertex_evidence.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
import sys
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
LOCK_POLL_SECONDS = 2.0
WRITE_ATTEMPTS = 5  # etag-guarded writes retried after a competing write (each re-reads first)
BIGQUERY_DESTINATION = re.compile(r"bq://[a-z][a-z0-9-]{4,28}[a-z0-9](\.\w{1,1024}){0,2}")


class LockNotTaken(RuntimeError):
    pass


class LockLost(RuntimeError):
    """Our hold on the endpoint is gone: it expired and another writer took it, or someone removed it."""


class RequestLoggingError(ValueError):
    """The request-response logging settings are unusable, or Vertex refused them; the message says which."""


@dataclasses.dataclass(frozen=True)
class RequestLogging:
    """The endpoint's request-response logging (Endpoint.predict_request_response_logging_config).

    `table`: `bq://PROJECT.DATASET.TABLE` (one per environment: the dataset must exist and the table must
    not, Vertex creates it), `bq://PROJECT.DATASET` (table `request_response_logging` in it), or "" for
    `bq://PROJECT` of the endpoint (Vertex creates dataset `logging_<display name>_<endpoint id>`).
    `sampling_rate`: the share of requests logged, in (0, 1]."""

    table: str = ""
    sampling_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.table and not BIGQUERY_DESTINATION.fullmatch(self.table):
            raise RequestLoggingError(f"request log table {self.table!r}: expected bq://PROJECT.DATASET.TABLE "
                                      "(or bq://PROJECT.DATASET, or empty for a dataset Vertex creates)")
        if not 0 < self.sampling_rate <= 1:
            raise RequestLoggingError(f"request log sampling rate {self.sampling_rate}: expected a fraction in "
                                      "(0, 1], e.g. 1.0 to log every request or 0.1 for one in ten")

    def destination(self, project: str) -> str:
        return self.table or f"bq://{project}"

    def holds_on(self, config) -> bool:
        """Whether an endpoint's PredictRequestResponseLoggingConfig already is this logging (no table given:
        any destination it logs to will do)."""
        return bool(config.enabled) and abs(config.sampling_rate - self.sampling_rate) < 1e-9 and (
            not self.table or config.bigquery_destination.output_uri == self.table)


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
                 serving_image: str = "", request_logging: RequestLogging | None = None) -> None:
        """`request_logging`: what an endpoint found must be brought to (the deploy step gives it); None leaves
        a found endpoint's logging as it is, and creates one with the default `RequestLogging()`."""
        self.registry = VertexModelRegistry(project, location, serving_image)
        self.project, self.location = project, location
        self.display_name = endpoint_display_name
        self.model_name = model_name
        self.machine_type, self.min_replica_count, self.max_replica_count = \
            machine_type, min_replica_count, max_replica_count
        self.where = f"Vertex AI endpoint {endpoint_display_name!r} ({project}/{location})"
        self.request_logging = request_logging
        self._endpoint = None
        self._held: str | None = None  # the lock label's value while we hold it

    def endpoint(self):
        """The endpoint, found by display name or created (with request-response logging), read afresh."""
        from google.cloud import aiplatform

        if self._endpoint is None:
            found = aiplatform.Endpoint.list(filter=f'display_name="{self.display_name}"', project=self.project,
                                             location=self.location)
            if found:
                self._endpoint = found[0]
                if self.request_logging is not None:
                    self._bring_logging_to(self.request_logging)
            else:
                logging = self.request_logging or RequestLogging()
                self._endpoint = aiplatform.Endpoint.create(
                    display_name=self.display_name, labels={MANAGED_LABEL: "true"}, project=self.project,
                    location=self.location, enable_request_response_logging=True,
                    request_response_logging_sampling_rate=logging.sampling_rate,
                    request_response_logging_bq_destination_table=logging.destination(self.project))
        self._endpoint._sync_gca_resource()
        return self._endpoint

    def _bring_logging_to(self, logging: RequestLogging) -> None:
        """One etag-guarded PATCH of the endpoint's request-response logging, if it differs (Endpoint.update
        takes no logging argument: the SDK's own GAPIC client is called as Endpoint.update calls it)."""
        from google.api_core import exceptions
        from google.cloud.aiplatform.compat.types import endpoint as gca_endpoint
        from google.cloud.aiplatform.compat.types import io as gca_io
        from google.protobuf import field_mask_pb2

        for _ in range(WRITE_ATTEMPTS):
            self._endpoint._sync_gca_resource()
            current = self._endpoint.gca_resource
            if logging.holds_on(current.predict_request_response_logging_config):
                return
            # No table asked for: keep the one it logs to (a new destination would start a new log).
            destination = logging.table or (current.predict_request_response_logging_config.bigquery_destination
                                            .output_uri if current.predict_request_response_logging_config.enabled
                                            else logging.destination(self.project))
            wanted = type(current)(current)
            wanted.predict_request_response_logging_config = gca_endpoint.PredictRequestResponseLoggingConfig(
                enabled=True, sampling_rate=logging.sampling_rate,
                bigquery_destination=gca_io.BigQueryDestination(output_uri=destination))
            try:
                self._endpoint._gca_resource = self._endpoint.api_client.update_endpoint(
                    endpoint=wanted,
                    update_mask=field_mask_pb2.FieldMask(paths=["predict_request_response_logging_config"]))
                return
            except exceptions.Conflict:  # another writer changed the endpoint since our read: read again
                continue
            except exceptions.BadRequest as error:  # 400: INVALID_ARGUMENT, FAILED_PRECONDITION
                raise RequestLoggingError(
                    f"{self.where}: Vertex refused request-response logging to {destination} at sampling rate "
                    f"{logging.sampling_rate}: {error.message}. The table must not exist yet (Vertex creates "
                    "it) and its dataset must; an endpoint already logging elsewhere keeps its table unless "
                    "request_log_table names it") from None
        raise RequestLoggingError(f"{self.where}: its request-response logging could not be set: the endpoint "
                                  f"changed under each of {WRITE_ATTEMPTS} attempts")

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
        """The labels as read now; the next `_write_labels` sends this read's etag."""
        return dict(self.endpoint().gca_resource.labels)

    def _write_labels(self, read: Mapping[str, str], change: Mapping[str, str | None]) -> None:
        """One etag-guarded write of `read` (the labels of the last read, not re-read here) with `change`:
        raises google.api_core Conflict (ABORTED) if anyone wrote the endpoint since that read."""
        labels = {key: value for key, value in ({**read, MANAGED_LABEL: "true", **change}).items()
                  if value is not None}
        self._endpoint.update(labels=labels)

    def _write_while_held(self, change: Mapping[str, str | None]) -> None:
        """A label write under our lock: read, check the lock is still ours, write with that read's etag."""
        from google.api_core import exceptions

        for _ in range(WRITE_ATTEMPTS):
            labels = self._labels()
            if self._held is not None and labels.get(LOCK_LABEL) != self._held:
                raise LockLost(self._lost_message(labels.get(LOCK_LABEL)))
            try:
                self._write_labels(labels, change)
                return
            except (exceptions.Conflict, exceptions.FailedPrecondition):
                continue  # someone wrote between our read and our write: read again
        raise LockLost(f"{self.where} changed under each of {WRITE_ATTEMPTS} attempts to write {sorted(change)}: "
                       "another writer is acting on it")

    def _lost_message(self, found: str | None) -> str:
        return (f"the deploy lock on {self.where} is no longer ours ({self._held}): it holds {found or 'no lock'}. "
                f"Our hold expired (after {LOCK_SECONDS} s) and another deploy or decision may have acted "
                "meanwhile; the label is left as found. Its journal (label mlops-transition) makes the next run "
                "finish whichever transition is unfinished")

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        from google.api_core import exceptions

        owner = secrets.token_hex(4)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            labels = self._labels()  # one read: it decides the lock is free AND its etag guards the take
            held = labels.get(LOCK_LABEL, "")
            if not held or int(held.split("-")[0]) < time.time():
                value = f"{int(time.time()) + LOCK_SECONDS}-{owner}"
                try:
                    self._write_labels(labels, {LOCK_LABEL: value})
                    self._held = value
                    break
                except (exceptions.Conflict, exceptions.FailedPrecondition):
                    pass  # another writer changed the endpoint after our read: read again
            if time.monotonic() > deadline:
                raise LockNotTaken(f"{self.where} is held by another deploy or decision ({held}): gave up after "
                                   f"{LOCK_WAIT_SECONDS} s")
            time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        except BaseException:
            self._release(quiet=True)  # the body's own error is the one to see
            raise
        self._release(quiet=False)

    def _release(self, quiet: bool) -> None:
        """Clears the lock if it is still ours; if not, leaves it and raises LockLost (`quiet`: prints instead)."""
        try:
            self._write_while_held({LOCK_LABEL: None})
        except Exception as error:  # quiet: the body failed, and its error is the one that must surface
            if not quiet:
                raise
            print(f"warning: the deploy lock on {self.where} was not released: {error}", file=sys.stderr)
        finally:
            self._held = None

    def read_journal(self) -> dict[str, Any] | None:
        value = self._labels().get(JOURNAL_LABEL)
        return decode_transition(value, self.model_name).to_dict() if value else None

    def write_journal(self, transition: Mapping[str, Any]) -> None:
        self._write_while_held({JOURNAL_LABEL: encode_transition(Transition.from_dict(transition))})

    def clear_journal(self) -> None:
        self._write_while_held({JOURNAL_LABEL: None})

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        yield  # a Vertex endpoint serves what is deployed

    def start_window(self) -> None:
        pass  # Cloud Monitoring keeps time series: the step's window is by time (the rollout state's step_started)

    def read_rollout(self) -> RolloutState | None:
        value = self._labels().get(ROLLOUT_LABEL)
        return RolloutState.decode(value) if value else None

    def write_rollout(self, state: RolloutState | None) -> None:
        self._write_while_held({ROLLOUT_LABEL: state.encode() if state else None})

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

