"""Conditional deploy with a canary, metric-gated promotion and automatic rollback.

Public API (the deploy pipeline, the canary decision and the runner call these):

    from deploy import open_backend, deploy_version
    backend = open_backend(registry_uri, model_name)              # local folder or "vertex"
    outcome = deploy_version(backend, "challenger", canary_percent=10)
    outcome.transition, outcome.deployed_model_id, outcome.split       # "first" | "canary" | "no-op"
    decision = decide_canary(backend, Thresholds(), Rollout(step_weights=(10, 25, 50)))
    decision.action, decision.reasons, decision.checks   # advance | promote | hold | rollback | none

Modules: plan.py (pure planner), transitions.py (journaled steps), smoke.py, rollout.py (steps and their
state), decision.py (checks and rules), statistics.py, evidence.py (the log and feedback SQL),
local_evidence.py and vertex_evidence.py (where it runs), report.py, local.py and vertex.py (the
backends), monitoring.py, replay.py; docs/deploy.md.
"""

from __future__ import annotations

from deploy.backend import EndpointBackend
from deploy.decision import Decision, Thresholds, decide_canary
from deploy.evidence import CanaryTables
from deploy.local import LocalBackend, local_endpoint_dir
from deploy.plan import DeployRefused
from deploy.rollout import Rollout, RolloutError
from deploy.smoke import SmokeTestFailed
from deploy.transitions import DeployOutcome, deploy_version, finish_interrupted
from registry.model_registry import VERTEX


def open_backend(registry_uri: str, model_name: str, endpoint_display_name: str = "", project: str = "",
                 location: str = "", **vertex_options) -> EndpointBackend:
    """The one place that picks the endpoint: `vertex` (Vertex AI), or the local endpoint beside a local registry."""
    if registry_uri == VERTEX:
        from deploy.vertex import VertexBackend

        return VertexBackend(project, location, endpoint_display_name or model_name, model_name, **vertex_options)
    return LocalBackend(local_endpoint_dir(registry_uri, endpoint_display_name), registry_uri, model_name)


__all__ = ["CanaryTables", "Decision", "DeployOutcome", "DeployRefused", "EndpointBackend", "LocalBackend", "Rollout",
           "RolloutError", "SmokeTestFailed", "Thresholds", "decide_canary", "deploy_version", "finish_interrupted",
           "open_backend"]
