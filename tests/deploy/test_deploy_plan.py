"""The planner's rules, without an endpoint: first, canary, no-op, and every refusal."""

import pytest

from deploy.plan import (
    CHAMPION,
    Deployed,
    DeployRefused,
    Transition,
    plan_deploy,
    plan_promote,
    plan_rollback,
    split_by_id,
)


def test_first_model_takes_everything_and_becomes_champion():
    plan = plan_deploy([], "m", "1", None)
    assert plan.kind == "first"
    assert [(s.kind, s.version, dict(s.split or {}), s.alias) for s in plan.steps] == [
        ("deploy", "1", {"1": 100}, ""), ("alias", "1", {}, CHAMPION)]


def test_second_model_is_a_canary_beside_the_champion():
    plan = plan_deploy([Deployed("4", "1", 100)], "m", "2", "1", canary_percent=10)
    assert plan.kind == "canary"
    assert [dict(s.split) for s in plan.steps] == [{"2": 10, "1": 90}]
    assert split_by_id(plan.steps[0].split, [Deployed("4", "1", 100)], "2") == {"0": 10, "4": 90}


def test_a_deployed_version_is_a_no_op():
    assert plan_deploy([Deployed("4", "1", 90), Deployed("5", "2", 10)], "m", "2", "1").steps == ()


@pytest.mark.parametrize("live, champion, rejected, message", [
    ([Deployed("4", "1", 90), Deployed("5", "3", 10)], "1", None, "is a canary on the endpoint already"),
    ([Deployed("4", "1", 100)], "7", None, "none is its champion"),
    ([Deployed("4", "", 100)], "1", None, "serve no registered version"),
    ([Deployed("4", "1", 100)], "1", "2", "carries alias 'rejected'"),
])
def test_refusals_name_the_reason(live, champion, rejected, message):
    with pytest.raises(DeployRefused, match=message):
        plan_deploy(live, "m", "2", champion, rejected_version=rejected)


@pytest.mark.parametrize("percent", [0, 100, 10.5, "10", True, -3])
def test_canary_percent_must_be_a_whole_percent_1_to_99(percent):
    with pytest.raises(DeployRefused, match="canary_percent must be a whole percent 1-99"):
        plan_deploy([], "m", "1", None, canary_percent=percent)


def test_promote_and_rollback_move_traffic_before_undeploying_and_survive_the_journal():
    promote = plan_promote("m", "2", "1")
    assert [s.kind for s in promote.steps] == ["split", "undeploy", "alias", "alias"]
    rollback = plan_rollback("m", "2", "1", "errors")
    assert [(s.kind, s.version) for s in rollback.steps] == [("split", "1"), ("undeploy", "2"), ("alias", "2")]
    for transition in (promote, rollback):
        assert Transition.from_dict(transition.to_dict()) == transition
