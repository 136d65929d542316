"""The canary decision: evidence for the canary against the champion over a window, then promote, roll
back or wait.

Evidence per deployed model: requests, errors and their rate, latency p50/p99, the distribution of
its predicted probabilities, and where labelled feedback exists (rows replayed with their label),
its accuracy on them. Locally it comes from the local endpoint's router stats (the window is since
the canary went live, when the stats are reset) and the replay's feedback file; on Vertex from Cloud
Monitoring (deploy/monitoring.py).

Rules, in order (`decide`, pure):
1. the canary served fewer than `min_requests` requests: wait;
2. its error rate exceeds the champion's by more than `max_error_rate_increase`: roll back;
3. its p99 latency exceeds the champion's by more than `max_p99_increase_ms`: roll back;
4. both have `min_labelled` feedback rows and the canary's accuracy is below the champion's by more
   than `max_accuracy_drop`: roll back;
5. otherwise promote.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

from deploy.backend import EndpointBackend
from deploy.plan import CHAMPION, canary_on, plan_promote, plan_rollback
from deploy.transitions import Report, apply_transition, finish_interrupted

Action = Literal["promote", "rollback", "wait", "none"]


@dataclasses.dataclass(frozen=True)
class Thresholds:
    min_requests: int = 100
    max_error_rate_increase: float = 0.01
    max_p99_increase_ms: float = 50.0
    min_labelled: int = 50
    max_accuracy_drop: float = 0.05

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"threshold {name} must be a number >= 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelEvidence:
    deployed_id: str
    version: str
    percent: int
    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    prediction_histogram: tuple[int, ...] = ()
    requests_per_bucket: dict[str, int] = dataclasses.field(default_factory=dict)
    labelled: int = 0
    correct: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


@dataclasses.dataclass(frozen=True)
class Decision:
    action: Action
    reasons: tuple[str, ...]
    canary: ModelEvidence | None = None
    champion: ModelEvidence | None = None
    thresholds: Thresholds = Thresholds()
    window_start: float = 0.0
    window_end: float = 0.0

    def metrics(self) -> dict[str, float]:
        """Flat numbers for KFP Metrics (undefined ones left out)."""
        numbers: dict[str, float] = {"promote": float(self.action == "promote"),
                                     "rollback": float(self.action == "rollback"), "wait": float(self.action == "wait")}
        for role, evidence in (("canary", self.canary), ("champion", self.champion)):
            if evidence is None:
                continue
            for name, value in (("requests", evidence.requests), ("error_rate", evidence.error_rate),
                                ("p50_ms", evidence.p50_ms), ("p99_ms", evidence.p99_ms),
                                ("accuracy", evidence.accuracy), ("labelled", evidence.labelled)):
                if value is not None:
                    numbers[f"{role}_{name}"] = round(float(value), 6)
        return numbers


def decide(canary: ModelEvidence, champion: ModelEvidence, thresholds: Thresholds) -> tuple[Action, list[str]]:
    if canary.requests < thresholds.min_requests:
        return "wait", [f"the canary served {canary.requests} requests, fewer than min_requests "
                        f"{thresholds.min_requests}: not enough evidence yet"]
    failures = []
    increase = canary.error_rate - champion.error_rate
    if increase > thresholds.max_error_rate_increase:
        failures.append(f"error rate {canary.error_rate:.2%} against the champion's {champion.error_rate:.2%}: "
                        f"{increase:.2%} more, over max_error_rate_increase {thresholds.max_error_rate_increase:.2%}")
    if canary.p99_ms is not None and champion.p99_ms is not None and \
            canary.p99_ms - champion.p99_ms > thresholds.max_p99_increase_ms:
        failures.append(f"p99 latency {canary.p99_ms:.1f} ms against the champion's {champion.p99_ms:.1f} ms: "
                        f"over max_p99_increase_ms {thresholds.max_p99_increase_ms:g}")
    if canary.p99_ms is None and canary.requests and canary.errors == canary.requests:
        failures.append("every canary request failed")
    if min(canary.labelled, champion.labelled) >= thresholds.min_labelled and \
            canary.accuracy is not None and champion.accuracy is not None and \
            champion.accuracy - canary.accuracy > thresholds.max_accuracy_drop:
        failures.append(f"accuracy on labelled feedback {canary.accuracy:.3f} against the champion's "
                        f"{champion.accuracy:.3f}: over max_accuracy_drop {thresholds.max_accuracy_drop:g}")
    if failures:
        return "rollback", failures
    return "promote", [f"the canary served {canary.requests} requests within every threshold"]


def decide_canary(backend: EndpointBackend, thresholds: Thresholds = Thresholds(), window_seconds: float = 3600.0,
                  act: bool = True, report: Report = print) -> Decision:
    """Gathers the evidence, decides, and (if `act`) promotes or rolls back, under the backend's exclusive
    hold: of two decisions at once one acts, the other then finds no canary and returns "none"."""
    with backend.exclusive():
        finish_interrupted(backend, report)
        champion_version = backend.registry.get(backend.model_name, CHAMPION)
        live = backend.live()
        champion = next((model for model in live if champion_version and model.version == champion_version.version),
                        None)
        canary = canary_on(live, champion.version) if champion else None
        if champion is None or canary is None:
            return Decision("none", (f"no canary beside a champion on {backend.where}: nothing to decide",))
        now = time.time()
        evidence, window_start = backend.evidence(live, window_seconds)
        action, reasons = decide(evidence[canary.id], evidence[champion.id], thresholds)
        decision = Decision(action, tuple(reasons), evidence[canary.id], evidence[champion.id], thresholds,
                            window_start, now)
        report(f"{action}: version {canary.version} against champion {champion.version}: {'; '.join(reasons)}")
        if act and action == "promote":
            apply_transition(backend, plan_promote(backend.model_name, canary.version, champion.version), report)
        elif act and action == "rollback":
            apply_transition(backend, plan_rollback(backend.model_name, canary.version, champion.version,
                                                    "; ".join(reasons)), report)
        return decision


def evidence_from_router_stats(live, stats: dict[str, Any], feedback: list[dict[str, Any]]) -> dict[str, ModelEvidence]:
    """The local endpoint's per-model stats (and replayed feedback) as evidence, per deployed model id."""
    evidence = {}
    for model in live:
        numbers = stats.get(model.id, {})
        rows = [row for row in feedback if row.get("deployedModelId") == model.id]
        evidence[model.id] = ModelEvidence(
            model.id, model.version, model.percent, int(numbers.get("requests", 0)), int(numbers.get("errors", 0)),
            numbers.get("latencyMs", {}).get("p50"), numbers.get("latencyMs", {}).get("p99"),
            tuple(numbers.get("predictionHistogram", ())), dict(numbers.get("requestsPerBucket", {})),
            len(rows), sum(1 for row in rows if (row["probability"] >= 0.5) == bool(row["label"])))
    return evidence
