"""The declared rollout (its steps, bake time, evidence per step, failure threshold) and the state of one.

A canary goes live at the deploy's `canary_percent`, then each decision run either advances it one step
of `step_weights` (e.g. 10 -> 25 -> 50), promotes it from the last step to 100%, holds it, or rolls it
back. The step a canary is at is read from the endpoint (its traffic share), never stored: a deploy
with another `canary_percent` is simply before, between or at a step. What the endpoint cannot tell
is stored with it (locally a file beside the journal, on Vertex an endpoint label): when the rollout
and its current step began, how many analyses ran, and how many in a row failed (Flagger's
`threshold`: a rollback after that many consecutive failed analyses).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

FULL_TRAFFIC = 100


class RolloutError(ValueError):
    """A declared rollout that cannot be followed; the message says what was wrong and what was expected."""


@dataclasses.dataclass(frozen=True)
class Rollout:
    step_weights: tuple[int, ...] = (10, 25, 50)  # the canary's share at each step; 100 (promotion) follows
    min_bake_minutes: float = 10.0  # at least this long at a step before it may advance
    min_requests: int = 100  # canary requests at a step before its evidence counts
    failure_threshold: int = 2  # consecutive failed analyses that roll the canary back

    def __post_init__(self) -> None:
        weights = self.step_weights
        if isinstance(weights, str | bytes) or not isinstance(weights, Sequence) or not weights:
            raise RolloutError(f"step_weights must be a list of whole percents such as [10, 25, 50], got {weights!r}")
        for weight in weights:
            if type(weight) is not int or not 1 <= weight <= FULL_TRAFFIC:
                raise RolloutError(f"step_weights {list(weights)}: {weight!r} is not a whole percent from 1 to 100")
        if any(later <= earlier for earlier, later in zip(weights, weights[1:], strict=False)):
            raise RolloutError(f"step_weights {list(weights)} must increase strictly (each step gives the canary "
                               "more traffic than the one before)")
        if FULL_TRAFFIC in weights[:-1]:
            raise RolloutError(f"step_weights {list(weights)}: 100 is the promotion and can only come last")
        object.__setattr__(self, "step_weights", tuple(weight for weight in weights if weight < FULL_TRAFFIC))
        if isinstance(self.min_bake_minutes, bool) or not isinstance(self.min_bake_minutes, int | float) \
                or not 0 <= self.min_bake_minutes <= 7 * 24 * 60:
            raise RolloutError(f"min_bake_minutes must be a number of minutes from 0 to a week (10080), got "
                               f"{self.min_bake_minutes!r}")
        for name, low in (("min_requests", 1), ("failure_threshold", 1)):
            value = getattr(self, name)
            if type(value) is not int or value < low:
                raise RolloutError(f"{name} must be a whole number >= {low}, got {value!r}")

    def next_weight(self, current: int) -> int:
        """The canary's share after the step it is at: the first step above it, else 100 (promotion)."""
        return next((weight for weight in self.step_weights if weight > current), FULL_TRAFFIC)

    def describe(self, current: int) -> str:
        """Where `current` stands: "step 2 of 4 (25%)"; a share between steps counts as the step below it."""
        steps = [*self.step_weights, FULL_TRAFFIC]
        reached = sum(1 for weight in steps if weight <= current)
        return f"step {max(reached, 1)} of {len(steps)} ({current}%)"


@dataclasses.dataclass(frozen=True)
class RolloutState:
    canary_id: str  # the deployed model this state belongs to: another canary starts afresh
    started: float  # when the canary went live (epoch seconds): labelled evidence counts from here
    step_started: float  # when its current step began: bake time, step evidence (errors, latency) from here
    failures: int = 0  # analyses in a row that failed a check
    analyses: int = 0  # analyses so far (the look count of the statistics that spend their level over looks)

    @classmethod
    def begin(cls, canary_id: str, now: float) -> RolloutState:
        return cls(canary_id, now, now)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutState:
        return cls(str(data["canary_id"]), float(data["started"]), float(data["step_started"]),
                   int(data.get("failures", 0)), int(data.get("analyses", 0)))

    def encode(self) -> str:
        """As a label value (lowercase letters, digits, '_', '-', at most 63 characters)."""
        return f"{self.canary_id}_{int(self.started)}_{int(self.step_started)}_{self.failures}_{self.analyses}"

    @classmethod
    def decode(cls, value: str) -> RolloutState:
        canary_id, started, step_started, failures, analyses = value.split("_")
        return cls(canary_id, float(started), float(step_started), int(failures), int(analyses))
