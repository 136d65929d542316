"""Schedule: Cloud Scheduler's tick asks for a run of a configured template on a partition computed from it.

The partition is a calendar period in the layout's time zone, `offset` periods
before the one holding the schedule time (offset 1, day: yesterday's). The
schedule time comes from the event, never from the clock, so a redelivery
computes the same partition and the same job id:

- HTTP target: Cloud Scheduler's `X-CloudScheduler-ScheduleTime` header (the
  slot, identical on its retries). A manual "force run" may lack it: the
  request time is used then.
- Pub/Sub target: the message's `publishTime` (seconds after the slot; schedule
  away from midnight, e.g. 02:00 local, so the date is unambiguous).

A template that reads no partition (the canary decision, every `interval`) is named by
its tick instead: the schedule time's minute in UTC, so each tick is one run and a
redelivered tick is the same run.
"""

from __future__ import annotations

import datetime

from triggers.config import ScheduleConfig
from triggers.events.partitions import local_date, period_label, period_prefix, shift
from triggers.submission.data_version import data_version_value, listing_version
from triggers.submission.errors import IgnoredEvent
from triggers.submission.pipeline_jobs import RunRequest, make_job_id
from triggers.submission.templates import load_template

TRIGGER = "schedule"
SCHEDULE_TIME_HEADER = "X-CloudScheduler-ScheduleTime"


def target_period(schedule_time: datetime.datetime, config: ScheduleConfig) -> datetime.date:
    return shift(local_date(schedule_time, config.timezone), config.granularity, config.offset)


def run_for_schedule_time(schedule_time: datetime.datetime, config: ScheduleConfig) -> RunRequest:
    try:
        period = target_period(schedule_time, config)
    except ValueError as error:  # at the calendar's limits
        raise IgnoredEvent(f"no partition for schedule time {schedule_time.isoformat()}: {error}",
                           malformed=True) from None
    template = load_template(config.template_uri, max_age_seconds=config.vertex.template_cache_seconds)
    if not config.parameter:  # no partition: the tick names the run (one job per tick, whatever the cadence)
        tick = schedule_time.astimezone(datetime.UTC)
        return RunRequest(template_uri=config.template_uri, parameter_values=dict(config.vertex.pipeline_parameters),
                          labels={"trigger": TRIGGER, "tick": f"{tick:%Y-%m-%dt%H-%M}"},
                          service_account=config.vertex.service_account,
                          job_id=make_job_id(template.name, TRIGGER, f"{tick:%Y%m%d%H%M}"))
    data_uri = f"gs://{config.data_bucket}/{period_prefix(config.data_prefix, period, config.granularity)}"
    label = period_label(period, config.granularity)
    partition = {config.parameter: data_uri, **data_version_value(template, lambda: listing_version(data_uri))}
    return RunRequest(
        template_uri=config.template_uri,
        parameter_values={**config.vertex.pipeline_parameters, **partition},
        labels={"trigger": TRIGGER, "partition": label},
        service_account=config.vertex.service_account,
        job_id=make_job_id(template.name, TRIGGER, label.replace("-", "")),
    )
