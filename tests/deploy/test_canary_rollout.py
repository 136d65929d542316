"""The progressive canary's decision logic on made-up evidence (seconds): the real decision, transitions, SQL on
DuckDB and rollout state, against a simulated endpoint and made-up log rows and labels (tests/deploy/
canary_data.py). A good canary goes 10 -> 25 -> 50 -> 100; a clearly worse one is rolled back before 50%;
too little traffic holds; a hard failure rolls back at once; promotion waits for conclusive quality; bad
rollouts and thresholds are refused before anything is read or changed."""

from __future__ import annotations

import pytest

from deploy.decision import Check, Thresholds, decide, decide_canary
from deploy.evidence import analysis_history
from deploy.plan import CHAMPION, PREVIOUS, REJECTED
from deploy.rollout import Rollout, RolloutError, RolloutState
from tests.deploy.canary_data import SimulatedEndpoint, Traffic

QUIET = {"report": lambda line: None}
ROLLOUT = Rollout(step_weights=(10, 25, 50), min_bake_minutes=0, min_requests=100, failure_threshold=2)
THRESHOLDS = Thresholds(min_labelled=200, max_brier_increase=0.03)


@pytest.fixture
def endpoint(tmp_path):
    return SimulatedEndpoint(tmp_path)


def _step(endpoint: SimulatedEndpoint, traffic: Traffic, requests: int, quality=None, errors=None, **send):
    counts = traffic.send(dict(endpoint.split), requests, quality, **send)
    endpoint.add_step_traffic(counts, errors)
    return decide_canary(endpoint, THRESHOLDS, ROLLOUT, **QUIET)


def test_a_good_canary_goes_10_25_50_then_100(endpoint):
    traffic = Traffic(endpoint.runner, seed=2)
    actions = []
    for _ in range(6):
        decision = _step(endpoint, traffic, 1500)
        actions.append((decision.action, decision.percent, decision.next_percent))
        if decision.action == "promote":
            break
    assert actions[:2] == [("advance", 10, 25), ("advance", 25, 50)]
    assert actions[-1] == ("promote", 50, 100) and {a for a, _, _ in actions[2:-1]} <= {"hold"}
    assert endpoint.splits[:2] == [{"1": 75, "2": 25}, {"1": 50, "2": 50}] and endpoint.split == {"2": 100}
    assert endpoint.registry.get("demo-taxi", CHAMPION).version == "2"
    assert endpoint.registry.get("demo-taxi", PREVIOUS).version == "1"
    assert endpoint.state is None and endpoint.journal is None  # the rollout ended, nothing half done
    # Every check passed at the promotion, each with its interval, and the history holds each analysis.
    assert {check.name: check.status for check in decision.checks} == {
        "traffic": "pass", "error rate": "pass", "p99 latency": "pass", "Brier score": "pass", "AUC": "pass",
        "prediction parity": "pass"}
    brier = next(check for check in decision.checks if check.name == "Brier score")
    assert brier.lower < brier.value < brier.upper <= THRESHOLDS.max_brier_increase
    assert [row["canary_percent"] for row in decision.history] == [a[1] for a in actions]
    assert analysis_history(endpoint.runner, endpoint.runner.tables, endpoint.where, "2") == list(decision.history)


@pytest.mark.parametrize("worse, caught_by", [
    ({"noise": 3.0}, ("AUC failed", "Brier score failed")),  # ranks worse: its Brier score about 0.15 worse
    ({"squeeze": 0.8}, ("Brier score failed", "prediction parity failed")),  # ranks alike, answers near 0.5
], ids=["ranks worse", "answers near 0.5"])
def test_a_clearly_worse_canary_is_rolled_back_before_50_percent(endpoint, worse, caught_by):
    traffic = Traffic(endpoint.runner, seed=3)
    seen = []
    for _ in range(6):
        decision = _step(endpoint, traffic, 1000, {"2": worse})
        seen.append((decision.action, decision.percent))
        if decision.action == "rollback":
            break
    assert seen[-1][0] == "rollback" and all(percent < 50 for _, percent in seen), seen
    assert [action for action, _ in seen][-2:] == ["hold", "rollback"]  # failure_threshold 2: one hold first
    assert "2 failed analyses in a row" in decision.reasons[0]
    assert any(reason.startswith(caught_by) for reason in decision.reasons), decision.reasons
    assert endpoint.split == {"1": 100} and endpoint.registry.get("demo-taxi", REJECTED).version == "2"
    assert endpoint.state is None


def test_too_little_traffic_is_held_not_promoted(endpoint):
    endpoint.split = {"1": 50, "2": 50}  # at the last step: the next would be the promotion
    traffic = Traffic(endpoint.runner, seed=4)
    decision = _step(endpoint, traffic, 120)  # about 60 canary requests at this step: fewer than 100
    assert decision.action == "hold" and decision.next_percent == 50
    assert "not enough evidence at step 3 of 4 (50%)" in decision.reasons[0]
    assert endpoint.split == {"1": 50, "2": 50} and endpoint.splits == []
    assert endpoint.state.analyses == 1 and endpoint.state.failures == 0


