"""The schedule function: Cloud Scheduler through Pub/Sub (CloudEvent) and through HTTP."""

from __future__ import annotations

import base64
import datetime
import zoneinfo

import pytest
from cloudevents.http import CloudEvent, to_binary, to_structured
from trigger_helpers import DATA_BUCKET, FakeVertex, log_lines

from tests.gcs_emulator import GcsEmulator
from triggers import config as settings
from triggers.events.schedule import target_period
from triggers.submission.data_version import listing_version


def period(instant: str, timezone: str, granularity: str = "day", offset: int = 1) -> datetime.date:
    config = settings.ScheduleConfig(vertex=None, template_uri="t.json", parameter="data_uri", data_bucket="b",
                                     data_prefix="data/processed", timezone=zoneinfo.ZoneInfo(timezone),
                                     granularity=granularity, offset=offset)
    return target_period(datetime.datetime.fromisoformat(instant), config)


@pytest.mark.parametrize(("instant", "timezone", "granularity", "offset", "expected"), [
    # 00:30 CDT on 11 March 2024, the day after the 23-hour day: yesterday is 10 March
    # (24 hours before is 23:30 on 9 March).
    ("2024-03-11T05:30:00Z", "America/Chicago", "day", 1, datetime.date(2024, 3, 10)),
    # 00:30 CST on 4 November 2024, the day after the 25-hour day.
    ("2024-11-04T06:30:00Z", "America/Chicago", "day", 1, datetime.date(2024, 11, 3)),
    # 23:30 CST on 3 November (05:30 UTC on the 4th): the local date, not the UTC one, decides.
    ("2024-11-04T05:30:00Z", "America/Chicago", "day", 1, datetime.date(2024, 11, 2)),
    # 00:30 in Tokyo is still the previous day in UTC.
    ("2026-03-10T15:30:00Z", "Asia/Tokyo", "day", 1, datetime.date(2026, 3, 10)),
    ("2026-03-10T15:30:00Z", "UTC", "day", 1, datetime.date(2026, 3, 9)),
    ("2026-03-10T15:30:00Z", "UTC", "day", 0, datetime.date(2026, 3, 10)),
    ("2026-03-10T15:30:00Z", "UTC", "day", 7, datetime.date(2026, 3, 3)),
    # Months: last month across a year boundary, in local time.
    ("2026-01-01T07:00:00Z", "America/Chicago", "month", 1, datetime.date(2025, 12, 1)),
    ("2026-01-01T03:00:00Z", "America/Chicago", "month", 1, datetime.date(2025, 11, 1)),
    ("2026-03-31T12:00:00Z", "UTC", "month", 13, datetime.date(2025, 2, 1)),
])
def test_partition_is_a_calendar_period_in_the_layout_time_zone(instant: str, timezone: str, granularity: str,
                                                                 offset: int, expected: datetime.date) -> None:
    assert period(instant, timezone, granularity, offset) == expected


def scheduler_message(publish_time: str = "2024-03-11T07:00:03.518Z", message_id: str = "4711") -> CloudEvent:
    """A Cloud Scheduler Pub/Sub target's message, as Eventarc delivers it."""
    attributes = {"type": "google.cloud.pubsub.topic.v1.messagePublished",
                  "source": "//pubsub.googleapis.com/projects/test-project/topics/nightly-training",
                  "id": message_id, "time": publish_time, "datacontenttype": "application/json"}
    data = {"message": {"data": base64.b64encode(b'{"schedule": "nightly-training"}').decode(),
                        "messageId": message_id, "publishTime": publish_time},
            "subscription": "projects/test-project/subscriptions/eventarc-nightly"}
    return CloudEvent(attributes, data)


