"""Cron schedules: crontab's weekday numbering, time zones, next fire times, misfire policy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pilot.cron import CRON_GRACE, _crontab_days, grace, next_fire_times
from pilot.plan import Schedule, Step

NOTE = (Step("publish", topic="~/x", payload="y"),)


@pytest.mark.parametrize(
    "field, days",
    [
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("*/2", "sun,tue,thu,sat"),
        ("sat,sun", "sun,sat"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("6,0", "sun,sat"),
    ],
)
def test_crontab_weekdays_mean_what_crontab_means(field, days):
    assert _crontab_days(field) == days


def test_weeknight_shutdown_fires_on_weeknights_in_its_time_zone():
    schedule = Schedule(id="off", do=NOTE, cron="30 23 * * 1-5", timezone="Europe/Berlin")
    friday_noon = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # a Friday
    times = next_fire_times(schedule, 3, now=friday_noon)
    assert [t.strftime("%a %H:%M %Z") for t in times] == ["Fri 23:30 CET", "Mon 23:30 CET", "Tue 23:30 CET"]


def test_every_schedule_next_times_are_spaced_by_the_interval():
    schedule = Schedule(id="tick", do=NOTE, every=600)
    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    times = next_fire_times(schedule, 3, now=start)
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:])] == [600, 600]


def test_misfire_grace_is_bounded():
    # a laptop asleep through 23:30 must not shut down when it wakes at 08:00
    assert grace(Schedule(id="off", do=NOTE, cron="30 23 * * *")) == CRON_GRACE == 300
    assert grace(Schedule(id="tick", do=NOTE, every=60)) == 60


def test_backwards_weekday_range_is_an_error():
    with pytest.raises(ValueError):
        _crontab_days("5-1")
