"""The storage interface and what both backends share: records, the Protocol, name and range checks,
tier choice and roll-up windows. `pilot.console.storage` re-exports it and opens a backend by URL."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

MAX_NAME = 128  # device and entity names; longer ones are refused
MAX_COMMAND_LOG = 1000  # command_log() returns at most this many records
MIN_POINTS, MAX_POINTS = 2, 100_000  # bounds on history(max_points=...)
# command log fields are cut to these lengths (an audit record is kept, not refused, when a value is long)
COMMAND_FIELD_LIMITS = {
    "user": 128,
    "device": 128,
    "command": 128,
    "value": 4096,
    "status": 32,
    "reason": 1024,
    "detail": 4096,
}
SESSION_FIELD_LIMIT = 256  # token_hash, user, role, csrf: produced by the console itself, so refused when longer
# a finished 1-minute bucket is recomputed this long after its end, so samples flushed late (an ingest batch that
# lands just after maintenance) still reach the roll-ups; recomputing is idempotent, so this only costs time
LATE = 120.0

STEP = {"raw": 1.0, "1m": 60.0, "5m": 300.0, "1h": 3600.0}  # the downsampling bucket width is a multiple of this
# each roll-up tier and the tier it is computed from: 5m and 1h both from 1m, so neither waits on the other
ROLLUPS = (("1m", "raw"), ("5m", "1m"), ("1h", "1m"))


@dataclass(frozen=True, slots=True)
class Sample:
    """One numeric reading; binary sensors are stored as 1.0/0.0."""

    device: str
    entity: str
    ts: float
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """What a chart draws: parallel columns, ascending ts; `tier` says which tier served it."""

    tier: str
    ts: list[float]
    values: list[float]


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One press in the console (its own audit, beside the agent's)."""

    ts: float
    user: str
    device: str
    command: str
    value: str
    status: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class SessionRecord:
    token_hash: str
    user: str
    role: str
    csrf: str
    created: float
    expires: float
    last_seen: float


@dataclass(frozen=True)
class Retention:
    """How long each tier keeps its rows, in seconds. The 5-minute tier serves long charts (30 days at 8,640
    points reads 8,640 rows instead of averaging 43,200 one-minute rows); by default it keeps what 1m keeps."""

    raw: float = 48 * 3600
    minute: float = 30 * 86400
    hour: float = 365 * 86400
    five_minute: float | None = None

    def kept(self, tier: str) -> float:
        five = self.minute if self.five_minute is None else self.five_minute
        return {"raw": self.raw, "1m": self.minute, "5m": five, "1h": self.hour}[tier]


class Storage(Protocol):
    def add(self, samples: Sequence[Sample]) -> None: ...

    def history(self, device: str, entity: str, start: float, end: float, *, max_points: int = 10000) -> Series: ...

    def maintain(self, now: float) -> None: ...

    def log_command(self, rec: CommandRecord) -> None: ...

    def command_log(self, device: str | None, limit: int = 100) -> list[CommandRecord]: ...

    def put_session(self, rec: SessionRecord) -> None: ...

    def get_session(self, token_hash: str) -> SessionRecord | None: ...

    def touch_session(self, token_hash: str, last_seen: float) -> None: ...

    def delete_session(self, token_hash: str) -> None: ...

    def delete_user_sessions(self, user: str) -> None: ...

    def purge_sessions(self, now: float) -> None: ...

    def stats(self) -> dict[str, float]: ...

    def close(self) -> None: ...


# --- shared by the backends -----------------------------------------------------------------------------------


def check_name(kind: str, name: object) -> str:
    """A device or entity name fit to store: a non-empty str of at most MAX_NAME characters, encodable as UTF-8."""
    if not isinstance(name, str):
        raise ValueError(f"{kind} name must be a string")
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"{kind} name must be 1..{MAX_NAME} characters (got {len(name)})")
    if "\x00" in name:  # PostgreSQL text cannot hold NUL; refused on both backends so they agree
        raise ValueError(f"{kind} name holds a NUL character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{kind} name is not valid Unicode (a lone surrogate)") from None
    return name


def clean_samples(samples: Sequence[Sample]) -> list[tuple[str, str, float, float]]:
    """(device, entity, ts, value) worth storing: names checked (one bad name refuses the whole batch, nothing is
    written), non-finite times and values dropped."""
    out = []
    names: set[tuple[str, str]] = set()
    for s in samples:
        key = (s.device, s.entity)
        try:
            known = key in names
        except TypeError:  # an unhashable name: check_name says what is wrong with it
            known = False
        if not known:
            check_name("device", s.device)
            check_name("entity", s.entity)
            names.add(key)
        try:
            ts, value = float(s.ts), float(s.value)
        except (TypeError, ValueError):
            raise ValueError("sample ts and value must be numbers") from None
        if math.isfinite(ts) and math.isfinite(value):
            out.append((s.device, s.entity, ts, value))
    return out


def clean_text(value: object, limit: int) -> str:
    """A command-log field as stored: str, cut to `limit`, NUL and lone surrogates replaced (both backends agree)."""
    text = value if isinstance(value, str) else str(value)
    text = text[:limit].replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


def clean_command(rec: CommandRecord) -> CommandRecord:
    fields = {name: clean_text(getattr(rec, name), limit) for name, limit in COMMAND_FIELD_LIMITS.items()}
    ts = float(rec.ts)
    if not math.isfinite(ts):
        raise ValueError("command record ts must be finite")
    return CommandRecord(ts=ts, **fields)


