"""The canary decision on the local endpoint while it serves, against real model servers (fault
injection on the canary's server, for tests only): too few requests -> wait; healthy -> promote;
errors -> rollback; slow -> rollback; two decisions at once -> one acts; kill -9 mid-promotion ->
consistent, and the next run finishes it. One endpoint, scenarios in sequence (each starts from the
previous one's champion), so the model servers start once per version."""

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
from tests.deploy.deploy_helpers import MODEL_NAME, RouterProcess, backend, register, send_traffic, split_by_version
from tests.report_rendering import CANDIDATE_COLOUR, CHAMPION_COLOUR, render_report

THRESHOLDS = Thresholds(min_requests=30, max_error_rate_increase=0.05, max_p99_increase_ms=60.0)
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


def _canary(root, target, model_dir, faults=None) -> str:
    version = register(root / "registry", model_dir, faults)
    outcome = deploy_version(target, canary_percent=50, **QUIET)
    assert outcome.transition == "canary"
    return version.version


def test_too_few_requests_wait_then_a_healthy_canary_is_promoted(endpoint, demo_models, tmp_path):
    root, target = endpoint
    canary = _canary(root, target, demo_models[1])
    send_traffic(target, 10)
    waiting = decide_canary(target, THRESHOLDS, **QUIET)
    assert waiting.action == "wait" and "fewer than min_requests 30" in waiting.reasons[0]
    assert split_by_version(target) == {"1": 50, canary: 50}  # nothing moved

    send_traffic(target, 120)
    promoted = decide_canary(target, THRESHOLDS, **QUIET)
    assert promoted.action == "promote", promoted.reasons
    assert promoted.canary.requests >= 30 and promoted.champion.requests > 0
    assert sum(promoted.canary.prediction_histogram) == promoted.canary.requests - promoted.canary.errors
    assert split_by_version(target) == {canary: 100}
    registry = target.registry
    assert registry.get(MODEL_NAME, CHAMPION).version == canary and registry.get(MODEL_NAME, PREVIOUS).version == "1"

    # The report a person opens: the verdict, and its three plots drawn with both models in them.
    report = tmp_path / "decision.html"
    report.write_text(decision_report(promoted, "Canary decision"))
    assert "PROMOTE" in report.read_text() and f"canary v{canary}" in report.read_text()
    rendered = render_report(report, tmp_path / "rendered")
    assert len(rendered.plots) == 3
    assert all(rendered.pixels_near(plot, CANDIDATE_COLOUR) > 50 and rendered.pixels_near(plot, CHAMPION_COLOUR) > 50
               for plot in range(3))


@pytest.mark.parametrize("faults, reason", [
    ({"error_rate": 0.5, "after_requests": 3}, "error rate"),
    ({"delay_ms": 150}, "p99 latency"),
], ids=["errors", "slow"])
def test_a_failing_canary_is_rolled_back_and_the_champion_is_untouched(endpoint, demo_models, faults, reason):
    root, target = endpoint
    champion = target.registry.get(MODEL_NAME, CHAMPION).version
    canary = _canary(root, target, demo_models[2], faults)
    send_traffic(target, 100)
    decision = decide_canary(target, THRESHOLDS, **QUIET)
    assert decision.action == "rollback" and reason in " ".join(decision.reasons), decision.reasons
    assert split_by_version(target) == {champion: 100}
    assert target.registry.get(MODEL_NAME, REJECTED).version == canary
    assert target.registry.get(MODEL_NAME, CHAMPION).version == champion


def test_two_decisions_at_once_never_both_act(endpoint, demo_models):
    root, target = endpoint
    canary = _canary(root, target, demo_models[1])
    send_traffic(target, 100)
    results = []
    threads = [threading.Thread(target=lambda: results.append(decide_canary(target, THRESHOLDS, **QUIET).action))
               for _ in range(2)]
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
    script = ("from pathlib import Path; from deploy.decision import Thresholds, decide_canary; "
              "from tests.deploy.deploy_helpers import backend; "
              f"decide_canary(backend(Path({str(root)!r})), Thresholds(min_requests=30))")
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

    rerun = decide_canary(target, THRESHOLDS, **QUIET)  # finishes the promotion first, then finds no canary
    assert rerun.action == "none" and not journal.exists()
    assert split_by_version(target) == {canary: 100}
    registry = target.registry
    assert registry.get(MODEL_NAME, CHAMPION).version == canary
    assert registry.get(MODEL_NAME, PREVIOUS).version == old_champion
