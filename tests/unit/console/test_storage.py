"""The console store's promises, on SQLite.

tests/live/console/test_storage_postgres.py runs every test here not named `test_sqlite_*` against a real
PostgreSQL, through its own `backend` fixture: both backends are held to the same behaviour.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pilot.console.storage import (
    CommandRecord,
    Retention,
    Sample,
    SessionRecord,
    Storage,
    open_storage,
)

T0 = 1_700_002_800.0  # a whole hour (472223 * 3600), so minute and hour buckets start at T0
HOUR, DAY = 3600.0, 86400.0


@dataclass
class SQLiteBackend:
    """Opens stores on one database file; `rows(tier)` reads a tier's table directly (what history() cannot show)."""

    path: Path
    stores: list = field(default_factory=list)

    def make(self, retention: Retention = Retention(), now: float = T0) -> Storage:
        store = open_storage(f"sqlite:///{self.path}", retention, clock=lambda: now)
        self.stores.append(store)
        return store

    def rows(self, tier: str) -> list[tuple]:
        cols = "value" if tier == "raw" else "mean, min, max, count"
        with sqlite3.connect(self.path) as conn:
            return conn.execute(
                f"SELECT s.device, s.entity, t.ts, {cols} FROM pilot_{tier} t JOIN pilot_series s ON s.id = t.series "
                "ORDER BY s.device, s.entity, t.ts"
            ).fetchall()

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
def backend(tmp_path):
    b = SQLiteBackend(tmp_path / "console.db")
    yield b
    b.close()


def samples(device: str, entity: str, pairs) -> list[Sample]:
    return [Sample(device, entity, ts, value) for ts, value in pairs]


# --- history ----------------------------------------------------------------------------------------------------


def test_a_batch_reads_back_exactly_in_time_order(backend):
    store = backend.make()
    pairs = [(T0 + 20, -1.5), (T0, 0.1), (T0 + 10, 1e-300), (T0 + 30.25, 123456789.125), (T0 + 40, 0.0)]
    store.add(samples("pc", "cpu", pairs) + samples("pc", "mem", [(T0, 99.0)]))
    got = store.history("pc", "cpu", T0, T0 + 40)
    assert got.tier == "raw"
    assert got.ts == [T0, T0 + 10, T0 + 20, T0 + 30.25, T0 + 40]
    assert got.values == [0.1, 1e-300, -1.5, 123456789.125, 0.0]
    assert store.history("pc", "mem", T0, T0 + 40).values == [99.0]


def test_a_range_includes_both_ends_and_nothing_outside(backend):
    store = backend.make()
    store.add(samples("pc", "cpu", [(T0 - 1, 1.0), (T0, 2.0), (T0 + 5, 3.0), (T0 + 10, 4.0), (T0 + 11, 5.0)]))
    assert store.history("pc", "cpu", T0, T0 + 10).values == [2.0, 3.0, 4.0]
    assert store.history("pc", "cpu", T0 + 10, T0).values == []  # an empty range, not an error


def test_a_second_sample_at_the_same_time_replaces_the_first(backend):
    store = backend.make()
    store.add(samples("pc", "cpu", [(T0, 1.0), (T0, 2.0)]))
    store.add(samples("pc", "cpu", [(T0, 3.0)]))
    assert store.history("pc", "cpu", T0, T0).values == [3.0]


def test_an_unknown_series_is_empty(backend):
    store = backend.make()
    store.add(samples("pc", "cpu", [(T0, 1.0)]))
    assert store.history("pc", "gpu", T0 - 10, T0 + 10).values == []
    assert store.history("other", "cpu", T0 - 10, T0 + 10).ts == []


def minute_inputs() -> list[Sample]:
    """Three minutes by hand: [1, 2, 6] (mean 3), [-5, 10] (mean 2.5), [7]; the hour: mean 21/6, min -5, max 10."""
    return samples(
        "pc",
        "cpu",
        [(T0, 1.0), (T0 + 20, 2.0), (T0 + 59.5, 6.0), (T0 + 60, -5.0), (T0 + 119, 10.0), (T0 + 150, 7.0)],
    )


