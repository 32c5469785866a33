"""Schedules: crontab's weekday numbering, time zones, next fire times, jitter, and what happens to missed runs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pilot.agent.schedules import Scheduler
from pilot.cron import CRON_GRACE, _crontab_days, grace, next_fire_times, trigger
from pilot.plan import Schedule, Step

REPO = Path(__file__).resolve().parents[3]

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


def test_without_a_time_zone_a_cron_schedule_follows_the_machines(tmp_path):
    """TZ set for a child process stands for the machine's zone (tzlocal caches it, so not in this one)."""
    code = (
        "from datetime import UTC, datetime\n"
        "from pilot.cron import next_fire_times\n"
        "from pilot.plan import Schedule, Step\n"
        "s = Schedule(id='s', do=(Step('delay'),), cron='0 8 * * *')\n"
        "print(next_fire_times(s, 1, now=datetime(2026, 6, 1, 0, 0, tzinfo=UTC))[0].astimezone(UTC).isoformat())\n"
    )
    env = {**os.environ, "TZ": "Asia/Tokyo", "PYTHONPATH": str(REPO / "engine")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2026-06-01T23:00:00+00:00"  # 08:00 in Tokyo (UTC+9, no summer time)


def test_jitter_delays_each_run_by_up_to_its_length_and_never_moves_it_earlier():
    schedule = Schedule(id="backup", do=NOTE, every=3600, jitter=300)
    previous = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    trig = trigger(schedule)
    delays = [
        (trig.get_next_fire_time(previous, previous + timedelta(seconds=1)) - previous).total_seconds() - 3600
        for _ in range(200)
    ]
    assert all(0 <= d <= 300 for d in delays), (min(delays), max(delays))
    assert len(set(delays)) > 100  # random: 200 draws from [0, 300] s, not one fixed offset
    assert max(delays) - min(delays) > 150  # spread over the window (false with odds about 2**-199)


def test_jitter_delays_each_run_of_a_cron_schedule_too():
    schedule = Schedule(id="report", do=NOTE, cron="0 8 * * *", timezone="UTC", jitter=600)
    previous = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    trig = trigger(schedule)
    after = previous + timedelta(seconds=1)
    delays = [(trig.get_next_fire_time(previous, after) - previous).total_seconds() - 86400 for _ in range(200)]
    assert all(0 <= d <= 600 for d in delays), (min(delays), max(delays))
    assert max(delays) - min(delays) > 300  # spread over the window (false with odds about 2**-199)


def test_pilot_plan_shows_the_nominal_times_without_jitter():
    schedule = Schedule(id="report", do=NOTE, cron="0 8 * * *", timezone="UTC", jitter=600)
    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert [t.isoformat() for t in next_fire_times(schedule, 2, now=now)] == [
        "2026-11-28T08:00:00+00:00",
        "2026-11-29T08:00:00+00:00",
    ]


# ------------------------------------------------------------------ missed runs, in the real scheduler
# A schedule whose next run lies in the past stands for an agent that was asleep (a suspended laptop):
# APScheduler finds the run overdue as soon as it starts, exactly as it does on waking up.


def late_runs(schedule: Schedule, late: float) -> tuple[list[str], list[int]]:
    """Start a Scheduler whose next run of `schedule` was due `late` seconds ago; return the runs it
    made and the APScheduler events (executed or missed) once it has dealt with the overdue run."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED

    runs: list[str] = []
    events: list[int] = []
    seen = threading.Event()
    scheduler = Scheduler((schedule,), lambda s: runs.append(s.id))
    aps = scheduler._scheduler  # the APScheduler instance: the test sets the overdue run on it

    def note(event) -> None:
        events.append(event.code)
        seen.set()

    aps.add_listener(note, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    aps.modify_job(schedule.id, next_run_time=datetime.now(UTC) - timedelta(seconds=late))
    scheduler.start()
    try:
        assert seen.wait(20), "the scheduler never dealt with the overdue run"
    finally:
        scheduler.stop()
    return runs, events


def test_a_cron_run_missed_by_less_than_five_minutes_runs_once():
    from apscheduler.events import EVENT_JOB_EXECUTED

    runs, events = late_runs(Schedule(id="off", do=NOTE, cron="30 23 * * *", timezone="UTC"), late=240)
    assert runs == ["off"] and events == [EVENT_JOB_EXECUTED]


def test_a_cron_run_missed_by_more_than_five_minutes_is_skipped():
    """The laptop that slept through the 23:30 shutdown does not shut down when it wakes."""
    from apscheduler.events import EVENT_JOB_MISSED

    runs, events = late_runs(Schedule(id="off", do=NOTE, cron="30 23 * * *", timezone="UTC"), late=360)
    assert runs == [] and events == [EVENT_JOB_MISSED]


def test_many_missed_cron_runs_fold_into_one_catch_up_run():
    """Ten minutes asleep missed ten runs of an every-minute schedule: one run on waking, not ten."""
    runs, _ = late_runs(Schedule(id="minutely", do=NOTE, cron="* * * * *", timezone="UTC"), late=600)
    assert runs == ["minutely"]


def test_many_missed_interval_runs_fold_into_one_catch_up_run():
    runs, _ = late_runs(Schedule(id="tick", do=NOTE, every=60), late=610)
    assert runs == ["tick"]
