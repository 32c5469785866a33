"""When schedules fire: crontab expressions and intervals as APScheduler 3 triggers.

Shared by the validator (is this cron expression valid?), `pilot plan` (the
next fire times) and the agent's Scheduler. APScheduler is imported only
inside the functions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pilot.plan import Schedule

CRON_GRACE = 300  # seconds late a cron run may still happen (one catch-up at most)


_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _crontab_days(field_text: str) -> str:
    """crontab's day-of-week (0 or 7 = Sunday) as day names: APScheduler 3 numbers days from
    Monday, so `1-5` handed over as is would run Tuesday to Saturday."""
    days: list[int] = []
    for token in field_text.lower().split(","):
        token, _, step_text = token.partition("/")
        step = int(step_text) if step_text else 1
        if token == "*":
            low, high = 0, 6
        elif "-" in token:
            a, b = token.split("-", 1)
            low, high = _day(a), _day(b)
        else:
            low = high = _day(token)
            if step_text:
                high = 6
        if high < low:
            raise ValueError(f"day-of-week range {token!r} runs backwards")
        days += [d % 7 for d in range(low, high + 1, step)]
    return ",".join(_DAY_NAMES[d] for d in sorted(set(days)))


def _day(token: str) -> int:
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    value = int(token)
    if not 0 <= value <= 7:
        raise ValueError(f"day of week {value} is not 0-7")
    return value


def cron_trigger(expression: str, tz: Any) -> Any:
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"cron takes 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_crontab_days(weekday) if weekday != "*" else "*",
        timezone=tz,
    )


def trigger(schedule: Schedule) -> Any:
    from apscheduler.triggers.interval import IntervalTrigger

    jitter = int(schedule.jitter) or None
    if schedule.cron:
        return cron_trigger(schedule.cron, schedule.timezone or _local_zone())
    return IntervalTrigger(seconds=schedule.every or 60, jitter=jitter)


def grace(schedule: Schedule) -> int:
    return CRON_GRACE if schedule.cron else max(1, int(schedule.every or 60))


def _local_zone() -> Any:
    from tzlocal import get_localzone

    return get_localzone()


def next_fire_times(schedule: Schedule, count: int = 3, now: datetime | None = None) -> list[datetime]:
    trig = trigger(schedule)
    now = now or datetime.now(UTC)
    times: list[datetime] = []
    previous = None
    current = now
    for _ in range(count):
        fire = trig.get_next_fire_time(previous, current)
        if fire is None:
            break
        times.append(fire)
        previous = fire
        current = fire + timedelta(microseconds=1)
    return times