def test_rollups_keep_mean_min_max_and_count_of_their_bucket(backend):
    store = backend.make()
    store.add(minute_inputs())
    store.maintain(T0 + HOUR + 60)
    assert backend.rows("1m") == [
        ("pc", "cpu", T0, pytest.approx(3.0), 1.0, 6.0, 3),
        ("pc", "cpu", T0 + 60, pytest.approx(2.5), -5.0, 10.0, 2),
        ("pc", "cpu", T0 + 120, pytest.approx(7.0), 7.0, 7.0, 1),
    ]
    assert backend.rows("5m") == [("pc", "cpu", T0, pytest.approx(3.5), -5.0, 10.0, 6)]
    assert backend.rows("1h") == [("pc", "cpu", T0, pytest.approx(3.5), -5.0, 10.0, 6)]


def test_an_unfinished_bucket_is_not_rolled_up(backend):
    store = backend.make()
    store.add(minute_inputs())
    store.maintain(T0 + 119)  # the minute from T0+60 ends at T0+120: not finished yet
    assert [r[2] for r in backend.rows("1m")] == [T0]
    assert backend.rows("5m") == []
    assert backend.rows("1h") == []


def test_history_picks_the_finest_tier_that_reaches_back_to_start(backend):
    backend.make().add(minute_inputs())
    backend.stores[0].maintain(T0 + HOUR + 60)
    near = backend.make(now=T0 + 2 * DAY)  # raw keeps 48 h: T0 is just inside
    assert near.history("pc", "cpu", T0, T0 + 200).tier == "raw"
    assert near.history("pc", "cpu", T0, T0 + 200).values == [1.0, 2.0, 6.0, -5.0, 10.0, 7.0]
    later = backend.make(now=T0 + 2 * DAY + 1)
    got = later.history("pc", "cpu", T0, T0 + 200)
    assert (got.tier, got.ts, got.values) == ("1m", [T0, T0 + 60, T0 + 120], pytest.approx([3.0, 2.5, 7.0]))
    month = backend.make(now=T0 + 30 * DAY + 1)
    got = month.history("pc", "cpu", T0, T0 + 200)
    assert (got.tier, got.ts, got.values) == ("1h", [T0], pytest.approx([3.5]))


def test_a_long_raw_range_is_averaged_into_at_most_max_points(backend):
    store = backend.make()
    store.add(samples("pc", "cpu", [(T0 + i, float(i)) for i in range(100)]))
    assert len(store.history("pc", "cpu", T0, T0 + 99, max_points=100).ts) == 100  # fits: untouched
    got = store.history("pc", "cpu", T0, T0 + 99, max_points=11)
    # 99 s into at most 11 buckets: 10 s wide, aligned to multiples of 10 s: 0..9, 10..19, ... 90..99
    assert got.tier == "raw"
    assert got.ts == [T0 + 10 * k for k in range(10)]
    assert got.values == pytest.approx([4.5 + 10 * k for k in range(10)])


def test_downsampled_rollups_are_weighted_by_their_counts(backend):
    backend.make().add(minute_inputs())
    backend.stores[0].maintain(T0 + HOUR + 60)
    store = backend.make(now=T0 + 3 * DAY)
    got = store.history("pc", "cpu", T0, T0 + 120, max_points=2)
    # two 120 s buckets: minutes 0-1 (counts 3 and 2: (1+2+6-5+10)/5 = 2.8, not (3+2.5)/2) and minute 2
    assert (got.tier, got.ts, got.values) == ("1m", [T0, T0 + 120], pytest.approx([2.8, 7.0]))


def two_five_minutes() -> list[Sample]:
    """minute_inputs() (the first five minutes: 21 over 6 readings) and minutes 5 and 6: [4] and [2, 2] (8 over 3)."""
    return minute_inputs() + samples("pc", "cpu", [(T0 + 300, 4.0), (T0 + 370, 2.0), (T0 + 390, 2.0)])


