"""The console store under a fleet's history: insert rate, chart queries, maintenance and disk use.

The fleet: 1,000 devices x 20 sensors, one sample every 10 s (2,000 samples/s, 172.8 M per day). Filling 24 h of
all of it takes too long on a small machine, so a representative subset is filled: `--fill-devices` devices
(default 20, i.e. 400 series, 3.46 M samples) x 20 sensors x 24 h at 10 s, written in batches of 2,000 (five
10 s ticks of that subset: the size the ingest flushes at full fleet rate), plus 30 days at 10 s (before those
24 h) for the one series the 30-day chart reads. One maintenance pass then rolls it all up (raw -> 1 m -> 5 m and
1 h).
Disk use per day for the whole fleet is extrapolated from bytes per row measured on that file.

Figures (per backend: SQLite in a temporary file, PostgreSQL 15 in a private cluster from testkit/postgres.py with
fsync on and synchronous_commit off, the closest match to SQLite's WAL + synchronous=NORMAL):

* insert: rows/s over all add() calls of the fill (one transaction each).
* maintain: seconds for the first pass over the whole fill (later passes only see the last minutes). PostgreSQL
  then gets the `VACUUM (ANALYZE)` autovacuum would give it in steady state (its seconds are printed too).
* 24 h chart: history() of one sensor over the last 24 h: 8,640 raw points, p50/p99 over `--queries` calls.
* 7 d chart: the same sensor over 7 days: 10,080 rows of the 1 m tier averaged into 120 s buckets (5,040 points).
* 30 d chart: the same sensor over 30 days at max_points=10,000: 300 s buckets (8,640 points), which the 5 m tier
  serves row for row (before it, the 1 m tier's 43,200 rows were averaged into them); p50/p99.
* 30 d + 1 s: the same chart one second longer, past the 1 m tier's retention: the 1 h tier serves it (720 rows).
* SQLite bytes/day: raw and roll-up bytes per row x the full fleet's rows per day, and the steady state
  (48 h raw + 30 d of 1 m + 30 d of 5 m + 1 y of 1 h).

The target is query p99 <= 50 ms. Figures are printed, never asserted: a shared machine gives evidence, not tests.

    python bench/console_storage.py [--fill-devices 20] [--queries 200] [--backend sqlite|postgres|both] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
import sys  # noqa: E402

sys.path[:0] = [str(REPO), str(REPO / "engine")]

from bench._proc import summary, table  # noqa: E402
from pilot.console.storage import Retention, Sample, open_storage  # noqa: E402

FLEET_DEVICES, SENSORS, PERIOD = 1000, 20, 10.0
DAY = 86400.0
NOW = 1_767_225_600.0  # a fixed "now" (a whole day), so every run fills the same timestamps
BATCH = 2000


def fill(store, devices: int) -> dict:
    """30 days of the charted series, then 24 h of `devices` x SENSORS; returns rows and add() seconds."""
    rows, spent = 0, 0.0
    start = NOW - 30 * DAY
    history = [
        Sample("dev0000", "sensor00", start + i * PERIOD, 50.0 + (i % 360) / 10) for i in range(int(29 * DAY / PERIOD))
    ]
    for i in range(0, len(history), BATCH):
        t = time.perf_counter()
        store.add(history[i : i + BATCH])
        spent += time.perf_counter() - t
        rows += len(history[i : i + BATCH])
    batch: list[Sample] = []
    ticks = int(DAY / PERIOD)
    for tick in range(ticks):
        ts = NOW - DAY + tick * PERIOD
        for d in range(devices):
            for s in range(SENSORS):
                batch.append(Sample(f"dev{d:04d}", f"sensor{s:02d}", ts, float((tick + d + s) % 100)))
        if len(batch) >= BATCH or tick == ticks - 1:
            t = time.perf_counter()
            store.add(batch)
            spent += time.perf_counter() - t
            rows += len(batch)
            batch = []
    return {"rows": rows, "seconds": spent}


def timed(fn, n: int) -> tuple[dict, object]:
    out, times = None, []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return summary(times), out


def settle(url: str) -> float:
    """What autovacuum does to the freshly filled tiers in steady state (the store asks it to after 1 % new rows):
    the visibility map an index-only chart scan needs, and the planner's statistics. Returns seconds."""
    import psycopg

    t = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) pilot_raw, pilot_1m, pilot_5m, pilot_1h")
    return time.perf_counter() - t


def sqlite_size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    return page_size * pages


