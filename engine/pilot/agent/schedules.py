"""Schedules on APScheduler 3: cron (with a time zone) or every, with jitter.

Loaded only when a profile has schedules (APScheduler costs ~5 MB of RSS).
`coalesce` folds missed runs into one, and a bounded misfire grace decides
whether that one catch-up run happens at all: a laptop that slept through a
23:30 shutdown must not shut down when it wakes at 08:00.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pilot.cron import grace, trigger
from pilot.plan import Schedule

log = logging.getLogger("pilot.schedules")


class Scheduler:
    def __init__(self, schedules: tuple[Schedule, ...], run: Callable[[Schedule], None]) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self._scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        self._run = run
        for schedule in schedules:
            self._scheduler.add_job(
                self._fire,
                trigger(schedule),
                args=[schedule],
                id=schedule.id,
                misfire_grace_time=grace(schedule),
                coalesce=True,
            )

    def _fire(self, schedule: Schedule) -> None:
        try:
            self._run(schedule)
        except Exception:
            log.exception("schedule %s failed", schedule.id)

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        try:
            self._scheduler.shutdown(wait=False)
        except Exception:
            pass
