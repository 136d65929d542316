"""The canary decision: one analysis of the canary against the champion, then advance, promote, hold or roll back.

Evidence, per deployed model (deploy/evidence.py, deploy/statistics.py):
- at the current step (since it began): requests, errors, latency p50/p99 (locally the local endpoint's
  router, on Vertex Cloud Monitoring: deploy/vertex_evidence.py);
- over the whole rollout (since the canary went live): the request-response log joined with the
  feedback table: labelled predictions, the predicted-probability histogram, traffic over time.

Checks, each pass, fail, inconclusive or skipped, with its estimate, interval and threshold:
1. traffic: `min_requests` canary requests and `min_bake_minutes` at this step (else inconclusive);
2. error rate: over the champion's by more than `max_error_rate_increase` fails; every canary request
   failing is a hard failure (rolled back at once);
3. p99 latency: over the champion's by more than `max_p99_increase_ms` fails;
4. Brier score: canary minus champion on time-paired labelled requests, with a confidence sequence
   (valid at every look): its lower bound over `max_brier_increase` fails, its upper bound at or under
   it passes, else inconclusive; fewer than `min_labelled` pairs is inconclusive (`min_labelled=0`:
   labels are not required, and the check only fails, never holds);
5. AUC (where each model has `min_positives` positives and as many negatives, else skipped): the
   difference's interval entirely below `-max_auc_drop` fails, entirely above it passes;
6. prediction parity: JS divergence of the two predicted-probability histograms; the interval above
   `max_js_divergence` fails, at or under it passes; fewer than `min_requests` logged canary
   predictions is inconclusive.
Checks 2 and 3 are inconclusive until the step has `min_requests` canary requests.

Rules (`decide`, pure), in order:
- a hard failure: roll back now;
- a failed check: a failed analysis; `failure_threshold` in a row roll back, fewer hold (and count);
- traffic inconclusive: hold (too little evidence is never a pass);
- the next step is below 100%: advance to it (the other checks gather evidence over the steps);
- the next step is 100%: promote only if every check passed (or was skipped), else hold.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

from deploy.backend import EndpointBackend
from deploy.evidence import (
    CanaryTables,
    LoggedPredictions,
    analysis_history,
    read_logged_predictions,
    record_analysis,
)
from deploy.plan import CHAMPION, canary_on, plan_advance, plan_promote, plan_rollback
from deploy.rollout import FULL_TRAFFIC, Rollout, RolloutState
from deploy.statistics import (
    Estimate,
    auc_difference,
    brier_difference,
    brier_score,
    js_divergence,
    log_loss,
    spent_alpha,
)
from deploy.transitions import Report, apply_transition, finish_interrupted

Action = Literal["advance", "promote", "hold", "rollback", "none"]
Status = Literal["pass", "fail", "inconclusive", "skipped"]


@dataclasses.dataclass(frozen=True)
class Thresholds:
    max_error_rate_increase: float = 0.01
    max_p99_increase_ms: float = 50.0
    min_labelled: int = 200  # labelled pairs before the Brier check can pass; 0: labels not required
    max_brier_increase: float = 0.02
    min_positives: int = 100  # labelled positives (and negatives) per model before AUC is judged
    max_auc_drop: float = 0.05
    max_js_divergence: float = 0.1
    alpha: float = 0.05  # the false-alarm rate of each statistical check over all its looks

    def __post_init__(self) -> None:
        ranges = {"max_error_rate_increase": (0.0, 1.0), "max_p99_increase_ms": (0.0, 3_600_000.0),
                  "max_brier_increase": (0.0, 1.0), "max_auc_drop": (0.0, 1.0), "max_js_divergence": (0.0, 1.0),
                  "alpha": (1e-6, 0.5)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ValueError(f"threshold {name} must be a number from {low:g} to {high:g}, got {value!r}")
        for name in ("min_labelled", "min_positives"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"threshold {name} must be a whole number >= 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class StepStats:
    """One deployed model at the current step: from the local router or Cloud Monitoring."""

    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclasses.dataclass(frozen=True, eq=False)
class ModelEvidence:
    deployed_id: str
    version: str
    percent: int
    step: StepStats = StepStats()
    logged: LoggedPredictions = dataclasses.field(default_factory=LoggedPredictions)

    @property
    def brier(self) -> float | None:
        return brier_score(self.logged.probabilities, self.logged.labels)

    @property
    def log_loss(self) -> float | None:
        return log_loss(self.logged.probabilities, self.logged.labels)


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    value: float | None = None
    lower: float | None = None
    upper: float | None = None
    threshold: float | None = None
    hard: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class Decision:
    action: Action
    reasons: tuple[str, ...]
    canary: ModelEvidence | None = None
    champion: ModelEvidence | None = None
    checks: tuple[Check, ...] = ()
    thresholds: Thresholds = Thresholds()
    rollout: Rollout = Rollout()
    percent: int = 0  # the canary's share when decided
    next_percent: int = 0  # its share after the decision
    state: RolloutState | None = None  # as left by the decision (None after a promotion or rollback)
    window_start: float = 0.0  # the rollout's start
    step_start: float = 0.0
    window_end: float = 0.0
    bucket_seconds: int = 60
    history: tuple[dict[str, Any], ...] = ()  # every analysis of this canary, this one last

    def metrics(self) -> dict[str, float]:
        """Flat numbers for KFP Metrics (undefined ones left out)."""
        numbers: dict[str, float] = {action: float(self.action == action)
                                     for action in ("advance", "promote", "hold", "rollback")}
        numbers |= {"canary_percent": float(self.percent), "next_percent": float(self.next_percent)}
        for role, evidence in (("canary", self.canary), ("champion", self.champion)):
            if evidence is None:
                continue
            for name, value in (("requests", evidence.step.requests), ("error_rate", evidence.step.error_rate),
                                ("p50_ms", evidence.step.p50_ms), ("p99_ms", evidence.step.p99_ms),
                                ("labelled", evidence.logged.labelled), ("brier", evidence.brier),
                                ("log_loss", evidence.log_loss)):
                if value is not None:
                    numbers[f"{role}_{name}"] = round(float(value), 6)
        for check in self.checks:
            key = check.name.replace(" ", "_")
            for part in ("value", "lower", "upper"):
                if getattr(check, part) is not None:
                    numbers[f"{key}_{part}"] = round(float(getattr(check, part)), 6)
        return numbers


def _format(value: float) -> str:
    return f"{value:+.4f}"


def _interval_check(name: str, estimate: Estimate, threshold: float, worse_is_higher: bool, what: str) -> Check:
    """Fail when the interval lies entirely on the wrong side of the threshold, pass when entirely on the
    right side, inconclusive when it straddles it."""
    bounds = f"{_format(estimate.value)} [{_format(estimate.lower)}, {_format(estimate.upper)}]"
    if worse_is_higher:
        failed, passed = estimate.lower > threshold, estimate.upper <= threshold
        side = f"{'over' if failed else 'at or under' if passed else 'reaches over'} {threshold:g}"
    else:
        failed, passed = estimate.upper < threshold, estimate.lower >= threshold
        side = f"{'under' if failed else 'at or over' if passed else 'reaches under'} {threshold:g}"
    status: Status = "fail" if failed else "pass" if passed else "inconclusive"
    return Check(name, status, f"{what} {bounds} ({estimate.samples}): {side}", estimate.value, estimate.lower,
                 estimate.upper, threshold)


def analyse(canary: ModelEvidence, champion: ModelEvidence, state: RolloutState, rollout: Rollout,
            thresholds: Thresholds, now: float) -> tuple[Check, ...]:
    """Every check of one analysis (pure)."""
    step = canary.step
    enough = step.requests >= rollout.min_requests
    baked = (now - state.step_started) / 60.0
    look = state.analyses + 1
    checks = [Check("traffic", "pass" if enough and baked >= rollout.min_bake_minutes else "inconclusive",
                    f"{step.requests} canary requests in {baked:.1f} min at this step; needs {rollout.min_requests} "
                    f"and {rollout.min_bake_minutes:g} min", float(step.requests),
                    threshold=float(rollout.min_requests))]

    increase = step.error_rate - champion.step.error_rate
    if step.requests and step.errors == step.requests:
        checks.append(Check("error rate", "fail", f"every canary request failed ({step.errors} of {step.requests})",
                            increase, threshold=thresholds.max_error_rate_increase, hard=True))
    elif not enough:
        checks.append(Check("error rate", "inconclusive", f"{step.requests} canary requests, fewer than "
                            f"min_requests {rollout.min_requests}", increase,
                            threshold=thresholds.max_error_rate_increase))
    else:
        failed = increase > thresholds.max_error_rate_increase
        checks.append(Check("error rate", "fail" if failed else "pass",
                            f"{step.error_rate:.2%} against the champion's {champion.step.error_rate:.2%}: "
                            f"{increase:+.2%}, {'over' if failed else 'within'} max_error_rate_increase "
                            f"{thresholds.max_error_rate_increase:.2%}", increase,
                            threshold=thresholds.max_error_rate_increase))

    if not enough or step.p99_ms is None or champion.step.p99_ms is None:
        checks.append(Check("p99 latency", "inconclusive", "too few requests with a latency at this step",
                            threshold=thresholds.max_p99_increase_ms))
    else:
        slower = step.p99_ms - champion.step.p99_ms
        failed = slower > thresholds.max_p99_increase_ms
        checks.append(Check("p99 latency", "fail" if failed else "pass",
                            f"{step.p99_ms:.1f} ms against the champion's {champion.step.p99_ms:.1f} ms: "
                            f"{slower:+.1f} ms, {'over' if failed else 'within'} max_p99_increase_ms "
                            f"{thresholds.max_p99_increase_ms:g}", slower, threshold=thresholds.max_p99_increase_ms))

    ours, theirs = canary.logged, champion.logged
    brier = brier_difference((ours.times, ours.probabilities, ours.labels),
                             (theirs.times, theirs.probabilities, theirs.labels), thresholds.alpha)
    if brier.samples < max(1, thresholds.min_labelled):
        status: Status = "skipped" if thresholds.min_labelled == 0 else "inconclusive"
        checks.append(Check("Brier score", status, f"{brier.samples} labelled pairs, fewer than min_labelled "
                            f"{thresholds.min_labelled}" + (" (labels not required)" if status == "skipped" else ""),
                            threshold=thresholds.max_brier_increase))
    else:
        check = _interval_check("Brier score", brier, thresholds.max_brier_increase, True,
                                "canary minus champion Brier score on labelled pairs")
        if thresholds.min_labelled == 0 and check.status == "inconclusive":
            check = dataclasses.replace(check, status="skipped", detail=check.detail + " (labels not required)")
        checks.append(check)

    classes = [int((model.labels == label).sum()) for model in (ours, theirs) for label in (0, 1)]
    if min(classes) < max(2, thresholds.min_positives):
        checks.append(Check("AUC", "skipped", f"fewer than min_positives {thresholds.min_positives} labelled "
                            "positives or negatives on one of the models: AUC is not judged",
                            threshold=-thresholds.max_auc_drop))
    else:
        auc = auc_difference((ours.probabilities, ours.labels), (theirs.probabilities, theirs.labels),
                             spent_alpha(thresholds.alpha, look))
        checks.append(_interval_check("AUC", auc, -thresholds.max_auc_drop, False, "canary minus champion AUC"))

    if ours.predictions < rollout.min_requests or theirs.predictions < rollout.min_requests:
        checks.append(Check("prediction parity", "inconclusive",
                            f"{ours.predictions} canary and {theirs.predictions} champion predictions logged; needs "
                            f"{rollout.min_requests} each", threshold=thresholds.max_js_divergence))
    else:
        divergence = js_divergence(ours.histogram, theirs.histogram, spent_alpha(thresholds.alpha, look))
        checks.append(_interval_check("prediction parity", divergence, thresholds.max_js_divergence, True,
                                      "JS divergence of the predicted-probability histograms"))
    return tuple(checks)


def decide(checks: tuple[Check, ...], percent: int, state: RolloutState, rollout: Rollout
           ) -> tuple[Action, int, int, list[str]]:
    """(action, the canary's share after it, consecutive failed analyses after it, reasons) (pure)."""
    hard = [check for check in checks if check.status == "fail" and check.hard]
    if hard:
        return "rollback", 0, state.failures + 1, [f"hard failure: {check.name}: {check.detail}" for check in hard]
    failed = [check for check in checks if check.status == "fail"]
    if failed:
        failures = state.failures + 1
        reasons = [f"{check.name} failed: {check.detail}" for check in failed]
        if failures >= rollout.failure_threshold:
            return "rollback", 0, failures, [f"{failures} failed analyses in a row (failure_threshold "
                                             f"{rollout.failure_threshold})", *reasons]
        return "hold", percent, failures, [f"failed analysis {failures} of failure_threshold "
                                           f"{rollout.failure_threshold}: holding at {percent}%", *reasons]
    traffic = next(check for check in checks if check.name == "traffic")
    if traffic.status != "pass":
        return "hold", percent, 0, [f"not enough evidence at {rollout.describe(percent)}: {traffic.detail}"]
    following = rollout.next_weight(percent)
    if following < FULL_TRAFFIC:
        return "advance", following, 0, [f"every check passed or is still gathering evidence at "
                                         f"{rollout.describe(percent)}: the canary goes to {following}%"]
    pending = [check for check in checks if check.status == "inconclusive"]
    if pending:
        return "hold", percent, 0, [f"not promoted until every check passes: {check.name}: {check.detail}"
                                    for check in pending]
    return "promote", FULL_TRAFFIC, 0, [f"every check passed at {rollout.describe(percent)}: the canary takes 100%"]


def decide_canary(backend: EndpointBackend, thresholds: Thresholds = Thresholds(), rollout: Rollout = Rollout(),
                  tables: CanaryTables | None = None, act: bool = True, report: Report = print,
                  now: float | None = None) -> Decision:
    """One analysis and its action, under the backend's exclusive hold: of two decisions at once one acts,
    the other then finds the endpoint as the first left it. `tables`: the request-response log and feedback
    tables (default: the backend's own, locally the local endpoint's)."""
    runner = backend.query_runner(tables)  # a missing or malformed table is refused before the endpoint is touched
    with backend.exclusive():
        finish_interrupted(backend, report)
        champion_version = backend.registry.get(backend.model_name, CHAMPION)
        live = backend.live()
        champion = next((model for model in live if champion_version and model.version == champion_version.version),
                        None)
        canary = canary_on(live, champion.version) if champion else None
        if champion is None or canary is None:
            return Decision("none", (f"no canary beside a champion on {backend.where}: nothing to decide",),
                            rollout=rollout, thresholds=thresholds)
        now = time.time() if now is None else now
        state = backend.read_rollout()
        if state is None or state.canary_id != canary.id:  # deployed before states were kept, or lost
            state = RolloutState.begin(canary.id, now)
            report(f"no rollout state for canary {canary.id}: its rollout and step count from now")
        stats = backend.step_stats(live, state.step_started, now)
        logged, bucket = read_logged_predictions(runner, runner.tables, state.started, now + 1.0)
        evidence = {model.id: ModelEvidence(model.id, model.version, model.percent, stats.get(model.id, StepStats()),
                                            logged.get(model.id, LoggedPredictions())) for model in live}
        checks = analyse(evidence[canary.id], evidence[champion.id], state, rollout, thresholds, now)
        action, next_percent, failures, reasons = decide(checks, canary.percent, state, rollout)
        report(f"{action}: version {canary.version} at {canary.percent}% against champion {champion.version}: "
               f"{'; '.join(reasons)}")
        analysed = dataclasses.replace(state, failures=failures, analyses=state.analyses + 1)
        record_analysis(runner, runner.tables, {
            "decided_at": now, "endpoint": backend.where, "model_name": backend.model_name,
            "canary_version": canary.version, "champion_version": champion.version,
            "canary_deployed_model_id": canary.id, "canary_percent": canary.percent, "action": action,
            "next_percent": next_percent, "checks": [check.to_dict() for check in checks], "reasons": reasons})
        history = tuple(analysis_history(runner, runner.tables, backend.where, canary.id))
        left: RolloutState | None = analysed
        if act and action in ("advance", "promote", "rollback"):
            backend.write_rollout(analysed)
            transition = {"advance": lambda: plan_advance(backend.model_name, canary.version, champion.version,
                                                          next_percent),
                          "promote": lambda: plan_promote(backend.model_name, canary.version, champion.version),
                          "rollback": lambda: plan_rollback(backend.model_name, canary.version, champion.version,
                                                            "; ".join(reasons))}[action]()
            apply_transition(backend, transition, report)
            left = backend.read_rollout()
        elif act:
            backend.write_rollout(analysed)
        return Decision(action, tuple(reasons), evidence[canary.id], evidence[champion.id], checks, thresholds,
                        rollout, canary.percent, next_percent, left, state.started,
                        state.step_started, now, bucket, history)


def step_stats_from_router(stats: dict[str, Any]) -> dict[str, StepStats]:
    """The local endpoint's per-model stats (since the step began: the router's were reset then)."""
    return {deployed_id: StepStats(int(numbers.get("requests", 0)), int(numbers.get("errors", 0)),
                                   numbers.get("latencyMs", {}).get("p50"), numbers.get("latencyMs", {}).get("p99"))
            for deployed_id, numbers in stats.items()}
