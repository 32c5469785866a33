"""The SQLite store: one file (mode 0600) in WAL mode, the default backend.

Layout: `pilot_series(id, device, entity)` names each series once; the history tiers are `WITHOUT ROWID` tables
keyed by (series, ts), so one series' range is one contiguous stretch of the B-tree (a 24 h chart reads a few
hundred pages, however large the fleet). Writes go through `BEGIN IMMEDIATE` (the write lock is taken up front,
so two writers queue on busy_timeout instead of failing on a lock upgrade) and one in-process lock (this
process's writers queue on it rather than spinning on the busy handler); `synchronous=NORMAL` in WAL mode loses
at most the last commits on power loss, never the file.

Threads: one connection per thread (created on first use, all closed by close()), so the web server's thread
pool reads while the ingest thread writes: WAL readers never wait for the writer.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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

ROLLED = "sum(mean * count) / sum(count), min(min), max(max), sum(count)"  # a roll-up of roll-up rows
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 65536

SCHEMA = """
CREATE TABLE IF NOT EXISTS pilot_series (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, entity TEXT NOT NULL, UNIQUE (device, entity));
CREATE TABLE IF NOT EXISTS pilot_raw (
    series INTEGER NOT NULL, ts REAL NOT NULL, value REAL NOT NULL, PRIMARY KEY (series, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pilot_1m (
    series INTEGER NOT NULL, ts REAL NOT NULL, mean REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    count INTEGER NOT NULL, PRIMARY KEY (series, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pilot_5m (
    series INTEGER NOT NULL, ts REAL NOT NULL, mean REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    count INTEGER NOT NULL, PRIMARY KEY (series, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pilot_1h (
    series INTEGER NOT NULL, ts REAL NOT NULL, mean REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    count INTEGER NOT NULL, PRIMARY KEY (series, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pilot_rollup (tier TEXT PRIMARY KEY, done REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pilot_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, user TEXT NOT NULL, device TEXT NOT NULL,
    command TEXT NOT NULL, value TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pilot_commands_ts ON pilot_commands (ts, id);
CREATE INDEX IF NOT EXISTS pilot_commands_device ON pilot_commands (device, ts, id);
CREATE TABLE IF NOT EXISTS pilot_sessions (
    token_hash TEXT PRIMARY KEY, user TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL, last_seen REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pilot_sessions_user ON pilot_sessions (user);
CREATE INDEX IF NOT EXISTS pilot_sessions_expires ON pilot_sessions (expires);
"""


def bucket(expr: str, width: float, non_negative: bool = False) -> str:
    """SQL for floor(expr / width) * width (SQLite's floor() is an optional build feature; CAST truncates toward
    zero, which is floor only when expr is known to be >= 0: then the correction is left out, a third quicker)."""
    q = f"CAST(({expr}) / {width!r} AS INTEGER)"
    if non_negative:
        return f"({q} * {width!r})"
    return f"(({q} - (({expr}) < {q} * {width!r})) * {width!r})"


def sqlite_path(url: str) -> Path:
    """The file a sqlite: URL names: sqlite:///abs/path.db (absolute) or sqlite:relative.db."""
    rest = url[len("sqlite:") :]
    if rest.startswith("///"):
        path = rest[2:]
    elif rest.startswith("//"):
        raise ValueError("sqlite URL takes no host: use sqlite:///absolute/path.db or sqlite:relative.db")
    else:
        path = rest
    if not path or path == ":memory:" or "?" in path or "\x00" in path:
        raise ValueError("sqlite URL must name a database file")
    return Path(path)


class SQLiteStorage:
    """History, command log and sessions in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, retention: Retention = Retention(), *, clock=time.time) -> None:
        self.path = Path(path)
        self.retention = retention
        self.clock: Callable[[], float] = clock
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._series: dict[tuple[str, str], int] = {}
        self._closed = False
        self._create_file()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        with self._write():
            for stmt in _statements(SCHEMA):  # not executescript(): it would commit first
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _create_file(self) -> None:
        """Create the file 0600 before SQLite opens it (SQLite gives its -wal and -shm files the same mode)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise RuntimeError("storage is closed")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
        # up to 64 MiB of pages per connection (SQLite's default is 2 MiB): a batch touches one leaf page per series,
        # and a fleet's worth of them must stay cached or every insert rereads its page (3x slower at 400 series)
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._local.conn = conn
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _write(self) -> _Transaction:
        return _Transaction(self._conn(), self._write_lock)

    # --- history --------------------------------------------------------------------------------------------

    def add(self, samples: Sequence[Sample]) -> None:
        """One transaction for the batch; a second sample for the same (series, ts) replaces the first."""
        rows = clean_samples(samples)
        if not rows:
            return
        new: dict[tuple[str, str], int] = {}
        with self._write() as conn:
            missing = {(d, e) for d, e, _, _ in rows} - self._series.keys()
            if missing:
                conn.executemany("INSERT OR IGNORE INTO pilot_series (device, entity) VALUES (?, ?)", sorted(missing))
                for key in missing:
                    new[key] = conn.execute(
                        "SELECT id FROM pilot_series WHERE device = ? AND entity = ?", key
                    ).fetchone()[0]
            ids = self._series if not new else {**self._series, **new}
            conn.executemany(
                "INSERT OR REPLACE INTO pilot_raw (series, ts, value) VALUES (?, ?, ?)",
                [(ids[(d, e)], ts, v) for d, e, ts, v in rows],
            )
        self._series.update(new)  # only once committed: a rolled-back id must not be remembered

    def _series_id(self, conn: sqlite3.Connection, device: str, entity: str) -> int | None:
        key = (device, entity)
        if key in self._series:
            return self._series[key]
        row = conn.execute("SELECT id FROM pilot_series WHERE device = ? AND entity = ?", key).fetchone()
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
        conn = self._conn()
        sid = self._series_id(conn, device, entity)
        if sid is None or end < start:
            return Series(tier, [], [])
        rows = history_rows(
            lambda sql, args: conn.execute(sql, args).fetchall(),
            sid,
            tier,
            start,
            end,
            max_points,
            param="?",
            bucket=lambda width: (bucket("ts", width, start >= 0), ()),
            weighted_mean="sum(mean * count) / sum(count)",
        )
        return Series(tier, [r[0] for r in rows], [r[1] for r in rows])

    def maintain(self, now: float) -> None:
        """Roll finished buckets up (raw -> 1m -> 5m and 1h), then delete what is past retention; idempotent."""
        every_series = "series IN (SELECT id FROM pilot_series)"  # lets SQLite seek each series' range
        first = "SELECT min((SELECT min(ts) FROM {} WHERE series = s.id)) FROM pilot_series s"  # a seek per series
        for tier, source in ROLLUPS:
            aggregates = ROLLED if source != "raw" else "avg(value), min(value), max(value), count(*)"
            source = f"pilot_{source}"
            with self._write() as conn:
                row = conn.execute("SELECT done FROM pilot_rollup WHERE tier = ?", (tier,)).fetchone()
                done = row[0] if row else None
                earliest = conn.execute(first.format(source)).fetchone()[0] if done is None else None
                start, end = rollup_window(tier, now, self.retention, done, earliest)
                if end > start:
                    width = STEP[tier]
                    conn.execute(
                        f"INSERT OR REPLACE INTO pilot_{tier} (series, ts, mean, min, max, count) "
                        f"SELECT series, {bucket('ts', width)} AS b, {aggregates} FROM {source} "
                        f"WHERE {every_series} AND ts >= ? AND ts < ? GROUP BY series, b",
                        (start, end),
                    )
                _set_done(conn, tier, end)
        for tier, before in cutoffs(now, self.retention).items():
            with self._write() as conn:
                conn.execute(f"DELETE FROM pilot_{tier} WHERE {every_series} AND ts < ?", (before,))
        with self._write() as conn:  # the console's own audit is kept as long as the longest tier
            conn.execute("DELETE FROM pilot_commands WHERE ts < ?", (cutoffs(now, self.retention)["1h"],))

    # --- command log ----------------------------------------------------------------------------------------

    def log_command(self, rec: CommandRecord) -> None:
        r = clean_command(rec)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO pilot_commands (ts, user, device, command, value, status, reason, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (r.ts, r.user, r.device, r.command, r.value, r.status, r.reason, r.detail),
            )

    def command_log(self, device: str | None, limit: int = 100) -> list[CommandRecord]:
        """Newest first (by ts, then by the order logged), at most min(limit, 1000) records."""
        limit = command_limit(limit)
        cols = "ts, user, device, command, value, status, reason, detail"
        if device is None:
            rows = self._conn().execute(
                f"SELECT {cols} FROM pilot_commands ORDER BY ts DESC, id DESC LIMIT ?", (limit,)
            )
        else:
            if not isinstance(device, str):
                raise ValueError("device must be a string")
            rows = self._conn().execute(
                f"SELECT {cols} FROM pilot_commands WHERE device = ? ORDER BY ts DESC, id DESC LIMIT ?",
                (device, limit),
            )
        return [CommandRecord(*row) for row in rows.fetchall()]

    # --- sessions -------------------------------------------------------------------------------------------

    def put_session(self, rec: SessionRecord) -> None:
        r = check_session(rec)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO pilot_sessions (token_hash, user, role, csrf, created, expires, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (r.token_hash, r.user, r.role, r.csrf, r.created, r.expires, r.last_seen),
            )

    def get_session(self, token_hash: str) -> SessionRecord | None:
        if not isinstance(token_hash, str):
            return None
        row = (
            self._conn()
            .execute(
                "SELECT token_hash, user, role, csrf, created, expires, last_seen FROM pilot_sessions "
                "WHERE token_hash = ?",
                (token_hash,),
            )
            .fetchone()
        )
        return SessionRecord(*row) if row else None

    def touch_session(self, token_hash: str, last_seen: float) -> None:
        last_seen = float(last_seen)
        if not math.isfinite(last_seen):
            raise ValueError("last_seen must be finite")
        with self._write() as conn:
            conn.execute("UPDATE pilot_sessions SET last_seen = ? WHERE token_hash = ?", (last_seen, token_hash))

    def delete_session(self, token_hash: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM pilot_sessions WHERE token_hash = ?", (token_hash,))

    def delete_user_sessions(self, user: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM pilot_sessions WHERE user = ?", (user,))

    def purge_sessions(self, now: float) -> None:
        """Forget every session whose expiry is at or before now."""
        with self._write() as conn:
            conn.execute("DELETE FROM pilot_sessions WHERE expires <= ?", (float(now),))

    # --- upkeep ---------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """Rows per table (counted: O(rows), for an admin page, not a hot path) and bytes on disk (file + WAL)."""
        conn = self._conn()
        out: dict[str, float] = {}
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
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.stat(f"{self.path}{suffix}").st_size
            except FileNotFoundError:
                pass
        out["bytes"] = float(size)
        return out

    def close(self) -> None:
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()


class _Transaction:
    """`with` block: this process's write lock, BEGIN IMMEDIATE, COMMIT (ROLLBACK on an exception)."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self.conn, self.lock = conn, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.lock.release()


def _set_done(conn: sqlite3.Connection, tier: str, done: float) -> None:
    """Record how far a roll-up got; never moves back (two instances may finish in either order)."""
    conn.execute(
        "INSERT INTO pilot_rollup (tier, done) VALUES (?, ?) "
        "ON CONFLICT (tier) DO UPDATE SET done = max(done, excluded.done)",
        (tier, done),
    )


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
