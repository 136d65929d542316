"""Reading platform events, and the one policy every trigger applies to what happens next.

`run_trigger` turns an event into at most one submission and decides its fate:

| what happened                                   | log      | result for the platform     |
|-------------------------------------------------|----------|-----------------------------|
| run created                                     | INFO     | ack                         |
| run already existed (409, a redelivery)         | INFO     | ack                         |
| event irrelevant                                | INFO     | ack                         |
| event malformed                                 | WARNING  | ack                         |
| request invalid (local check, 400/403/404)      | ERROR    | ack: a retry cannot fix it  |
| unexpected exception (a bug)                    | ERROR    | ack: same input, same bug   |
| template missing, unreadable or not KFP v2      | ERROR    | raise: the platform retries |
| transient (429/5xx, network)                    | WARNING  | raise: the platform retries |

Only the last two are retried, so no event can make a function crash-loop: a
template is retried because a deploy may be writing it while a batch lands (the
event must not be lost), for as long as the platform's retry policy allows.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from triggers.events.logs import log
from triggers.events.partitions import parse_instant
from triggers.submission.errors import IgnoredEvent, InvalidRequest, TemplateUnavailable, TransientError
from triggers.submission.pipeline_jobs import RunRequest, VertexTarget, submit_run

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


class CloudEventLike(Protocol):
    """What the triggers use of `cloudevents.http.CloudEvent` (functions-framework's event type)."""

    data: Any

    def __getitem__(self, key: str) -> Any: ...

    def get(self, key: str, default: Any = None) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # submitted | already-submitted | ignored | invalid
    detail: str
    job_id: str | None = None


@dataclasses.dataclass(frozen=True)
class PubSubMessage:
    data: bytes
    attributes: Mapping[str, str]
    message_id: str | None
    publish_time: datetime.datetime | None


def require_type(event: CloudEventLike, expected: str) -> None:
    if event.get("type") != expected:
        raise IgnoredEvent(f"event type {event.get('type')!r} is not {expected}")


def object_data(event: CloudEventLike) -> Mapping[str, Any]:
    """The event's data as a JSON object (CloudEvents hands bytes through when the content type is not JSON)."""
    data = event.data
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise IgnoredEvent("event data is not JSON", malformed=True) from None
    if not isinstance(data, dict):
        raise IgnoredEvent(f"event data is {type(data).__name__}, expected a JSON object", malformed=True)
    return data


def pubsub_message(event: CloudEventLike) -> PubSubMessage:
    """The message inside a `messagePublished` CloudEvent (Eventarc, or functions-framework's conversion of a push)."""
    require_type(event, PUBSUB_PUBLISHED)
    message = object_data(event).get("message")
    if not isinstance(message, dict):
        raise IgnoredEvent("Pub/Sub event has no message object", malformed=True)
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, TypeError):
        raise IgnoredEvent("Pub/Sub message data is not base64", malformed=True) from None
    attributes = message.get("attributes") or {}
    published = message.get("publishTime") or message.get("publish_time")
    try:
        publish_time = parse_instant(published, "publishTime") if published else None
    except ValueError as error:
        raise IgnoredEvent(str(error), malformed=True) from None
    return PubSubMessage(data=data, attributes=attributes if isinstance(attributes, dict) else {},
                         message_id=message.get("messageId") or message.get("message_id"), publish_time=publish_time)


def run_trigger(trigger: str, event_id: str | None, build: Callable[[], RunRequest],
                target: VertexTarget) -> Outcome:
    """Builds the run request for one event and submits it, applying the policy in the module docstring."""
    context = {"trigger": trigger, "event_id": event_id}
    try:
        run = build()
        result = submit_run(run, target)
    except IgnoredEvent as ignored:
        severity = "WARNING" if ignored.malformed else "INFO"
        log(severity, f"{trigger}: event ignored: {ignored.reason}", outcome="ignored", **context)
        return Outcome("ignored", ignored.reason)
    except InvalidRequest as invalid:
        log("ERROR", f"{trigger}: run request refused, not retrying: {invalid}", outcome="invalid", **context)
        return Outcome("invalid", str(invalid))
    except TemplateUnavailable as unavailable:
        log("ERROR", f"{trigger}: template unavailable, the platform will retry: {unavailable}", outcome="retry",
            **context)
        raise
    except TransientError as transient:
        log("WARNING", f"{trigger}: transient failure, the platform will retry: {transient}",
            outcome="retry", **context)
        raise
    except Exception as error:  # a bug must not become a retry storm; see the table above
        log("ERROR", f"{trigger}: unexpected {type(error).__name__}, not retrying: {error}", outcome="invalid",
            traceback=traceback.format_exc(), **context)
        return Outcome("invalid", f"{type(error).__name__}: {error}")
    status = "submitted" if result.created else "already-submitted"
    message = "run submitted" if result.created else "run already submitted (redelivery), nothing to do"
    log("INFO", f"{trigger}: {message}: {result.job_name}", outcome=status, job_id=result.job_id,
        parameters=dict(run.parameter_values), labels=dict(run.labels), **context)
    return Outcome(status, message, result.job_id)