def run_backend(name: str, url: str, args, sqlite_file: Path | None) -> dict:
    store = open_storage(url, Retention(), clock=lambda: NOW)
    try:
        filled = fill(store, args.fill_devices)
        result: dict = {
            "backend": name,
            "rows": filled["rows"],
            "insert_rows_per_s": filled["rows"] / filled["seconds"],
        }
        size_raw = sqlite_size(sqlite_file) if sqlite_file else None
        before = store.stats()
        t = time.perf_counter()
        store.maintain(NOW)
        result["maintain_s"] = time.perf_counter() - t
        after = store.stats()
        result["rows_1m"], result["rows_5m"], result["rows_1h"] = after["rows_1m"], after["rows_5m"], after["rows_1h"]
        if name == "postgres":
            result["vacuum_s"] = settle(url)
        q24, s24 = timed(lambda: store.history("dev0000", "sensor00", NOW - DAY, NOW), args.queries)
        q7, s7 = timed(lambda: store.history("dev0000", "sensor00", NOW - 7 * DAY, NOW), args.queries)
        result["q7d_ms"], result["q7d_points"], result["q7d_tier"] = q7, len(s7.ts), s7.tier
        q30, s30 = timed(lambda: store.history("dev0000", "sensor00", NOW - 30 * DAY, NOW), args.queries)
        result["q24h_ms"], result["q24h_points"], result["q24h_tier"] = q24, len(s24.ts), s24.tier
        result["q30d_ms"], result["q30d_points"], result["q30d_tier"] = q30, len(s30.ts), s30.tier
        result["q30d_bucket_s"] = s30.ts[1] - s30.ts[0] if len(s30.ts) > 1 else None
        # the same chart one second longer: past the 1m tier's 30 days, so the 1h tier serves it (720 rows)
        q1h, s1h = timed(lambda: store.history("dev0000", "sensor00", NOW - 30 * DAY - 1, NOW), args.queries)
        result["q30d_1h_ms"], result["q30d_1h_points"], result["q30d_1h_tier"] = q1h, len(s1h.ts), s1h.tier
        result["bytes"] = after["bytes"]
        if sqlite_file:
            # sizes before maintenance deleted anything: raw rows only, then raw + the roll-ups
            raw_bytes_per_row = size_raw / before["rows_raw"]
            size_all = sqlite_size(sqlite_file)
            result["raw_bytes_per_row"] = raw_bytes_per_row
            rollup_rows = after["rows_1m"] + after["rows_5m"] + after["rows_1h"]
            # maintenance also deleted raw older than 48 h (the 29 days of the charted series): count it back out
            deleted = before["rows_raw"] - after["rows_raw"]
            rollup_bytes = size_all - size_raw + deleted * raw_bytes_per_row
            result["rollup_bytes_per_row"] = rollup_bytes / rollup_rows
            series = FLEET_DEVICES * SENSORS
            per_day_raw = series * DAY / PERIOD * raw_bytes_per_row
            per_day_1m = series * 1440 * result["rollup_bytes_per_row"]
            per_day_5m = series * 288 * result["rollup_bytes_per_row"]
            per_day_1h = series * 24 * result["rollup_bytes_per_row"]
            result["fleet_bytes_per_day"] = {"raw": per_day_raw, "1m": per_day_1m, "5m": per_day_5m, "1h": per_day_1h}
            result["fleet_steady_state_bytes"] = 2 * per_day_raw + 30 * per_day_1m + 30 * per_day_5m + 365 * per_day_1h
        return result
    finally:
        store.close()


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def show(results: list[dict], args) -> None:
    print(
        f"Console store: {args.fill_devices} of {FLEET_DEVICES} devices x {SENSORS} sensors x 24 h at 10 s "
        f"(+ 30 d of one series), batches of {BATCH}, {args.queries} queries each"
    )
    rows = []
    for r in results:
        rows.append(
            (
                r["backend"],
                f"{r['rows']:,}",
                f"{r['insert_rows_per_s']:,.0f}",
                f"{r['maintain_s']:.1f}" + (f" + vacuum {r['vacuum_s']:.1f}" if "vacuum_s" in r else ""),
                f"{r['q24h_ms']['p50']:.1f} / {r['q24h_ms']['p99']:.1f} ({r['q24h_points']} {r['q24h_tier']})",
                f"{r['q7d_ms']['p50']:.1f} / {r['q7d_ms']['p99']:.1f} ({r['q7d_points']} {r['q7d_tier']})",
                f"{r['q30d_ms']['p50']:.1f} / {r['q30d_ms']['p99']:.1f} "
                f"({r['q30d_points']} {r['q30d_tier']}, {r['q30d_bucket_s']:.0f} s buckets)",
                f"{r['q30d_1h_ms']['p50']:.1f} / {r['q30d_1h_ms']['p99']:.1f} "
                f"({r['q30d_1h_points']} {r['q30d_1h_tier']})",
            )
        )
    print(
        table(
            rows,
            (
                "backend",
                "rows",
                "insert rows/s",
                "maintain s",
                "24 h p50/p99 ms",
                "7 d p50/p99 ms",
                "30 d p50/p99 ms",
                "30 d + 1 s p50/p99 ms",
            ),
        )
    )
    for r in results:
        if "fleet_bytes_per_day" in r:
            day = r["fleet_bytes_per_day"]
            print(
                f"SQLite: {r['raw_bytes_per_row']:.1f} B per raw row, {r['rollup_bytes_per_row']:.1f} B per roll-up "
                f"row; the full fleet per day: raw {gib(day['raw'])}, 1m {gib(day['1m'])}, 5m {gib(day['5m'])}, "
                f"1h {gib(day['1h'])}; "
                f"steady state (48 h raw + 30 d 1m + 30 d 5m + 1 y 1h): {gib(r['fleet_steady_state_bytes'])}"
            )
    print("target: query p99 <= 50 ms")
    print(f"machine: {os.cpu_count()} CPUs, 1-min load average {os.getloadavg()[0]:.2f} (other work skews latencies)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fill-devices", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    if args.backend in ("sqlite", "both"):
        work = Path(tempfile.mkdtemp(prefix="pilot-bench-store-"))
        try:
            db = work / "console.db"
            results.append(run_backend("sqlite", f"sqlite:///{db}", args, db))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if args.backend in ("postgres", "both"):
        from testkit.postgres import DURABLE, postgres_cluster

        with postgres_cluster(DURABLE) as pg:
            results.append(run_backend("postgres", pg.create_database("bench"), args, None))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        show(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
