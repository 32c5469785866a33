"""The console's store: sensor history in three tiers, the console's own command log, and sign-in sessions.

Two backends keep the same promises (the same behaviour tests run against both): SQLite, the default, one file
beside the console; PostgreSQL, for fleets that outgrow one machine or several console instances sharing a database.

History tiers: `raw` (every sample), `1m` and `1h` (per-bucket mean, min, max and count; a bucket is keyed by its
start). `maintain(now)` recomputes finished buckets from the tier below (so running it twice, or on two instances,
writes the same rows) and deletes rows past `Retention`. `history()` serves a range from the finest tier whose
retention still reaches back to `start`, averaged into wider buckets when that tier holds more than `max_points`.

Everything here may come from the network (device and entity names, command values), so names are bounded and
checked here too, not only by the caller: a store is the last place a bad value can be refused cheaply.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pilot.console.storage.base import CommandRecord, Retention, Sample, Series, SessionRecord, Storage

__all__ = ["CommandRecord", "Retention", "Sample", "Series", "SessionRecord", "Storage", "open_storage"]


def open_storage(url: str, retention: Retention = Retention(), *, clock: Callable[[], float] = time.time) -> Storage:
    """Open (creating if needed) the store named by `url`.

    "sqlite:///abs/path.db", "sqlite:relative.db", "postgresql://user@host:port/db" (or "postgres://").
    `clock` is what history() measures retention against when it picks a tier (tests inject one).
    """
    if not isinstance(url, str):
        raise ValueError("storage URL must be a string")
    if url.startswith("sqlite:"):
        from pilot.console.storage.sqlite import SQLiteStorage, sqlite_path

        return SQLiteStorage(sqlite_path(url), retention, clock=clock)
    if url.startswith(("postgresql://", "postgres://")):
        from pilot.console.storage.postgres import PostgresStorage

        return PostgresStorage(url, retention, clock=clock)
    raise ValueError("storage URL must start with sqlite: or postgresql://")
