"""The PostgreSQL store (psycopg 3): the SQLite store's schema and promises, for large fleets and for several
console instances sharing one database.

Safe to share: a batch lands in one transaction (binary COPY into a temporary table, then one upsert in key
order, so two instances writing the same series cannot deadlock); roll-ups are `ON CONFLICT` upserts recomputed
from the tier below, so whichever instance computes a bucket writes the same row; maintenance runs inside
`pg_try_advisory_xact_lock`, so one instance does it at a time and the others skip that pass. The history tiers
are keyed by (series, ts) with a BRIN index on ts for the roll-up and retention scans, which go by time across
every series (rows arrive in time order, so BRIN stays tight).

Charts read one series' range. Rows arrive in time order, so a series' rows lie one per heap page among every other
series': the key carries the columns a chart reads (`INCLUDE`), which makes a chart an index-only scan of
contiguous leaf pages, and autovacuum visits the tiers after 1 % new rows (not PostgreSQL's 20 %) so that the
visibility map, which index-only scans need, stays current.

Threads: a small pool of connections (each used by one thread at a time), so the web server's thread pool reads
while the ingest thread writes.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

try:
    import psycopg
except ImportError as exc:  # the extra is optional: say which one to install
    raise ImportError("the PostgreSQL store needs psycopg: install pilot-agent[postgres]") from exc

from pilot.console.storage.base import (
    ROLLUPS,
    STEP,
    CommandRecord,
    Retention,
    Sample,
    Series,
    SessionRecord,
    chart_tier,
    check_name,
    check_range,
    check_session,
    clean_command,
    clean_samples,
    command_limit,
    cutoffs,
    history_rows,
    rollup_window,
)

POOL_SIZE = 4
ROLLED = "sum(mean * count) / sum(count)::float8, min(min), max(max), sum(count)::bigint"  # roll-up of roll-ups
SCHEMA_LOCK = 0x70696C6F7401  # pg_advisory_xact_lock keys: creating the schema, and maintenance
MAINTAIN_LOCK = 0x70696C6F7402

_TIER_TABLE = """CREATE TABLE IF NOT EXISTS pilot_{tier} (
    series integer NOT NULL, ts double precision NOT NULL, mean double precision NOT NULL,
    min double precision NOT NULL, max double precision NOT NULL, count bigint NOT NULL,
    PRIMARY KEY (series, ts) INCLUDE (mean, count))"""
_VACUUM_OFTEN = (
    "ALTER TABLE {} SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02)"
)
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS pilot_series (
        id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, device text NOT NULL, entity text NOT NULL,
        UNIQUE (device, entity))""",
    """CREATE TABLE IF NOT EXISTS pilot_raw (
        series integer NOT NULL, ts double precision NOT NULL, value double precision NOT NULL,
        PRIMARY KEY (series, ts) INCLUDE (value))""",
    _TIER_TABLE.format(tier="1m"),
    _TIER_TABLE.format(tier="5m"),
    _TIER_TABLE.format(tier="1h"),
    *(_VACUUM_OFTEN.format(table) for table in ("pilot_raw", "pilot_1m", "pilot_5m", "pilot_1h")),
    "CREATE INDEX IF NOT EXISTS pilot_raw_ts ON pilot_raw USING brin (ts)",
    "CREATE INDEX IF NOT EXISTS pilot_1m_ts ON pilot_1m USING brin (ts)",
    "CREATE INDEX IF NOT EXISTS pilot_5m_ts ON pilot_5m USING brin (ts)",
    "CREATE INDEX IF NOT EXISTS pilot_1h_ts ON pilot_1h USING brin (ts)",
    "CREATE TABLE IF NOT EXISTS pilot_rollup (tier text PRIMARY KEY, done double precision NOT NULL)",
    """CREATE TABLE IF NOT EXISTS pilot_commands (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ts double precision NOT NULL, "user" text NOT NULL,
        device text NOT NULL, command text NOT NULL, value text NOT NULL, status text NOT NULL,
        reason text NOT NULL, detail text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS pilot_commands_ts ON pilot_commands (ts, id)",
    "CREATE INDEX IF NOT EXISTS pilot_commands_device ON pilot_commands (device, ts, id)",
    """CREATE TABLE IF NOT EXISTS pilot_sessions (
        token_hash text PRIMARY KEY, "user" text NOT NULL, role text NOT NULL, csrf text NOT NULL,
        created double precision NOT NULL, expires double precision NOT NULL,
        last_seen double precision NOT NULL)""",
    'CREATE INDEX IF NOT EXISTS pilot_sessions_user ON pilot_sessions ("user")',
    "CREATE INDEX IF NOT EXISTS pilot_sessions_expires ON pilot_sessions (expires)",
]
TABLES = (
    *("pilot_series", "pilot_raw", "pilot_1m", "pilot_5m", "pilot_1h"),
    *("pilot_rollup", "pilot_commands", "pilot_sessions"),
)
COMMAND_COLUMNS = 'ts, "user", device, command, value, status, reason, detail'
SESSION_COLUMNS = 'token_hash, "user", role, csrf, created, expires, last_seen'


class _Pool:
    """At most `size` connections (autocommit; transactions are explicit), each lent to one thread at a time."""

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self.slots = threading.BoundedSemaphore(size)
        self.closed = False

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        if self.closed:
            raise RuntimeError("storage is closed")
        if not self.slots.acquire(timeout=60):
            raise TimeoutError("no PostgreSQL connection free for 60 s")
        try:
            try:
                conn = self.idle.get_nowait()
            except queue.Empty:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            try:
                yield conn
            finally:
                if self.closed or conn.closed or conn.broken:
                    conn.close()
                else:
                    self.idle.put(conn)
        finally:
            self.slots.release()

    def close(self) -> None:
        self.closed = True
        while True:
            try:
                self.idle.get_nowait().close()
            except queue.Empty:
                return


class PostgresStorage:
    """History, command log and sessions in PostgreSQL (see the module docstring)."""

    def __init__(self, url: str, retention: Retention = Retention(), *, clock=time.time) -> None:
        self.retention = retention
        self.clock: Callable[[], float] = clock
        self._pool = _Pool(url, POOL_SIZE)
        self._series: dict[tuple[str, str], int] = {}
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))  # two instances starting at once
            for stmt in SCHEMA:
                conn.execute(stmt)

    # --- history --------------------------------------------------------------------------------------------

    def add(self, samples: Sequence[Sample]) -> None:
        """One transaction for the batch; a second sample for the same (series, ts) replaces the first."""
        rows = clean_samples(samples)
        if not rows:
            return
        new: dict[tuple[str, str], int] = {}
        with self._pool.connection() as conn, conn.transaction():
            missing = sorted({(d, e) for d, e, _, _ in rows} - self._series.keys())
            if missing:
                devices, entities = [d for d, _ in missing], [e for _, e in missing]
                conn.execute(
                    "INSERT INTO pilot_series (device, entity) SELECT * FROM unnest(%s::text[], %s::text[]) "
                    "ON CONFLICT DO NOTHING",
                    (devices, entities),
                )
                for sid, device, entity in conn.execute(
                    "SELECT s.id, s.device, s.entity FROM pilot_series s "
                    "JOIN unnest(%s::text[], %s::text[]) AS k(device, entity) "
                    "ON s.device = k.device AND s.entity = k.entity",
                    (devices, entities),
                ):
                    new[(device, entity)] = sid
            ids = self._series if not new else {**self._series, **new}
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS pilot_incoming "
                "(series integer, ts double precision, value double precision, ord integer) ON COMMIT DELETE ROWS"
            )
            with conn.cursor() as cur:
                with cur.copy("COPY pilot_incoming (series, ts, value, ord) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["int4", "float8", "float8", "int4"])
                    for i, (d, e, ts, v) in enumerate(rows):
                        copy.write_row((ids[(d, e)], ts, v, i))
                cur.execute(
                    "INSERT INTO pilot_raw (series, ts, value) "
                    "SELECT DISTINCT ON (series, ts) series, ts, value FROM pilot_incoming "
                    "ORDER BY series, ts, ord DESC "
                    "ON CONFLICT (series, ts) DO UPDATE SET value = EXCLUDED.value"
                )
        self._series.update(new)  # only once committed: a rolled-back id must not be remembered

    def _series_id(self, conn: psycopg.Connection, device: str, entity: str) -> int | None:
        key = (device, entity)
        if key in self._series:
            return self._series[key]
        row = conn.execute("SELECT id FROM pilot_series WHERE device = %s AND entity = %s", key).fetchone()
        if row is None:
            return None
        self._series[key] = row[0]  # ids are never reused or removed
        return row[0]

    def history(self, device: str, entity: str, start: float, end: float, *, max_points: int = 10000) -> Series:
        """[start, end] (both ends included) from the finest tier that reaches back to start; <= max_points."""
        check_name("device", device)
        check_name("entity", entity)
        start, end, max_points = check_range(start, end, max_points)
        tier = chart_tier(start, end, self.clock(), self.retention, max_points)
        with self._pool.connection() as conn:
            sid = self._series_id(conn, device, entity)
            if sid is None or end < start:
                return Series(tier, [], [])
            rows = history_rows(
                lambda sql, args: conn.execute(sql, args, binary=True).fetchall(),  # no float text to parse
                sid,
                tier,
                start,
                end,
                max_points,
                param="%s",
                # widths are whole seconds: an integer bucket key hashes faster than a float one, and a float
                # sum of counts avoids bigint's numeric accumulator (a 30-day chart averages 43,200 rows)
                bucket=lambda width: ("floor(ts / %s)::int8 * %s::int8", (width, int(width))),
                weighted_mean="sum(mean * count) / sum(count::float8)",
            )
        return Series(tier, [float(r[0]) for r in rows], [float(r[1]) for r in rows])

    def maintain(self, now: float) -> None:
        """Roll finished buckets up (raw -> 1m -> 5m and 1h), then delete what is past retention; idempotent. When
        another instance is maintaining the same database, this pass does nothing (it did the same work)."""
        now = float(now)
        if not math.isfinite(now):
            raise ValueError("maintain(now) needs a finite time")
        with self._pool.connection() as conn, conn.transaction():
            if not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (MAINTAIN_LOCK,)).fetchone()[0]:
                return
            first = "SELECT min((SELECT min(ts) FROM {} WHERE series = s.id)) FROM pilot_series s"  # index seeks
            for tier, source in ROLLUPS:
                aggregates = ROLLED if source != "raw" else "avg(value), min(value), max(value), count(*)"
                source = f"pilot_{source}"
                row = conn.execute("SELECT done FROM pilot_rollup WHERE tier = %s", (tier,)).fetchone()
                done = row[0] if row else None
                earliest = conn.execute(first.format(source)).fetchone()[0] if done is None else None
                start, end = rollup_window(tier, now, self.retention, done, earliest)
                if end > start:
                    width = STEP[tier]
                    conn.execute(
                        f"INSERT INTO pilot_{tier} (series, ts, mean, min, max, count) "
                        f"SELECT series, floor(ts / %s) * %s AS b, {aggregates} FROM {source} "
                        "WHERE ts >= %s AND ts < %s GROUP BY series, b ORDER BY series, b "
                        "ON CONFLICT (series, ts) DO UPDATE SET mean = EXCLUDED.mean, min = EXCLUDED.min, "
                        "max = EXCLUDED.max, count = EXCLUDED.count",
                        (width, width, start, end),
                    )
                conn.execute(
                    "INSERT INTO pilot_rollup (tier, done) VALUES (%s, %s) "
                    "ON CONFLICT (tier) DO UPDATE SET done = greatest(pilot_rollup.done, EXCLUDED.done)",
                    (tier, end),
                )
            cut = cutoffs(now, self.retention)
            for tier, before in cut.items():
                conn.execute(f"DELETE FROM pilot_{tier} WHERE ts < %s", (before,))
            conn.execute("DELETE FROM pilot_commands WHERE ts < %s", (cut["1h"],))  # kept as long as the 1h tier

    # --- command log ----------------------------------------------------------------------------------------

    def log_command(self, rec: CommandRecord) -> None:
        r = clean_command(rec)
        with self._pool.connection() as conn:
            conn.execute(
                f"INSERT INTO pilot_commands ({COMMAND_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (r.ts, r.user, r.device, r.command, r.value, r.status, r.reason, r.detail),
            )

    def command_log(self, device: str | None, limit: int = 100) -> list[CommandRecord]:
        """Newest first (by ts, then by the order logged), at most min(limit, 1000) records."""
        limit = command_limit(limit)
        with self._pool.connection() as conn:
            if device is None:
                rows = conn.execute(
                    f"SELECT {COMMAND_COLUMNS} FROM pilot_commands ORDER BY ts DESC, id DESC LIMIT %s", (limit,)
                ).fetchall()
            else:
                if not isinstance(device, str):
                    raise ValueError("device must be a string")
                rows = conn.execute(
                    f"SELECT {COMMAND_COLUMNS} FROM pilot_commands WHERE device = %s "
                    "ORDER BY ts DESC, id DESC LIMIT %s",
                    (device.replace("\x00", "\ufffd"), limit),
                ).fetchall()
        return [CommandRecord(*row) for row in rows]

    # --- sessions -------------------------------------------------------------------------------------------

    def put_session(self, rec: SessionRecord) -> None:
        r = check_session(rec)
        with self._pool.connection() as conn:
            conn.execute(
                f"INSERT INTO pilot_sessions ({SESSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                'ON CONFLICT (token_hash) DO UPDATE SET "user" = EXCLUDED."user", role = EXCLUDED.role, '
                "csrf = EXCLUDED.csrf, created = EXCLUDED.created, expires = EXCLUDED.expires, "
                "last_seen = EXCLUDED.last_seen",
                (r.token_hash, r.user, r.role, r.csrf, r.created, r.expires, r.last_seen),
            )

    def get_session(self, token_hash: str) -> SessionRecord | None:
        if not isinstance(token_hash, str) or "\x00" in token_hash:
            return None
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {SESSION_COLUMNS} FROM pilot_sessions WHERE token_hash = %s", (token_hash,)
            ).fetchone()
        return SessionRecord(*row) if row else None

    def touch_session(self, token_hash: str, last_seen: float) -> None:
        last_seen = float(last_seen)
        if not math.isfinite(last_seen):
            raise ValueError("last_seen must be finite")
        with self._pool.connection() as conn:
            conn.execute("UPDATE pilot_sessions SET last_seen = %s WHERE token_hash = %s", (last_seen, token_hash))

    def delete_session(self, token_hash: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM pilot_sessions WHERE token_hash = %s", (token_hash,))

    def delete_user_sessions(self, user: str) -> None:
        with self._pool.connection() as conn:
            conn.execute('DELETE FROM pilot_sessions WHERE "user" = %s', (user,))

    def purge_sessions(self, now: float) -> None:
        """Forget every session whose expiry is at or before now."""
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM pilot_sessions WHERE expires <= %s", (float(now),))

    # --- upkeep ---------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """Rows per table (counted: O(rows), for an admin page, not a hot path) and bytes of these tables."""
        out: dict[str, float] = {}
        with self._pool.connection() as conn:
            for key, table in (
                ("rows_raw", "pilot_raw"),
                ("rows_1m", "pilot_1m"),
                ("rows_5m", "pilot_5m"),
                ("rows_1h", "pilot_1h"),
                ("series", "pilot_series"),
                ("commands", "pilot_commands"),
                ("sessions", "pilot_sessions"),
            ):
                out[key] = float(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            (size,) = conn.execute(
                "SELECT sum(pg_total_relation_size(t::regclass)) FROM unnest(%s::text[]) AS t", (list(TABLES),)
            ).fetchone()
        out["bytes"] = float(size or 0)
        return out

    def close(self) -> None:
        self._pool.close()