def test_a_chart_whose_buckets_hold_five_minutes_reads_the_5m_tier_with_the_same_means(backend):
    backend.make().add(two_five_minutes())
    backend.stores[0].maintain(T0 + HOUR + 60)
    store = backend.make(now=T0 + 3 * DAY)  # past raw's 48 h
    # 600 s into at most 3 points: 300 s buckets, so the 5m rows serve it (2 rows, not the 1m tier's 5)
    got = store.history("pc", "cpu", T0, T0 + 600, max_points=3)
    assert (got.tier, got.ts, got.values) == ("5m", [T0, T0 + 300], pytest.approx([3.5, 8 / 3]))
    assert store.history("pc", "cpu", T0, T0 + 600, max_points=4).tier == "1m"  # 240 s buckets: 5m rows too wide
    # buckets of two hours (aligned to multiples of 7,200 s: T0 is an odd hour): the 1h tier, 29 over 9 readings
    got = store.history("pc", "cpu", T0, T0 + 2 * HOUR, max_points=2)
    assert (got.tier, got.ts, got.values) == ("1h", [T0 - HOUR], pytest.approx([29 / 9]))


def test_the_5m_tier_is_read_only_where_its_retention_reaches_back(backend):
    backend.make().add(two_five_minutes())
    backend.stores[0].maintain(T0 + HOUR + 60)
    retention = Retention(raw=100, minute=10 * DAY, hour=365 * DAY, five_minute=DAY)
    store = backend.make(retention, now=T0 + 2 * DAY)  # T0 is inside 1m's 10 days, outside 5m's one day
    got = store.history("pc", "cpu", T0, T0 + 600, max_points=3)
    assert (got.tier, got.ts, got.values) == ("1m", [T0, T0 + 300], pytest.approx([3.5, 8 / 3]))


def test_a_raw_chart_is_never_served_from_a_rollup(backend):
    store = backend.make(now=T0 + HOUR)
    store.add(two_five_minutes())
    store.maintain(T0 + HOUR)
    got = store.history("pc", "cpu", T0, T0 + HOUR, max_points=2)  # one bucket of an hour, from raw readings
    assert (got.tier, got.ts, got.values) == ("raw", [T0], pytest.approx([29 / 9]))


@pytest.mark.parametrize("points", [0, 1, 100_001])
def test_max_points_out_of_bounds_is_refused(backend, points):
    with pytest.raises(ValueError, match="max_points"):
        backend.make().history("pc", "cpu", T0, T0 + 10, max_points=points)


# --- maintenance ------------------------------------------------------------------------------------------------


def test_retention_deletes_exactly_the_rows_past_it(backend):
    store = backend.make()
    store.add(samples("pc", "cpu", [(T0 + 10 * i, float(i)) for i in range(18)]))  # T0 .. T0+170
    store.maintain(T0 + HOUR + 60)  # rolls three minutes and the hour
    store.maintain(T0 + 2 * DAY + 10)  # raw keeps 48 h: a row at T0+10 is not past it, one at T0 is
    assert [r[2] for r in backend.rows("raw")] == [T0 + 10 * i for i in range(1, 18)]
    store.maintain(T0 + 30 * DAY + 60)  # the 1m row at T0 is past 30 days, the one at T0+60 is not
    assert backend.rows("raw") == []
    assert [r[2] for r in backend.rows("1m")] == [T0 + 60, T0 + 120]
    assert backend.rows("5m") == []  # kept as long as 1m by default: its row at T0 is past 30 days too
    assert backend.rows("1h") == [("pc", "cpu", T0, pytest.approx(8.5), 0.0, 17.0, 18)]  # not recomputed partial
    store.maintain(T0 + 365 * DAY)
    assert len(backend.rows("1h")) == 1
    store.maintain(T0 + 365 * DAY + 0.5)
    assert backend.rows("1h") == []


