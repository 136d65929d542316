"""The canary decision on the local endpoint while it serves, against real model servers (fault
injection on the canary's server, for tests only): too few requests -> hold; healthy -> advance, then
promote; errors -> rollback; slow -> rollback; two decisions at once -> one acts; kill -9 mid-promotion ->
consistent, and the next run finishes it. The evidence is the router's step counters and its request log
(no labels here: `min_labelled=0`; the demo models' answers differ by design, so prediction parity is not
judged). One endpoint, scenarios in sequence (each starts from the previous one's champion), so the model
servers start once per version. Labelled quality: tests/deploy/test_canary_rollout.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from contract.paths import PROJECT_ROOT
from deploy import deploy_version
from deploy.decision import Thresholds, decide_canary
from deploy.local import JOURNAL_FILE
from deploy.plan import CHAMPION, PREVIOUS, REJECTED
from deploy.report import decision_report
from deploy.rollout import Rollout
from tests.deploy.deploy_helpers import MODEL_NAME, RouterProcess, backend, register, send_traffic, split_by_version
from tests.report_rendering import CANDIDATE_COLOUR, CHAMPION_COLOUR, render_report

PASS_COLOUR = (0x13, 0x73, 0x33)  # deploy/report.py: a check that passed

THRESHOLDS = Thresholds(max_error_rate_increase=0.05, max_p99_increase_ms=60.0, min_labelled=0, max_js_divergence=1.0)
ROLLOUT = Rollout(step_weights=(25, 50), min_bake_minutes=0, min_requests=30, failure_threshold=1)
QUIET = {"report": lambda line: None}


@pytest.fixture(scope="module")
def endpoint(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("canary")
    target = backend(root)
    router = RouterProcess(target.state_dir)
    register(root / "registry", demo_models[0])
    deploy_version(target, **QUIET)
    try:
        yield root, target
    finally:
        router.stop()


def _canary(root, target, model_dir, faults=None, percent=50) -> str:
    version = register(root / "registry", model_dir, faults)
    outcome = deploy_version(target, canary_percent=percent, **QUIET)
    assert outcome.transition == "canary"
    return version.version


def test_too_few_requests_hold_then_a_healthy_canary_advances_and_is_promoted(endpoint, demo_models, tmp_path):
    root, target = endpoint
    canary = _canary(root, target, demo_models[1], percent=25)
    send_traffic(target, 10)
    holding = decide_canary(target, THRESHOLDS, ROLLOUT, **QUIET)
    assert holding.action == "hold" and "not enough evidence at step 1 of 3 (25%)" in holding.reasons[0]
    assert split_by_version(target) == {"1": 75, canary: 25}  # nothing moved

    send_traffic(target, 200)
    advanced = decide_canary(target, THRESHOLDS, ROLLOUT, **QUIET)
    assert advanced.action == "advance" and split_by_version(target) == {"1": 50, canary: 50}
    assert target.endpoint.stats()[advanced.canary.deployed_id]["requests"] == 0  # the new step counts afresh

    send_traffic(target, 120)
    promoted = decide_canary(target, THRESHOLDS, ROLLOUT, **QUIET)
    assert promoted.action == "promote", promoted.reasons
    assert promoted.canary.step.requests >= 30 and promoted.champion.step.requests > 0
    # The request log saw every answer of the rollout: its histogram counts them all.
    assert promoted.canary.logged.predictions >= promoted.canary.step.requests + advanced.canary.step.requests
    assert split_by_version(target) == {canary: 100}
    registry = target.registry
    assert registry.get(MODEL_NAME, CHAMPION).version == canary and registry.get(MODEL_NAME, PREVIOUS).version == "1"
    assert [row["action"] for row in promoted.history] == ["hold", "advance", "promote"]

    # The report a person opens: the verdict, its four plots drawn with both models (and the checks) in them.
    report = tmp_path / "decision.html"
    report.write_text(decision_report(promoted, "Canary decision"))
    assert "PROMOTE" in report.read_text() and f"canary v{canary}" in report.read_text()
    rendered = render_report(report, tmp_path / "rendered")
    assert len(rendered.plots) == 4
    assert all(rendered.pixels_near(plot, CANDIDATE_COLOUR) > 50 and rendered.pixels_near(plot, CHAMPION_COLOUR) > 50
               for plot in (0, 2, 3))
    # Each check per analysis: estimates in the status colours (passed: green), thresholds dashed.
    assert rendered.pixels_near(1, PASS_COLOUR, tolerance=30) > 30 and rendered.pixels_near(1, CHAMPION_COLOUR) > 30


@pytest.mark.parametrize("faults, reason", [
    ({"error_rate": 0.5, "after_requests": 3}, "error rate"),
    ({"delay_ms": 150}, "p99 latency"),
], ids=["errors", "slow"])
def test_a_failing_canary_is_rolled_back_and_the_champion_is_untouched(endpoint, demo_models, faults, reason):
    root, target = endpoint
    champion = target.registry.get(MODEL_NAME, CHAMPION).version
    canary = _canary(root, target, demo_models[2], faults)
    send_traffic(target, 100)
    decision = decide_canary(target, THRESHOLDS, ROLLOUT, **QUIET)
    assert decision.action == "rollback" and reason in " ".join(decision.reasons), decision.reasons
    assert split_by_version(target) == {champion: 100}
    assert target.registry.get(MODEL_NAME, REJECTED).version == canary
    assert target.registry.get(MODEL_NAME, CHAMPION).version == champion


def test_two_decisions_at_once_never_both_act(endpoint, demo_models):
    root, target = endpoint
    canary = _canary(root, target, demo_models[1])
    send_traffic(target, 100)
    results = []
    threads = [threading.Thread(target=lambda: results.append(decide_canary(target, THRESHOLDS, ROLLOUT,
                                                                            **QUIET).action)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["none", "promote"]
    assert split_by_version(target) == {canary: 100}


def test_kill_9_during_promotion_leaves_the_endpoint_consistent_and_a_rerun_finishes(endpoint, demo_models):
    root, target = endpoint
    old_champion = target.registry.get(MODEL_NAME, CHAMPION).version
    canary = _canary(root, target, demo_models[0])
    send_traffic(target, 100)
    script = ("from pathlib import Path; from deploy.decision import decide_canary; "
              "from tests.deploy.deploy_helpers import backend; "
              "from tests.deploy.test_canary_decision import THRESHOLDS, ROLLOUT; "
              f"decide_canary(backend(Path({str(root)!r})), THRESHOLDS, ROLLOUT)")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=os.environ.copy(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = target.state_dir / JOURNAL_FILE
    deadline = time.monotonic() + 60
    while not journal.exists():
        assert process.poll() is None and time.monotonic() < deadline, "the promotion never started"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()

    described = target.endpoint.describe()
    split = described["trafficSplit"]
    assert sum(split.values()) == 100
    ready = {model["id"] for model in described["deployedModels"] if model["state"] == "ready"}
    assert {deployed_id for deployed_id, percent in split.items() if percent} <= ready
    assert journal.exists()  # killed mid-transition: the journal says what to finish

    rerun = decide_canary(target, THRESHOLDS, ROLLOUT, **QUIET)  # finishes the promotion, then finds no canary
    assert rerun.action == "none" and not journal.exists()
    assert split_by_version(target) == {canary: 100}
    registry = target.registry
    assert registry.get(MODEL_NAME, CHAMPION).version == canary
    assert registry.get(MODEL_NAME, PREVIOUS).version == old_champion
