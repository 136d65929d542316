"""How a trigger failed decides whether the platform retries it.

- `IgnoredEvent`: the event is irrelevant or malformed. Logged, acknowledged.
- `InvalidRequest`: the run request is wrong (local validation, HTTP 400/403/404).
  Retrying the same event cannot fix it: logged with the reason, acknowledged.
- `TransientError`: HTTP 429/5xx or a network failure. Raised to the platform,
  which redelivers the event with backoff.
- `TemplateUnavailable` (a `TransientError`): the template is missing, unreadable
  or not a KFP template. A deploy may be writing it, so it is retried like a
  transient failure, and logged as an ERROR: someone must look if it lasts.
"""

from __future__ import annotations


class TriggerError(Exception):
    """Base class of the errors below."""


class IgnoredEvent(TriggerError):
    """The event does not ask for a run. `malformed` separates broken payloads
    (worth a warning) from events that are simply not ours (info)."""

    def __init__(self, reason: str, *, malformed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.malformed = malformed


class InvalidRequest(TriggerError):
    """The request cannot succeed as it stands; do not retry."""


class ParameterError(InvalidRequest, ValueError):
    """A parameter value does not fit the template's declared parameters."""


class TransientError(TriggerError):
    """Worth retrying later: the service was unavailable or throttled us."""


class ConfigError(ValueError):
    """An environment variable is missing or malformed; the message names it."""


class TemplateUnavailable(TransientError):
    """The template cannot be read or parsed now; retried until it can (or the platform gives up)."""