def test_retention_is_configurable(backend):
    store = backend.make(Retention(raw=100, minute=1000, hour=10000))
    store.add(samples("pc", "cpu", [(T0, 1.0), (T0 + 200, 2.0)]))
    store.maintain(T0 + 250)  # the first pass rolls up every raw row, even one already past raw's retention
    assert [r[2] for r in backend.rows("raw")] == [T0 + 200]
    assert [r[2] for r in backend.rows("1m")] == [T0, T0 + 180]


def test_maintenance_twice_or_on_a_second_instance_writes_the_same_rows(backend):
    first = backend.make()
    first.add(minute_inputs() + samples("nas", "disk", [(T0 + 30, 4.0), (T0 + 3700, 8.0)]))
    first.maintain(T0 + 2 * HOUR + 30)
    once = {tier: backend.rows(tier) for tier in ("raw", "1m", "5m", "1h")}
    first.maintain(T0 + 2 * HOUR + 30)
    backend.make().maintain(T0 + 2 * HOUR + 30)
    assert {tier: backend.rows(tier) for tier in ("raw", "1m", "5m", "1h")} == once
    assert [r[:3] for r in once["1h"]] == [("nas", "disk", T0), ("nas", "disk", T0 + HOUR), ("pc", "cpu", T0)]


def test_a_sample_flushed_after_its_minute_was_rolled_up_is_rolled_in_next_time(backend):
    store = backend.make()
    store.add(samples("pc", "cpu", [(T0, 1.0)]))
    store.maintain(T0 + 61)
    store.add(samples("pc", "cpu", [(T0 + 30, 3.0)]))  # late: ingest flushed it after maintenance
    store.maintain(T0 + 62)
    assert backend.rows("1m") == [("pc", "cpu", T0, pytest.approx(2.0), 1.0, 3.0, 2)]


def test_two_instances_writing_and_maintaining_together_agree_with_the_inputs(backend):
    instances = [backend.make(), backend.make()]
    steps = 30  # 30 steps of 20 s: ten minutes, each instance writing its own devices and maintaining every step
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        store = instances[index]
        try:
            for step in range(steps):
                ts = T0 + 20 * step
                store.add([Sample(f"dev{index}-{d}", "load", ts, float(step * (d + 1))) for d in range(3)])
                barrier.wait()
                store.maintain(ts + 10)
                barrier.wait()
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    instances[0].maintain(T0 + 20 * steps + 60)
    # each minute holds steps 3m, 3m+1, 3m+2: values step*(d+1); its mean is (3m+1)*(d+1)
    expected = [
        (
            f"dev{i}-{d}",
            "load",
            T0 + 60 * m,
            pytest.approx((3 * m + 1) * (d + 1)),
            3 * m * (d + 1),
            (3 * m + 2) * (d + 1),
            3,
        )
        for i in range(2)
        for d in range(3)
        for m in range(10)
    ]
    assert backend.rows("1m") == expected


# --- command log ------------------------------------------------------------------------------------------------


def press(ts: float, device: str = "pc", **kw) -> CommandRecord:
    fields = dict(user="ann", device=device, command="reboot", value="PRESS", status="ok", reason="", detail="")
    fields.update(kw)
    return CommandRecord(ts=ts, **fields)


def test_command_log_is_newest_first_per_device_and_limited(backend):
    store = backend.make()
    for rec in [press(T0 + 1), press(T0 + 3, "nas"), press(T0 + 2), press(T0 + 2, status="armed")]:
        store.log_command(rec)
    assert [(r.ts, r.device, r.status) for r in store.command_log(None)] == [
        (T0 + 3, "nas", "ok"),
        (T0 + 2, "pc", "armed"),  # same time: the one logged later first
        (T0 + 2, "pc", "ok"),
        (T0 + 1, "pc", "ok"),
    ]
    assert [r.ts for r in store.command_log("pc", limit=2)] == [T0 + 2, T0 + 2]
    assert store.command_log("nas") == [press(T0 + 3, "nas")]
    assert store.command_log("nobody") == []
    assert store.command_log(None, limit=0) == []


