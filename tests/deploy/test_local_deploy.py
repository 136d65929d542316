"""Deploying registered versions to the local endpoint while it serves: first at 100% as champion, the
next as a 10% canary, a rerun changes nothing; a version that answers differently is rolled back."""

import json
from pathlib import Path

import pytest

from deploy import SmokeTestFailed, deploy_version
from deploy.plan import CHAMPION, REJECTED
from tests.deploy.deploy_helpers import MODEL_NAME, RouterProcess, backend, register


@pytest.fixture(scope="module")
def serving_sequence(demo_models, tmp_path_factory):
    """One endpoint, serving throughout: v1 first, v2 as canary, v2 again, v3 (broken) refused."""

    root = tmp_path_factory.mktemp("deploy")
    target = backend(root)
    router = RouterProcess(target.state_dir)
    try:
        register(root / "registry", demo_models[0])
        first = deploy_version(target, "challenger")
        register(root / "registry", demo_models[1])
        canary = deploy_version(target, "challenger", canary_percent=10)
        again = deploy_version(target, "2")
        yield {"root": root, "backend": target, "first": first, "canary": canary, "again": again,
               "described": target.endpoint.describe()}
    finally:
        router.stop()


def test_first_version_serves_100_percent_as_champion(serving_sequence):
    first = serving_sequence["first"]
    assert (first.transition, first.version, first.split) == ("first", "1", {first.deployed_model_id: 100})
    assert first.smoke_test.startswith("smoke test passed")
    assert serving_sequence["backend"].registry.get(MODEL_NAME, CHAMPION).version == "1"


def test_second_version_is_a_90_10_canary(serving_sequence):
    first, canary = serving_sequence["first"], serving_sequence["canary"]
    assert canary.transition == "canary"
    assert canary.split == {first.deployed_model_id: 90, canary.deployed_model_id: 10}
    assert "passed" in canary.smoke_test
    models = {m["id"]: m for m in serving_sequence["described"]["deployedModels"]}
    assert models[canary.deployed_model_id]["state"] == "ready"
    assert models[canary.deployed_model_id]["model"].endswith("/versions/2/model")


def test_a_rerun_is_a_no_op(serving_sequence):
    again, canary = serving_sequence["again"], serving_sequence["canary"]
    assert (again.transition, again.deployed_model_id, again.split) == ("no-op", canary.deployed_model_id, canary.split)
    assert not (serving_sequence["backend"].state_dir / "deploy_transition.json").exists()


def test_a_version_that_fails_its_smoke_test_is_rolled_back_offline(demo_models, tmp_path):
    """No router runs: the deploy records the state, the smoke test starts the endpoint for itself. The
    second version's record is tampered with, as a server reading inputs differently would answer."""
    target = backend(tmp_path)
    register(tmp_path / "registry", demo_models[0])
    first = deploy_version(target)
    broken = register(tmp_path / "registry", demo_models[1])
    record_path = Path(broken.uri) / "smoke_test.json"
    record = json.loads(record_path.read_text())
    record["predictions"][2] += 0.25
    record_path.write_text(json.dumps(record))
    with pytest.raises(SmokeTestFailed, match="instance 2 got"):
        deploy_version(target)
    assert target.endpoint.describe()["trafficSplit"] == {first.deployed_model_id: 100}
    assert [m.version for m in target.live()] == ["1"]
    assert target.registry.get(MODEL_NAME, REJECTED).version == "2"
    assert target.endpoint.router_url() is None  # the router it started is stopped again


def test_a_deploy_killed_before_its_smoke_test_is_smoke_tested_by_the_next_run(demo_models, tmp_path):
    """The state a kill -9 leaves between the deploy call and the smoke test: the canary deployed, the journal
    still holding the deploy. The next run finishes it, smoke test included, before anything else."""
    from deploy.plan import plan_deploy
    from deploy.transitions import _run_steps

    target = backend(tmp_path)
    register(tmp_path / "registry", demo_models[0])
    deploy_version(target, report=lambda line: None)
    register(tmp_path / "registry", demo_models[1])
    transition = plan_deploy(target.live(), MODEL_NAME, "2", "1")
    target.write_journal(transition.to_dict())
    _run_steps(target, transition, lambda line: None)  # ...and killed here

    lines: list[str] = []
    again = deploy_version(target, report=lines.append)
    assert lines[0] == f"finishing an interrupted canary of version 2 on {target.where}"
    assert any(line.startswith("smoke test passed: deployed model 2") for line in lines), lines
    assert again.transition == "no-op" and target.read_journal() is None