def test_promotion_waits_until_the_quality_check_is_conclusive(endpoint):
    endpoint.split = {"1": 50, "2": 50}
    traffic = Traffic(endpoint.runner, seed=5)
    decision = _step(endpoint, traffic, 400, labelled_share=0.3)  # about 60 labelled pairs
    assert decision.action == "hold"
    assert any(reason.startswith("not promoted until every check passes: Brier score") for reason in decision.reasons)
    assert endpoint.split == {"1": 50, "2": 50}


def test_every_canary_request_failing_rolls_back_at_once(endpoint):
    traffic = Traffic(endpoint.runner, seed=6)
    counts = traffic.send(dict(endpoint.split), 300)
    endpoint.add_step_traffic(counts, errors={"2": counts["2"]})
    decision = decide_canary(endpoint, THRESHOLDS, ROLLOUT, **QUIET)
    assert decision.action == "rollback" and decision.reasons[0].startswith("hard failure: error rate")
    assert endpoint.split == {"1": 100}


def test_a_new_step_starts_its_bake_time_and_its_evidence_afresh(endpoint):
    traffic = Traffic(endpoint.runner, seed=7)
    decision = _step(endpoint, traffic, 1500)
    assert decision.action == "advance" and endpoint.stats == {}  # the step's counters were reset
    assert endpoint.state.step_started > decision.window_end - 1 and endpoint.state.analyses == 1
    baking = decide_canary(endpoint, THRESHOLDS, Rollout((10, 25, 50), min_bake_minutes=30, min_requests=1),
                           **QUIET)
    assert baking.action == "hold" and "needs 1 and 30 min" in baking.reasons[0]


def test_decide_is_pure_and_counts_consecutive_failures():
    state = RolloutState("2", 0.0, 0.0, failures=0, analyses=3)
    passed = Check("traffic", "pass", "enough")
    failed = Check("prediction parity", "fail", "apart", 0.3, 0.2, 0.4, 0.1)
    assert decide((passed, failed), 25, state, ROLLOUT)[:3] == ("hold", 25, 1)
    assert decide((passed, failed), 25, RolloutState("2", 0.0, 0.0, failures=1), ROLLOUT)[:3] == ("rollback", 0, 2)
    assert decide((passed,), 25, state, ROLLOUT)[:3] == ("advance", 50, 0)
    assert decide((passed, Check("AUC", "skipped", "few positives")), 50, state, ROLLOUT)[:2] == ("promote", 100)
    assert decide((passed, Check("AUC", "inconclusive", "wide")), 50, state, ROLLOUT)[:2] == ("hold", 50)
    # A deploy's canary_percent between two steps counts as the step below.
    assert Rollout((10, 25, 50)).next_weight(5) == 10 and Rollout((10, 25, 50)).next_weight(30) == 50


@pytest.mark.parametrize("weights, message", [
    ((10, 50, 25), "must increase strictly"),
    ((10, 10, 50), "must increase strictly"),
    ((10, 120), "120 is not a whole percent from 1 to 100"),
    ((0, 50), "0 is not a whole percent"),
    ((100, 50), "must increase strictly"),
    ((25.5, 50), "25.5 is not a whole percent"),
    ((), "must be a list of whole percents"),
])
def test_bad_step_weights_are_refused_with_what_was_expected(weights, message):
    with pytest.raises(RolloutError, match=message):
        Rollout(weights)
    assert Rollout((10, 25, 100)).step_weights == (10, 25)  # 100 last is the promotion itself


@pytest.mark.parametrize("field, value", [("alpha", 0.0), ("alpha", 0.9), ("max_brier_increase", -0.1),
                                          ("max_js_divergence", 2.0), ("min_labelled", -1), ("max_auc_drop", True)])
def test_thresholds_out_of_range_are_refused(field, value):
    with pytest.raises(ValueError, match=f"threshold {field} must be"):
        Thresholds(**{field: value})


def test_the_decision_step_refuses_bad_input_before_touching_the_endpoint(tmp_path):
    """The pipeline's component checks the rollout and thresholds first: the endpoint is never opened."""
    from components.decide_canary import decide_canary as component

    arguments = dict(model_name="demo-taxi", endpoint_display_name="", registry_uri=str(tmp_path / "registry"),
                     project="", location="", request_log_table="", feedback_table="", min_bake_minutes=0.0,
                     min_requests=100, failure_threshold=2, max_error_rate_increase=0.01, max_p99_increase_ms=50.0,
                     min_labelled=200, max_brier_increase=0.02, min_positives=30, max_auc_drop=0.05,
                     max_js_divergence=0.1, alpha=0.05, metrics=None, report=None)
    with pytest.raises(RolloutError, match="must increase strictly"):
        component.python_func(step_weights=[10.0, 50.0, 25.0], **arguments)
    with pytest.raises(ValueError, match="threshold alpha"):
        component.python_func(step_weights=[10, 25, 50], **arguments | {"alpha": 1.5})
    assert not (tmp_path / "endpoint").exists()