def test_command_log_returns_at_most_1000(backend):
    store = backend.make()
    for i in range(1005):
        store.log_command(press(T0 + i))
    got = store.command_log(None, limit=10**9)
    assert len(got) == 1000
    assert (got[0].ts, got[-1].ts) == (T0 + 1004, T0 + 5)


def test_command_log_stores_quotes_verbatim_and_cuts_long_values(backend):
    store = backend.make()
    hostile = "x'); DROP TABLE pilot_commands; --\"%s?$1\\"
    store.log_command(press(T0, user=hostile, value="v" * 10_000, detail="a\x00b", reason="\ud800"))
    (rec,) = store.command_log("pc")
    assert rec.user == hostile
    assert rec.value == "v" * 4096
    assert rec.detail == "a\ufffdb"  # NUL cannot be stored in PostgreSQL text; both backends replace it
    assert rec.reason == "?"  # a lone surrogate cannot be encoded


def test_command_log_is_pruned_with_the_hour_tier(backend):
    store = backend.make(Retention(raw=100, minute=1000, hour=5000))
    store.log_command(press(T0))
    store.log_command(press(T0 + 10))
    store.maintain(T0 + 5005)
    assert [r.ts for r in store.command_log(None)] == [T0 + 10]


# --- sessions ---------------------------------------------------------------------------------------------------


def session(token: str, user: str = "ann", expires: float = T0 + 3600) -> SessionRecord:
    return SessionRecord(token, user, "operator", "csrf-" + token, T0, expires, T0)


def test_sessions_put_get_touch_delete(backend):
    store = backend.make()
    store.put_session(session("h1"))
    assert store.get_session("h1") == session("h1")
    assert store.get_session("h2") is None
    store.touch_session("h1", T0 + 60)
    assert store.get_session("h1").last_seen == T0 + 60
    store.put_session(SessionRecord("h1", "ann", "admin", "c2", T0, T0 + 7200, T0 + 61))  # replaces
    assert store.get_session("h1").role == "admin"
    store.delete_session("h1")
    assert store.get_session("h1") is None
    store.delete_session("h1")  # deleting what is gone is not an error


def test_sessions_deleted_per_user_and_purged_at_expiry(backend):
    store = backend.make()
    for rec in [session("a1"), session("a2"), session("b1", "bob"), session("b2", "bob", expires=T0 + 10)]:
        store.put_session(rec)
    store.delete_user_sessions("ann")
    assert (store.get_session("a1"), store.get_session("a2")) == (None, None)
    store.purge_sessions(T0 + 10)  # expiry at or before now goes
    assert store.get_session("b2") is None
    assert store.get_session("b1") == session("b1", "bob")


def test_sessions_survive_a_reopen(backend):
    backend.make().put_session(session("h1"))
    backend.stores[0].close()
    assert backend.make().get_session("h1") == session("h1")


def test_an_oversized_session_field_is_refused(backend):
    with pytest.raises(ValueError, match="token_hash"):
        backend.make().put_session(session("x" * 257))


# --- hostile input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["x" * 129, "", "nul\x00name", "surrogate\udcff"],
    ids=["too-long", "empty", "nul", "lone-surrogate"],
)
def test_a_bad_name_refuses_the_whole_batch(backend, name):
    store = backend.make()
    with pytest.raises(ValueError, match="name"):
        store.add([Sample("pc", "cpu", T0, 1.0), Sample(name, "cpu", T0, 1.0)])
    with pytest.raises(ValueError, match="name"):
        store.add([Sample("pc", "cpu", T0, 1.0), Sample("pc", name, T0, 1.0)])
    assert backend.rows("raw") == []


def test_names_of_128_characters_are_kept(backend):
    store = backend.make()
    store.add([Sample("d" * 128, "e" * 128, T0, 1.0)])
    assert store.history("d" * 128, "e" * 128, T0, T0).values == [1.0]


