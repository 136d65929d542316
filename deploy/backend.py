"""What a deploy transition needs from an endpoint, whichever it is (local or Vertex AI)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from deploy.plan import Deployed
from deploy.rollout import RolloutState
from registry.model_registry import ModelRegistry, ModelVersion

if TYPE_CHECKING:
    from deploy.decision import StepStats
    from deploy.evidence import CanaryTables, QueryRunner


class EndpointBackend(Protocol):
    model_name: str
    registry: ModelRegistry
    where: str  # for messages: which endpoint this is

    def live(self) -> list[Deployed]:
        """The deployed models, the version each serves and its traffic, read now."""

    def deploy(self, version: ModelVersion, split: Mapping[str, int]) -> str:
        """Deploy the version (`"0"` in the split) and return its deployed model id once it is ready."""

    def update_split(self, split: Mapping[str, int]) -> None: ...

    def undeploy(self, deployed_id: str) -> None: ...

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held for a whole decision and transition: two never act at once."""

    def read_journal(self) -> dict[str, Any] | None: ...

    def write_journal(self, transition: Mapping[str, Any]) -> None: ...

    def clear_journal(self) -> None: ...

    def serving(self) -> contextlib.AbstractContextManager[None]:
        """While held, predictions can be sent (locally: starts the router if none runs)."""

    def predict(self, instances: list[dict[str, Any]]) -> tuple[int, str, Any]:
        """(HTTP status, the deployed model id that answered, the JSON body)."""

    def start_window(self) -> None:
        """The canary went live, or its step began: step evidence (errors, latency) counts from now."""

    def read_rollout(self) -> RolloutState | None: ...

    def write_rollout(self, state: RolloutState | None) -> None:
        """Kept with the endpoint (None clears it): deploy/rollout.py."""

    def step_stats(self, live: list[Deployed], since: float, now: float) -> dict[str, StepStats]:
        """Per deployed model id: requests, errors and latency over [since, now]."""

    def query_runner(self, tables: CanaryTables | None) -> QueryRunner:
        """Runs the canary's evidence SQL on this platform's BigQuery (None: this backend's default tables)."""

