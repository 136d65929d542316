"""The deploy planner: live endpoint state and a model version in, the steps of a transition out.

Pure: no endpoint, registry or clock is touched here, so every rule is tested
without a model server. Steps name registry versions, never deployed model ids:
an id exists only once its deploy has run, and a transition resumed after a
crash resolves each version to its id from the endpoint's live state then.

Transitions (the only ways traffic moves):
- first: nothing deployed: the version at 100%, alias `champion`;
- canary: the champion deployed alone: the version beside it at
  `canary_percent`, the champion keeps the rest;
- no-op: the version is already deployed (a rerun is idempotent);
- advance: the canary to its next step's share (deploy/rollout.py), the champion keeps the rest;
- promote: the canary to 100%, the old champion undeployed, aliases
  `champion` -> canary, `previous` -> old champion;
- rollback: the champion to 100%, the canary undeployed, alias `rejected`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

CHAMPION = "champion"
PREVIOUS = "previous"
REJECTED = "rejected"
DEFAULT_CANARY_PERCENT = 10

StepKind = Literal["deploy", "split", "undeploy", "alias"]


class DeployRefused(ValueError):
    """The endpoint or the request is in a state no transition can start from; the message says why."""


@dataclasses.dataclass(frozen=True)
class Deployed:
    """A deployed model as the planner sees it: which registry version it serves, and its traffic."""

    id: str
    version: str  # "" when it serves no version of this model (deployed by hand)
    percent: int
    ready: bool = True


@dataclasses.dataclass(frozen=True)
class Step:
    kind: StepKind
    version: str
    split: Mapping[str, int] | None = None  # version -> percent: the whole split after the step
    alias: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "split": dict(self.split) if self.split else None,
                "alias": self.alias}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        return cls(data["kind"], data["version"], data.get("split"), data.get("alias", ""))

    def describe(self) -> str:
        if self.kind == "deploy":
            return f"deploy version {self.version} with split {dict(self.split or {})} (by version)"
        if self.kind == "split":
            return f"set the split to {dict(self.split or {})} (by version)"
        if self.kind == "undeploy":
            return f"undeploy version {self.version}"
        return f"alias {self.alias!r} -> version {self.version}"


@dataclasses.dataclass(frozen=True)
class Transition:
    kind: Literal["first", "canary", "no-op", "advance", "promote", "rollback"]
    model_name: str
    version: str  # the version the transition is about (deployed, promoted or rolled back)
    champion_version: str
    steps: tuple[Step, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model_name": self.model_name, "version": self.version,
                "champion_version": self.champion_version, "steps": [step.to_dict() for step in self.steps],
                "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transition:
        return cls(data["kind"], data["model_name"], data["version"], data["champion_version"],
                   tuple(Step.from_dict(step) for step in data["steps"]), data["reason"])


def check_canary_percent(canary_percent: Any) -> int:
    if type(canary_percent) is not int or not 1 <= canary_percent <= 99:
        raise DeployRefused(f"canary_percent must be a whole percent 1-99 (the champion keeps the rest), "
                            f"got {canary_percent!r}")
    return canary_percent


def _unknown(live: Sequence[Deployed], model_name: str) -> None:
    strangers = [deployed.id for deployed in live if not deployed.version]
    if strangers:
        raise DeployRefused(f"deployed model(s) {', '.join(strangers)} on the endpoint serve no registered version "
                            f"of {model_name!r}: undeploy them, or use an endpoint of its own for this model")


def plan_deploy(live: Sequence[Deployed], model_name: str, version: str, champion_version: str | None,
                canary_percent: int = DEFAULT_CANARY_PERCENT, rejected_version: str | None = None) -> Transition:
    """The transition that puts `version` on the endpoint: first, canary or no-op."""
    check_canary_percent(canary_percent)
    _unknown(live, model_name)
    champion = champion_version or ""
    if any(deployed.version == version for deployed in live):
        return Transition("no-op", model_name, version, champion, (),
                          f"version {version} is already deployed: nothing to do")
    if version == rejected_version:
        raise DeployRefused(f"version {version} of {model_name!r} carries alias {REJECTED!r} (a rolled-back canary): "
                            "it is not deployed again; register a new version")
    if not live:
        return Transition("first", model_name, version, version,
                          (Step("deploy", version, {version: 100}), Step("alias", version, alias=CHAMPION)),
                          f"the endpoint is empty: version {version} takes 100% as {CHAMPION}")
    serving_champion = [deployed for deployed in live if deployed.version == champion]
    if not serving_champion:
        raise DeployRefused(f"the endpoint serves version(s) {', '.join(d.version for d in live)} of {model_name!r} "
                            f"but none is its {CHAMPION} ({champion or 'none'}): set the alias on the version that "
                            "serves, or undeploy the others")
    others = [deployed.version for deployed in live if deployed.version != champion]
    if others:
        raise DeployRefused(f"version {others[0]} of {model_name!r} is a canary on the endpoint already: decide it "
                            "first (python runner.py canary decide), then deploy another")
    split = {version: canary_percent, champion: 100 - canary_percent}
    return Transition("canary", model_name, version, champion, (Step("deploy", version, split),),
                      f"version {version} beside {CHAMPION} {champion} at {canary_percent}%")


def canary_on(live: Sequence[Deployed], champion_version: str) -> Deployed | None:
    """The canary beside the champion, if one is deployed."""
    others = [deployed for deployed in live if deployed.version and deployed.version != champion_version]
    return others[0] if others else None


def plan_advance(model_name: str, canary_version: str, champion_version: str, canary_percent: int) -> Transition:
    """The canary to its next step: one atomic split, the champion keeps the rest."""
    check_canary_percent(canary_percent)
    return Transition("advance", model_name, canary_version, champion_version, (
        Step("split", canary_version, {canary_version: canary_percent, champion_version: 100 - canary_percent}),
    ), f"version {canary_version} to {canary_percent}% beside {CHAMPION} {champion_version}")


def plan_promote(model_name: str, canary_version: str, champion_version: str) -> Transition:
    return Transition("promote", model_name, canary_version, champion_version, (
        Step("split", canary_version, {canary_version: 100}),
        Step("undeploy", champion_version),
        Step("alias", canary_version, alias=CHAMPION),
        Step("alias", champion_version, alias=PREVIOUS),
    ), f"version {canary_version} replaces {champion_version} as {CHAMPION}")


def plan_rollback(model_name: str, canary_version: str, champion_version: str, reason: str) -> Transition:
    return Transition("rollback", model_name, canary_version, champion_version, (
        Step("split", champion_version, {champion_version: 100}),
        Step("undeploy", canary_version),
        Step("alias", canary_version, alias=REJECTED),
    ), reason)


def split_by_id(split_by_version: Mapping[str, int], live: Sequence[Deployed], new_version: str = "",
                new_key: str = "0") -> dict[str, int]:
    """A split keyed by version, keyed by deployed model id (the version being deployed: `new_key`)."""
    ids = {deployed.version: deployed.id for deployed in live}
    resolved = {}
    for version, percent in split_by_version.items():
        if version == new_version:
            resolved[new_key] = percent
        elif version in ids:
            resolved[ids[version]] = percent
        else:
            raise DeployRefused(f"version {version} should take {percent}% but is not deployed")
    return resolved