def test_non_finite_values_and_times_are_dropped(backend):
    store = backend.make()
    nan, inf = float("nan"), float("inf")
    store.add(samples("pc", "cpu", [(T0, nan), (T0 + 1, inf), (T0 + 2, -inf), (nan, 1.0), (inf, 1.0), (T0 + 3, 4.0)]))
    assert backend.rows("raw") == [("pc", "cpu", T0 + 3, 4.0)]


@pytest.mark.parametrize(
    "name",
    ["x'); DROP TABLE pilot_raw; --", 'quote"double', "%s %(x)s ?1 $1", "back\\slash", "über ☃ 🚀", "a\nb\tc"],
)
def test_sql_metacharacters_in_names_are_stored_verbatim(backend, name):
    store = backend.make()
    store.add([Sample(name, name, T0, 1.0), Sample("pc", "cpu", T0, 2.0)])
    assert store.history(name, name, T0, T0).values == [1.0]
    assert store.history("pc", "cpu", T0, T0).values == [2.0]
    assert backend.rows("raw") == sorted([(name, name, T0, 1.0), ("pc", "cpu", T0, 2.0)])


def test_stats_count_rows_per_tier(backend):
    store = backend.make()
    store.add(minute_inputs())
    store.maintain(T0 + HOUR + 60)
    got = store.stats()
    assert (got["rows_raw"], got["rows_1m"], got["rows_5m"], got["rows_1h"], got["series"]) == (6, 3, 1, 1, 1)
    assert got["bytes"] > 0


# --- SQLite only ------------------------------------------------------------------------------------------------


def test_sqlite_database_files_are_private(backend):
    store = backend.make()
    store.add(minute_inputs())
    files = [p for p in backend.path.parent.iterdir() if p.name.startswith("console.db")]
    assert {p.name for p in files} >= {"console.db", "console.db-wal"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}


def test_sqlite_an_existing_readable_file_is_made_private(tmp_path):
    path = tmp_path / "old.db"
    path.touch()
    path.chmod(0o644)
    open_storage(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_sqlite_relative_url_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    open_storage("sqlite:rel.db").close()
    assert (tmp_path / "rel.db").is_file()


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:", "sqlite::memory:", "mysql://x/y", "/plain/path"])
def test_sqlite_urls_that_name_no_file_are_refused(url):
    with pytest.raises(ValueError, match="URL"):
        open_storage(url)


def test_sqlite_readers_on_other_threads_see_the_writers_commits(backend):
    store = backend.make()
    store.add(samples("pc", "cpu", [(T0 + i, float(i)) for i in range(50)]))
    results: list[list[float]] = []
    readers = [
        threading.Thread(target=lambda: results.append(store.history("pc", "cpu", T0, T0 + 100).values))
        for _ in range(4)
    ]
    for t in readers:
        t.start()
    for t in readers:
        t.join(20)
    assert results == [[float(i) for i in range(50)]] * 4


def test_sqlite_a_closed_store_refuses_work_on_a_new_thread(backend):
    store = backend.make()
    store.close()
    errors: list[BaseException] = []
    t = threading.Thread(target=lambda: _capture(errors, lambda: store.history("pc", "cpu", T0, T0)))
    t.start()
    t.join(20)
    assert [type(e) for e in errors] == [RuntimeError]


def _capture(errors: list, fn) -> None:
    try:
        fn()
    except BaseException as exc:
        errors.append(exc)


def test_sqlite_postgres_without_psycopg_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    monkeypatch.delitem(sys.modules, "pilot.console.storage.postgres", raising=False)
    with pytest.raises(ImportError, match=r"pilot-agent\[postgres\]"):
        open_storage("postgresql://nobody@127.0.0.1:1/none")


def test_sqlite_database_directory_is_created_private(tmp_path):
    open_storage(f"sqlite:///{tmp_path}/new/dir/c.db").close()
    assert stat.S_IMODE((tmp_path / "new" / "dir").stat().st_mode) == 0o700 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
