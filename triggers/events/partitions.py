"""The landing layout `PREFIX/YYYY/MM/DD/HHMM/batch.csv` and the date arithmetic on it.

A partition's date is a calendar date in the layout's time zone. Date arithmetic
is done on dates, never by subtracting hours from instants: "yesterday" at
00:30 the day after a 23-hour day is still yesterday.

Digits are ASCII digits only: `\\d` and `int()` also read other scripts' digits
(`２０１４`), which would name an existing partition a second way. Every date
computed here stays within years 1-9999 or raises `ValueError` saying so, so an
event at the calendar's limits is malformed, never a crash.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo

from contract.paths import BATCH_FILE_NAME as BATCH_FILE

_BATCH_TAIL = re.compile(r"([0-9]{4})/([0-9]{2})/([0-9]{2})/([0-9]{2})([0-9]{2})/" + re.escape(BATCH_FILE))


def parse_batch_object(name: str, prefix: str) -> datetime.datetime:
    """The partition start encoded in an object name; ValueError says why a name is not a batch."""
    if not name.startswith(prefix + "/"):
        raise ValueError(f"object {name!r} is outside {prefix}/")
    tail = name[len(prefix) + 1:]
    match = _BATCH_TAIL.fullmatch(tail)
    if not match:
        raise ValueError(f"object {name!r} is not {prefix}/YYYY/MM/DD/HHMM/{BATCH_FILE}")
    year, month, day, hour, minute = (int(g) for g in match.groups())
    try:
        return datetime.datetime(year, month, day, hour, minute)
    except ValueError as error:
        raise ValueError(f"object {name!r} has an impossible partition date/time ({error})") from None


def partition_path(prefix: str, start: datetime.datetime) -> str:
    return f"{prefix}/{start:%Y/%m/%d/%H%M}"


def local_date(instant: datetime.datetime, timezone: zoneinfo.ZoneInfo) -> datetime.date:
    """The calendar date of an aware instant in the layout's time zone."""
    if instant.tzinfo is None:
        raise ValueError(f"instant {instant.isoformat()} has no time zone")
    try:
        return instant.astimezone(timezone).date()
    except OverflowError:
        raise ValueError(f"instant {instant.isoformat()} is out of range in {timezone}: "
                         "its date is not within years 1-9999") from None


def shift(day: datetime.date, granularity: str, periods: int) -> datetime.date:
    """The period `periods` before the one holding `day` (a month is named by its first day)."""
    if granularity not in ("day", "month"):
        raise ValueError(f"granularity {granularity!r}: expected day or month")
    try:
        if granularity == "day":
            return day - datetime.timedelta(days=periods)
        index = day.year * 12 + (day.month - 1) - periods
        return datetime.date(index // 12, index % 12 + 1, 1)
    except (OverflowError, ValueError):  # before 0001-01-01 or after 9999-12-31
        raise ValueError(f"{periods} {granularity}(s) before {day} is out of range: "
                         "dates are within years 1-9999") from None


def period_prefix(prefix: str, day: datetime.date, granularity: str) -> str:
    """`PREFIX/YYYY/MM/DD` for a day, `PREFIX/YYYY/MM` for a month: every batch of that period is under it."""
    return f"{prefix}/{day:%Y/%m/%d}" if granularity == "day" else f"{prefix}/{day:%Y/%m}"


def period_label(day: datetime.date, granularity: str) -> str:
    """A label-safe name of the period: 2026-03-09 or 2026-03."""
    return f"{day:%Y-%m-%d}" if granularity == "day" else f"{day:%Y-%m}"


def parse_instant(text: object, what: str) -> datetime.datetime:
    """An RFC 3339 timestamp with a time zone (Google APIs write 'Z' and up to 9 fraction digits)."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(f"{what} {text!r}: expected an RFC 3339 timestamp such as 2026-03-10T06:00:00Z")
    try:
        instant = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected an RFC 3339 timestamp such as 2026-03-10T06:00:00Z") from None
    if instant.tzinfo is None:
        raise ValueError(f"{what} {text!r}: expected a time zone (Z or +HH:MM)")
    try:
        return instant.astimezone(datetime.UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        raise ValueError(f"{what} {text!r} is out of range: expected an instant within years 1-9999 in UTC") from None
