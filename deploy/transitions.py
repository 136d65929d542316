"""Running a transition: journaled, idempotent steps, under the backend's exclusive hold.

The transition is written to the journal before its first step and cleared after
its last. Each step checks the live state first and does nothing if it already
holds (the version is deployed, the split is already that split, the version is
already gone), so running a transition again from its first step finishes it,
whatever point a crash (kill -9 included) stopped it at. Every endpoint change
is one atomic call (deploy with its split, a whole split, an undeploy of a model
without traffic), so between steps the split sums to 100 and only models that
answered their health check carry traffic.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from deploy.backend import EndpointBackend
from deploy.plan import (
    CHAMPION,
    REJECTED,
    DeployRefused,
    Step,
    Transition,
    plan_deploy,
    plan_rollback,
    split_by_id,
)
from deploy.rollout import RolloutState
from deploy.smoke import SmokeTestFailed, load_smoke_test, run_smoke_test
from registry.model_registry import ModelVersion, RegistryError

Report = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DeployOutcome:
    transition: str  # first, canary, no-op
    version: str
    deployed_model_id: str
    split: dict[str, int]  # by deployed model id, after the deploy
    smoke_test: str


def _version(backend: EndpointBackend, version: str) -> ModelVersion:
    registered = backend.registry.versions(backend.model_name)
    for candidate in registered:
        if candidate.version == version:
            return candidate
    raise RegistryError(f"model {backend.model_name!r} has no version {version!r}; registered: "
                        f"{', '.join(c.version for c in registered) or 'none'}")


def resolve_version(backend: EndpointBackend, version_or_alias: str) -> ModelVersion:
    """`3` (a version) or `challenger` (an alias) -> the registered version."""
    if not version_or_alias:
        raise RegistryError("version is empty: expected a version number or an alias such as 'challenger'")
    if version_or_alias.isdigit():
        return _version(backend, version_or_alias)
    found = backend.registry.get(backend.model_name, version_or_alias)
    if found is None:
        raise RegistryError(f"model {backend.model_name!r} has no version with alias {version_or_alias!r}")
    return found


def _apply_step(backend: EndpointBackend, step: Step) -> None:
    live = backend.live()
    deployed = {model.version: model for model in live}
    if step.kind == "deploy":
        if step.version not in deployed:
            backend.deploy(_version(backend, step.version), split_by_id(step.split or {}, live, step.version))
    elif step.kind == "split":
        wanted = split_by_id(step.split or {}, live)
        if {model.id: model.percent for model in live} != {model.id: wanted.get(model.id, 0) for model in live}:
            backend.update_split(wanted)
    elif step.kind == "undeploy":
        if step.version in deployed:
            backend.undeploy(deployed[step.version].id)
    elif step.kind == "alias":
        backend.registry.set_alias(backend.model_name, step.version, step.alias)
    else:
        raise DeployRefused(f"unknown step kind {step.kind!r} in the transition journal")


def apply_transition(backend: EndpointBackend, transition: Transition, report: Report = print) -> None:
    """Runs every step, then clears the journal; call with `backend.exclusive()` held. A deploy (first,
    canary) is not done until its smoke test passed: `deploy_version` runs it before clearing."""
    if not transition.steps:
        return
    backend.write_journal(transition.to_dict())
    _run_steps(backend, transition, report)
    _rollout_after(backend, transition)
    backend.clear_journal()


def _rollout_after(backend: EndpointBackend, transition: Transition) -> None:
    """The rollout's state follows its transitions (before the journal is cleared, so a crash between the two
    has the next run do it): a new step starts its bake time and its evidence now; a promotion or a
    rollback ends the rollout."""
    if transition.kind == "advance":
        state = backend.read_rollout()
        if state is not None:
            backend.write_rollout(dataclasses.replace(state, step_started=time.time(), failures=0))
        backend.start_window()
    elif transition.kind in ("promote", "rollback"):
        backend.write_rollout(None)


def _run_steps(backend: EndpointBackend, transition: Transition, report: Report) -> None:
    for step in transition.steps:
        report(f"  {transition.kind}: {step.describe()}")
        _apply_step(backend, step)


def finish_interrupted(backend: EndpointBackend, report: Report = print) -> Transition | None:
    """Finishes a transition a crash left in the journal, a deploy's smoke test included (call with
    `backend.exclusive()` held). Raises SmokeTestFailed, after the rollback, if that deploy fails it."""
    recorded = backend.read_journal()
    if recorded is None:
        return None
    transition = Transition.from_dict(recorded)
    report(f"finishing an interrupted {transition.kind} of version {transition.version} on {backend.where}")
    _run_steps(backend, transition, report)
    if transition.kind in ("first", "canary"):
        version = _version(backend, transition.version)
        _smoke_test(backend, transition, version, _deployed_id(backend, version.version), report)
    _rollout_after(backend, transition)
    backend.clear_journal()
    return transition


def _deployed_id(backend: EndpointBackend, version: str) -> str:
    return next(model.id for model in backend.live() if model.version == version)


def deploy_version(backend: EndpointBackend, version_or_alias: str = "challenger", canary_percent: int = 10,
                   report: Report = print) -> DeployOutcome:
    """Puts a registered version on the endpoint (first at 100%, else a canary), then smoke-tests it.

    A version that fails its smoke test is rolled back (alias `rejected`) and SmokeTestFailed is raised.
    The journal holds the deploy until its smoke test passed, so a run killed during the test has the
    next run test it again.
    """
    with backend.exclusive():
        finish_interrupted(backend, report)
        version = resolve_version(backend, version_or_alias)
        champion = backend.registry.get(backend.model_name, CHAMPION)
        rejected = backend.registry.get(backend.model_name, REJECTED)
        transition = plan_deploy(backend.live(), backend.model_name, version.version,
                                 champion.version if champion else None, canary_percent,
                                 rejected.version if rejected else None)
        report(f"{transition.kind}: {transition.reason}")
        summary = "not run: nothing was deployed"
        if transition.steps:
            backend.write_journal(transition.to_dict())
            _run_steps(backend, transition, report)
            summary = _smoke_test(backend, transition, version, _deployed_id(backend, version.version), report)
            backend.clear_journal()
        return DeployOutcome(transition.kind, version.version, _deployed_id(backend, version.version),
                             {model.id: model.percent for model in backend.live()}, summary)


def _smoke_test(backend: EndpointBackend, transition: Transition, version: ModelVersion, deployed_id: str,
                report: Report) -> str:
    record = load_smoke_test(version.uri)
    if record is None:
        summary = f"not run: version {version.version} has no smoke-test record (registered before they were kept)"
        report(summary)
        return summary
    try:
        with backend.serving():
            summary = run_smoke_test(backend.predict, deployed_id, record)
        if transition.kind == "canary":  # the rollout, and the canary decision's evidence, start here
            backend.write_rollout(RolloutState.begin(deployed_id, time.time()))
            backend.start_window()
    except SmokeTestFailed as failure:
        report(f"SMOKE TEST FAILED: {failure}; rolling back version {version.version}")
        rollback = plan_rollback(backend.model_name, version.version, transition.champion_version,
                                 f"smoke test failed: {failure}")
        if transition.kind == "first":  # nothing to fall back to: the endpoint is left empty
            rollback = dataclasses.replace(rollback, steps=rollback.steps[1:])
        apply_transition(backend, rollback, report)
        raise
    report(summary)
    return summary
