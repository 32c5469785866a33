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


_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
# (name, lowest, highest, names for the values from lowest up, how the values are written)
_FIELDS = (
    ("minute", 0, 59, [], "0-59"),
    ("hour", 0, 23, [], "0-23"),
    ("day", 1, 31, [], "1-31"),
    ("month", 1, 12, _MONTH_NAMES, "1-12 or jan-dec"),
    ("weekday", 0, 7, _DAY_NAMES + ["sun"], "0-7 (0 and 7 are Sunday) or sun-sat"),
)
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTH_LONG_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_SHAPE = "cron takes 5 fields (minute hour day month weekday)"


def problem(expression: str) -> str | None:
    """What is wrong with a five-field cron expression, in plain English, or None when it is fine.

    Checks what crontab users get wrong (the field count, ranges, names, steps, a day that no
    month has) with a message naming the field; anything else APScheduler refuses is reported
    in its own words, so this accepts exactly what the agent can run."""
    fields = expression.split()
    if not fields:
        return f"the cron expression is empty; {_SHAPE}, such as '0 8 * * 1-5'"
    if len(fields) == 1 and fields[0].startswith("@"):
        nickname = fields[0].lower()
        if nickname in _NICKNAMES:
            return f"cron nicknames such as {nickname} are not supported; write the 5 fields: '{_NICKNAMES[nickname]}'"
        return f"'{fields[0]}' is not a cron expression; {_SHAPE}, such as '0 8 * * 1-5'"
    if len(fields) != 5:
        extra = "; there is no seconds or year field" if len(fields) in (6, 7) else ""
        return f"{_SHAPE}, got {len(fields)}{extra}"
    values: list[set[int] | None] = []
    for text, spec in zip(fields, _FIELDS):
        found = _field_values(text, *spec)
        if isinstance(found, str):
            return found
        values.append(found)
    days, months = values[2], values[3]
    if days is not None and months is not None and not any(d <= _DAYS_IN_MONTH[m - 1] for d in days for m in months):
        if len(days) == 1 and len(months) == 1:
            month = _MONTH_LONG_NAMES[next(iter(months)) - 1]
            return f"day {fields[2]} never comes in {month}: this schedule would never run"
        return f"no month in '{fields[3]}' has a day in '{fields[2]}': this schedule would never run"
    try:
        cron_trigger(expression, "UTC")
    except (ValueError, TypeError) as exc:
        return f"invalid cron expression: {exc}"
    return None


def _field_values(text: str, name: str, low: int, high: int, names: list[str], shown: str) -> set[int] | None | str:
    """The values a field selects, None for one only APScheduler understands (`last`), or what is wrong."""
    out: set[int] = set()
    for item in text.split(","):
        if not item:
            return f"the {name} field '{text}' has an empty item: remove the extra comma"
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit():
                return f"'/{step_text}' in the {name} field is not a step; write a whole number, as in */15"
            step = int(step_text)
            if step < 1:
                return f"the step in '{item}' ({name} field) must be at least 1"
        if base == "*":
            first, last = low, high
        else:
            ends = base.split("-")
            if len(ends) > 2 or not all(ends):
                return f"'{base}' is not a {name}: write {shown}"
            numbers = []
            for end in ends:
                if end.isdigit():
                    number = int(end)
                elif end.lower() in names:
                    number = names.index(end.lower()) + low
                else:
                    if name == "day" and end.lower() == "last":
                        return None  # APScheduler's own: the last day of the month
                    return f"'{end}' is not a {name}: write {shown}"
                if not low <= number <= high:
                    return f"{name} {number} is out of range: write {shown}"
                numbers.append(number)
            first, last = numbers[0], numbers[-1]
            if slash and len(numbers) == 1:
                last = high
            if last < first:
                return f"the {name} range '{base}' runs backwards; cron ranges do not wrap around"
        out.update(range(first, last + 1, step))
    return out


def cron_trigger(expression: str, tz: Any, jitter: int | None = None) -> Any:
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
        jitter=jitter,
    )


def trigger(schedule: Schedule, *, jittered: bool = True) -> Any:
    """The APScheduler trigger of a schedule; `jittered=False` gives the nominal times (for `pilot plan`)."""
    from apscheduler.triggers.interval import IntervalTrigger

    jitter = (int(schedule.jitter) or None) if jittered else None
    if schedule.cron:
        return cron_trigger(schedule.cron, schedule.timezone or _local_zone(), jitter)
    return IntervalTrigger(seconds=schedule.every or 60, jitter=jitter)


def grace(schedule: Schedule) -> int:
    return CRON_GRACE if schedule.cron else max(1, int(schedule.every or 60))


def _local_zone() -> Any:
    from tzlocal import get_localzone

    return get_localzone()


def next_fire_times(schedule: Schedule, count: int = 3, now: datetime | None = None) -> list[datetime]:
    """The next nominal run times (before jitter, which is drawn afresh for each run)."""
    trig = trigger(schedule, jittered=False)
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
