"""Cloud Function (2nd gen): a Cloud Scheduler tick submits a run of the configured template.

Two entry points, one per Cloud Scheduler target type:
- `on_schedule_message`: Pub/Sub target (Eventarc `google.cloud.pubsub.topic.v1.messagePublished`).
- `on_schedule_request`: HTTP target (reads `X-CloudScheduler-ScheduleTime`).
See docs/triggers.md.
"""

import datetime

import flask
import functions_framework

from triggers.config import ScheduleConfig
from triggers.events import schedule
from triggers.events.partitions import parse_instant
from triggers.events.policy import CloudEventLike, pubsub_message, run_trigger
from triggers.submission.errors import IgnoredEvent, TransientError
from triggers.submission.pipeline_jobs import RunRequest, VertexTarget

# At import on purpose: a bad configuration fails the deploy, not every event.
CONFIG = ScheduleConfig.from_env()
TARGET = VertexTarget.from_config(CONFIG.vertex)


def _from_message(event: CloudEventLike) -> RunRequest:
    message = pubsub_message(event)
    published = message.publish_time
    if published is None:
        try:
            published = parse_instant(event.get("time"), "event time")
        except ValueError as error:
            raise IgnoredEvent(f"schedule message has no publishTime and {error}", malformed=True) from None
    return schedule.run_for_schedule_time(published, CONFIG)


@functions_framework.cloud_event
def on_schedule_message(event: CloudEventLike) -> None:
    run_trigger(schedule.TRIGGER, event.get("id"), lambda: _from_message(event), TARGET)


def _from_request(request: flask.Request) -> RunRequest:
    header = request.headers.get(schedule.SCHEDULE_TIME_HEADER)
    if header is None:  # a manual "force run": the request time stands for the slot
        return schedule.run_for_schedule_time(datetime.datetime.now(datetime.UTC), CONFIG)
    try:
        schedule_time = parse_instant(header, schedule.SCHEDULE_TIME_HEADER)
    except ValueError as error:
        raise IgnoredEvent(str(error), malformed=True) from None
    return schedule.run_for_schedule_time(schedule_time, CONFIG)


@functions_framework.http
def on_schedule_request(request: flask.Request) -> tuple[dict, int]:
    # Cloud Scheduler retries non-2xx answers (as configured on the job): only a transient failure gets one.
    job_name = request.headers.get("X-CloudScheduler-JobName", "manual")
    event_id = f"{job_name}@{request.headers.get(schedule.SCHEDULE_TIME_HEADER)}"
    try:
        outcome = run_trigger(schedule.TRIGGER, event_id, lambda: _from_request(request), TARGET)
    except TransientError as error:
        return {"outcome": "retry", "detail": str(error)}, 503
    return {"outcome": outcome.status, "detail": outcome.detail, "job_id": outcome.job_id}, 200