@pytest.fixture
def chicago(trigger_env, monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_PARTITION_TIMEZONE", "America/Chicago")


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_pubsub_tick_submits_yesterdays_partition(function_app, chicago, fake_vertex: FakeVertex, mode: str) -> None:
    client = function_app("schedule", "on_schedule_message").test_client()
    headers, body = (to_binary if mode == "binary" else to_structured)(scheduler_message())
    assert client.post("/", headers=headers, data=body).status_code == 200

    (call,) = fake_vertex.calls
    assert call["job_id"] == "training-pipeline-schedule-20240310"
    data_uri = f"gs://{DATA_BUCKET}/data/processed/2024/03/10"
    assert call["body"]["runtimeConfig"]["parameterValues"] == {"data_uri": data_uri,
                                                                "data_version": listing_version(data_uri)}
    assert call["body"]["labels"] == {"trigger": "schedule", "partition": "2024-03-10"}


def test_without_a_publish_time_the_event_time_stands_for_it(function_app, chicago, fake_vertex: FakeVertex) -> None:
    event = scheduler_message()
    del event.data["message"]["publishTime"]
    headers, body = to_binary(event)  # the CloudEvent's own time is still 2024-03-11T07:00:03.518Z
    function_app("schedule", "on_schedule_message").test_client().post("/", headers=headers, data=body)
    assert fake_vertex.calls[0]["job_id"] == "training-pipeline-schedule-20240310"


def test_a_redelivered_tick_creates_no_second_run(function_app, chicago, fake_vertex: FakeVertex) -> None:
    client = function_app("schedule", "on_schedule_message").test_client()
    for _ in range(2):
        headers, body = to_binary(scheduler_message())
        assert client.post("/", headers=headers, data=body).status_code == 200
    assert [call["status"] for call in fake_vertex.calls] == [200, 409]


def test_month_granularity_and_another_prefix(function_app, trigger_env, fake_vertex: FakeVertex,
                                                  monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_SCHEDULE_GRANULARITY", "month")
    monkeypatch.setenv("MLOPS_DATA_PREFIX", "landing/v2")
    client = function_app("schedule", "on_schedule_message").test_client()
    headers, body = to_binary(scheduler_message("2026-01-01T02:00:00Z"))
    client.post("/", headers=headers, data=body)
    (call,) = fake_vertex.calls
    assert call["job_id"] == "training-pipeline-schedule-202512"
    assert call["body"]["runtimeConfig"]["parameterValues"]["data_uri"] == f"gs://{DATA_BUCKET}/landing/v2/2025/12"


def test_the_partition_parameter_must_exist_in_the_template(function_app, trigger_env, fake_vertex: FakeVertex,
                                                          monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLOPS_SCHEDULE_PARAMETER", "input_uri")
    client = function_app("schedule", "on_schedule_message").test_client()
    headers, body = to_binary(scheduler_message())
    assert client.post("/", headers=headers, data=body).status_code == 200
    assert fake_vertex.calls == []
    (error,) = [e for e in log_lines(capsys.readouterr().out) if e["severity"] == "ERROR"]
    assert "unknown parameter 'input_uri'" in error["message"]
    assert "required parameter(s) not set: data_uri" in error["message"]


def test_a_message_that_is_not_from_pubsub_is_ignored(function_app, trigger_env, fake_vertex: FakeVertex,
                                                      capsys) -> None:
    client = function_app("schedule", "on_schedule_message").test_client()
    event = CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "source": "//storage.googleapis.com/x"},
                       {"bucket": "b", "name": "n"})
    headers, body = to_binary(event)
    assert client.post("/", headers=headers, data=body).status_code == 200
    assert fake_vertex.calls == []
    assert any(e.get("outcome") == "ignored" for e in log_lines(capsys.readouterr().out))


def test_http_target_uses_the_schedule_time_header(function_app, chicago, fake_vertex: FakeVertex) -> None:
    client = function_app("schedule", "on_schedule_request").test_client()
    headers = {"X-CloudScheduler": "true", "X-CloudScheduler-JobName": "nightly-training",
               "X-CloudScheduler-ScheduleTime": "2024-03-11T07:00:00Z"}
    first = client.post("/", headers=headers, data=b"")
    second = client.post("/", headers=headers, data=b"")  # Cloud Scheduler's retry of the same slot

    assert (first.status_code, first.json["outcome"]) == (200, "submitted")
    assert (second.status_code, second.json["outcome"]) == (200, "already-submitted")
    assert first.json["job_id"] == "training-pipeline-schedule-20240310"
    assert len(fake_vertex.jobs) == 1


def test_http_target_answers_503_on_a_transient_error_and_200_otherwise(function_app, chicago,
                                                                        fake_vertex: FakeVertex) -> None:
    client = function_app("schedule", "on_schedule_request").test_client()
    fake_vertex.fail_next(503)
    retried = client.post("/", headers={"X-CloudScheduler-ScheduleTime": "2024-03-11T07:00:00Z"})
    assert (retried.status_code, retried.json["outcome"]) == (503, "retry")

    malformed = client.post("/", headers={"X-CloudScheduler-ScheduleTime": "yesterday-ish"})
    assert (malformed.status_code, malformed.json["outcome"]) == (200, "ignored")
    assert "RFC 3339" in malformed.json["detail"]

    fake_vertex.fail_next(400, "bad template")
    refused = client.post("/", headers={"X-CloudScheduler-ScheduleTime": "2024-03-11T07:00:00Z"})
    assert (refused.status_code, refused.json["outcome"]) == (200, "invalid")


@pytest.mark.parametrize(("schedule_time", "timezone", "granularity"), [
    ("9999-12-31T23:59:59-01:00", "UTC", "day"),        # the instant itself is after year 9999 in UTC
    ("0001-01-01T00:00:00+01:00", "UTC", "day"),        # ...or before year 1
    ("9999-12-31T23:59:59Z", "Asia/Tokyo", "day"),      # the local date is after 9999-12-31
    ("0001-01-01T06:00:00Z", "UTC", "day"),             # yesterday is before 0001-01-01
    ("0001-01-15T06:00:00Z", "UTC", "month"),           # last month is in year 0
])
def test_a_schedule_time_at_the_calendars_limits_is_malformed(function_app, trigger_env, fake_vertex: FakeVertex,
                                                             monkeypatch, capsys, schedule_time: str, timezone: str,
                                                             granularity: str) -> None:
    monkeypatch.setenv("MLOPS_PARTITION_TIMEZONE", timezone)
    monkeypatch.setenv("MLOPS_SCHEDULE_GRANULARITY", granularity)
    http = function_app("schedule", "on_schedule_request").test_client()
    answer = http.post("/", headers={"X-CloudScheduler-ScheduleTime": schedule_time})
    assert (answer.status_code, answer.json["outcome"]) == (200, "ignored")
    assert schedule_time[:19] in answer.json["detail"] and "out of range" in answer.json["detail"]

    headers, body = to_binary(scheduler_message(schedule_time))
    assert function_app("schedule", "on_schedule_message").test_client().post(
        "/", headers=headers, data=body).status_code == 200
    assert fake_vertex.calls == []
    entries = [e for e in log_lines(capsys.readouterr().out) if e.get("trigger") == "schedule"]
    assert [(e["severity"], e["outcome"]) for e in entries] == [("WARNING", "ignored")] * 2
    assert all("traceback" not in e for e in entries)



def test_the_data_version_follows_the_partitions_bytes(function_app, chicago, fake_vertex: FakeVertex,
                                                       gcs: GcsEmulator) -> None:
    client = function_app("schedule", "on_schedule_request").test_client()
    tick = {"X-CloudScheduler-ScheduleTime": "2024-03-11T07:00:00Z"}  # -> partition 2024/03/10 (Chicago)
    batch = "data/processed/2024/03/10/1200/batch.csv"
    gcs.upload(DATA_BUCKET, batch, b"a,b\n1,2\n")
    client.post("/", headers=tick)
    gcs.upload(DATA_BUCKET, batch, b"a,b\n1,3\n")  # a corrected batch: same object, new generation
    client.post("/", headers=tick)  # the same slot again: the same job id, so Vertex answers 409

    first, second = (call["body"]["runtimeConfig"]["parameterValues"] for call in fake_vertex.calls)
    assert first["data_uri"] == second["data_uri"] == f"gs://{DATA_BUCKET}/data/processed/2024/03/10"
    assert first["data_version"] != second["data_version"]
    assert second["data_version"] == listing_version(second["data_uri"])