def check_session(rec: SessionRecord) -> SessionRecord:
    for name in ("token_hash", "user", "role", "csrf"):
        value = getattr(rec, name)
        if not isinstance(value, str) or len(value) > SESSION_FIELD_LIMIT or "\x00" in value:
            raise ValueError(f"session {name} must be a string of at most {SESSION_FIELD_LIMIT} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"session {name} is not valid Unicode") from None
    times = [float(rec.created), float(rec.expires), float(rec.last_seen)]
    if not all(math.isfinite(t) for t in times):
        raise ValueError("session times must be finite")
    return SessionRecord(rec.token_hash, rec.user, rec.role, rec.csrf, *times)


def command_limit(limit: int) -> int:
    return max(0, min(int(limit), MAX_COMMAND_LOG))


def check_range(start: float, end: float, max_points: int) -> tuple[float, float, int]:
    start, end = float(start), float(end)
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError("history range must be finite")
    if not isinstance(max_points, int) or not MIN_POINTS <= max_points <= MAX_POINTS:
        raise ValueError(f"max_points must be an integer in {MIN_POINTS}..{MAX_POINTS}")
    return start, end, max_points


def pick_tier(start: float, now: float, retention: Retention) -> str:
    """The finest tier whose retention still reaches back to `start`."""
    if start >= now - retention.raw:
        return "raw"
    if start >= now - retention.minute:
        return "1m"
    return "1h"


def chart_tier(start: float, end: float, now: float, retention: Retention, max_points: int) -> str:
    """The tier a chart reads: the finest that reaches back to `start`, or, when that is a roll-up tier whose rows
    would be averaged into buckets anyway, the coarsest tier that still reaches back and whose step fits in those
    buckets (the same means from fewer rows). Raw is never swapped: a chart of the last hours keeps its newest
    readings, which roll-ups only get once their bucket is over."""
    tier = pick_tier(start, now, retention)
    if tier == "raw":
        return tier
    width = bucket_width(tier, start, end, max_points)
    for coarser in ("5m", "1h"):
        if STEP[tier] < STEP[coarser] <= width and start >= now - retention.kept(coarser):
            tier = coarser
    return tier


def bucket_width(tier: str, start: float, end: float, max_points: int) -> float:
    """A bucket width (a multiple of the tier's step) that puts [start, end] into at most max_points buckets.

    Buckets are aligned to multiples of the width (so a chart refreshed a little later keeps its buckets); a range
    of span S meets at most floor(S / width) + 1 of them, which is <= max_points when width >= S / (max_points - 1).
    """
    step = STEP[tier]
    span = max(end - start, step)
    return step * math.ceil(span / (max_points - 1) / step)


def rollup_window(
    tier: str, now: float, retention: Retention, done: float | None, first: float | None
) -> tuple[float, float]:
    """The buckets of `tier` (a roll-up tier) that maintain(now) recomputes: [start, end), both bucket-aligned.

    `done` is where the last pass's window ended (None: never; then it starts at the source tier's first row,
    `first`, so nothing is deleted that was never rolled up). A bucket is finished once its end is <= now; a 1h
    bucket once its last minute is rolled up. Each window restarts LATE seconds before `done` (late samples), but
    never at a bucket the last pass's deletions may have cut into: a bucket recomputed from a partial source would
    overwrite a whole one. The last pass ran before `done` + one bucket, so its cut-off was before that minus the
    source's retention.
    """
    now = float(now)
    if not math.isfinite(now):
        raise ValueError("maintain(now) needs a finite time")
    width, kept = STEP[tier], retention.kept(dict(ROLLUPS)[tier])
    end = math.floor(math.floor(now / 60) * 60 / width) * width
    if done is not None:
        start = max(math.floor((done - LATE) / width) * width, math.ceil((done + width - kept) / width) * width)
    else:
        start = end if first is None else math.floor(first / width) * width
    return min(start, end), end


def cutoffs(now: float, retention: Retention) -> dict[str, float]:
    """maintain(now) deletes the rows of each tier older than these (a row exactly at its cut-off stays)."""
    return {tier: now - retention.kept(tier) for tier in STEP}


def history_rows(
    execute: Callable[[str, tuple], list],
    sid: int,
    tier: str,
    start: float,
    end: float,
    max_points: int,
    *,
    param: str,
    bucket: Callable[[float], tuple[str, tuple]],
    weighted_mean: str,
) -> list:
    """The rows of a chart, for either backend: `param` is its placeholder, `bucket(width)` its SQL for a
    bucket's start (and the arguments it takes), `weighted_mean` its count-weighted mean of roll-up rows."""
    table, value = ("pilot_raw", "value") if tier == "raw" else (f"pilot_{tier}", "mean")
    where = f"series = {param} AND ts >= {param} AND ts <= {param}"
    args = (sid, start, end)
    # a roll-up tier holds at most one row per step: when even that fits, there is nothing to count; when it may
    # not, averaging into buckets costs one scan and counting first would cost a second (a 30-day chart)
    fits = tier != "raw" and (end - start) / STEP[tier] + 1 <= max_points
    if fits or tier == "raw" and execute(f"SELECT count(*) FROM {table} WHERE {where}", args)[0][0] <= max_points:
        return execute(f"SELECT ts, {value} FROM {table} WHERE {where} ORDER BY ts", args)
    expression, bucket_args = bucket(bucket_width(tier, start, end, max_points))
    mean = "avg(value)" if tier == "raw" else weighted_mean
    sql = f"SELECT {expression} AS b, {mean} FROM {table} WHERE {where} GROUP BY b ORDER BY b"
    return execute(sql, (*bucket_args, *args))
