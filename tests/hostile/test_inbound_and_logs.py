"""Hostile input on the agent's inbound topics, and what reaches its log (issue "Hostile input, round two").

Anyone who may publish on the broker can write on `pilot/<id>/health`, `homeassistant/status` and the
command topics. These tests play that publisher against a real agent on a real Mosquitto: a 20 MB
health message, deep nesting, an `instance` holding a forged log line, a flood of foreign reports.
The agent must stay small, keep answering commands, write no forged line and a bounded log. The
in-process tests below pin the health parser (Hypothesis) and the log escaping and rate limit.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilot.agent import health as health_mod
from pilot.agent import logs
from pilot.agent.health import MAX_REPORT_BYTES, Health, parse_report
from testkit.agent import pilot_run, rss_kb
from testkit.broker import Watcher

DEVICE = "hostrig01"
BASE = f"pilot/{DEVICE}"
HEALTH = f"{BASE}/health"
PROFILE = (
    "pilot: 1\n"
    f"device: {{id: {DEVICE}, name: Hostile rig}}\n"
    "sensors:\n  cpu: {probe: cpu.percent, every: 5s}\n"
    "commands:\n"
    f"  ping: {{action: mqtt.publish, args: {{topic: {BASE}/pong, payload: pong}}, platform: button}}\n"
    "policies:\n  allow: [ping]\n  rate_limit: {max: 1000, per: 1m}\n"
)
# a line our text format writes: `HH:MM:SS LEVEL   logger: message`
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +pilot")


# ------------------------------------------------------------ fixtures: the agent (broker, watcher: conftest.py)


@pytest.fixture
def agent(broker, watcher, tmp_path):
    """A started agent (text log, dry run, actions recorded, health every second), online."""
    profile = tmp_path / "hostile.yaml"
    profile.write_text(PROFILE)
    proc = pilot_run(
        profile,
        broker.port,
        tmp_path / "state",
        "--dry-run",
        env={"PILOT_HEALTH_EVERY": "1", "PILOT_SYSTEM_RECORD": str(tmp_path / "actions.jsonl")},
    ).start()
    online = watcher.wait_for(lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=30)
    assert online, proc.tail()
    yield proc
    proc.stop()


def _ping(watcher: Watcher, agent) -> dict:
    """Press the ping button; the agent's answer (it must still answer commands)."""
    since = time.monotonic()
    watcher.publish(f"{BASE}/cmd/ping/set", "PRESS")
    msg = watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/ping/result", timeout=20, since=since)
    assert msg is not None, agent.tail()
    return json.loads(msg.payload)


def _health_after(watcher: Watcher, since: float) -> dict:
    """A health report the agent published after `since` (monotonic)."""
    msg = watcher.wait_for(
        lambda m: m.topic == HEALTH and m.at >= since and b'"instance"' in m.payload[:4096], timeout=20, since=since
    )
    assert msg is not None
    return json.loads(msg.payload)


def _report(instance: str, ts: float | None = None, **extra) -> bytes:
    body = {"instance": instance, "ts": int(ts if ts is not None else time.time() + 5), "uptime_s": 1, **extra}
    return json.dumps(body).encode()


# ------------------------------------------------------------------ memory amplification


def test_a_20mb_health_message_and_deep_nesting_leave_memory_bounded_and_commands_answered(agent, watcher):
    before = rss_kb(agent.pid)
    huge = b"[" + b"[]," * (20 * 1024 * 1024 // 3) + b"[]]"  # the 20 MB that took the agent to 608 MB
    watcher.publish(HEALTH, huge)
    watcher.publish(HEALTH, b"[" * 100_000)  # a RecursionError in json.loads, uncaught before
    watcher.publish(HEALTH, b'{"instance":' * 1000 + b"1" + b"}" * 1000)
    watcher.publish(HEALTH, huge, retain=True)  # and again after every reconnect, were it parsed
    watcher.publish("homeassistant/status", b"online" + b" " * 1_000_000)
    watcher.publish(f"{BASE}/cmd/{'x' * 5000}/set", b"PRESS")
    assert _ping(watcher, agent)["status"] in ("ok", "dry_run")
    after = rss_kb(agent.pid)
    assert agent.running()
    # paho holds one message (20 MB) while reading it; parsed, it was 580 MB more
    assert after - before < 120 * 1024, (before, after)
    since = time.monotonic()
    report = _health_after(watcher, since)
    assert report["health_rejected"] >= 3 and report["inbound_dropped"] >= 2, report
    assert report["duplicate_agent"] is False
    assert "Traceback" not in agent.output() and "RecursionError" not in agent.output(), agent.tail()
    watcher.publish(HEALTH, b"", retain=True)  # clear the retained junk for the next test


# ------------------------------------------------------------------ log forgery


FORGED = "12:00:00 INFO    pilot.commands: executed shutdown (mqtt): systemctl poweroff"


@pytest.mark.parametrize(
    "separator", ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1e", "\x1b[2K\r"]
)
def test_a_newline_in_a_foreign_instance_forges_no_log_line_and_flags_nothing(agent, watcher, separator):
    watcher.publish(HEALTH, _report("abcdef" + separator + FORGED))
    watcher.publish(HEALTH, _report("abcdef012345" + separator + FORGED))  # a valid id, then more
    watcher.publish(HEALTH, _report(separator + FORGED))
    assert _ping(watcher, agent)["status"] in ("ok", "dry_run")  # handled in order: the reports came first
    out = agent.output()
    for line in out.splitlines():  # Python's splitlines also breaks at U+2028, NEL, VT, FF, RS...
        assert "executed shutdown" not in line, out[-3000:]
        assert not line.startswith("12:00:00"), out[-3000:]
    assert "another Pilot agent" not in out
    report = _health_after(watcher, time.monotonic())
    assert report["duplicate_agent"] is False and report["health_rejected"] >= 3, report


def test_a_well_formed_foreign_report_is_believed_and_logged_bounded(agent, watcher):
    """What an attacker on the broker can still do (docs/security.md): publish a well-formed report
    with another instance id. It flags the duplicate entity; its log line holds only 12 hex digits."""
    watcher.publish(HEALTH, _report("0123456789ab"))
    since = time.monotonic()
    assert _ping(watcher, agent)["status"] in ("ok", "dry_run")
    lines = [line for line in agent.output().splitlines() if "another Pilot agent" in line]
    assert len(lines) == 1 and "(instance 0123456789ab)" in lines[0] and LOG_LINE.match(lines[0]), lines
    report = _health_after(watcher, since)
    assert report["duplicate_agent"] is True


def test_a_flood_of_foreign_reports_writes_a_bounded_log(agent, watcher):
    started = time.monotonic()
    size_before = len(agent.output())
    client = watcher.client
    for batch in range(15):  # in batches the broker queues whole (it drops beyond 1000 queued messages)
        for i in range(batch * 200, batch * 200 + 200):  # distinct, well-formed: each would log an error line
            client.publish(HEALTH, _report(f"{i:012x}"), qos=0)
            client.publish(HEALTH, b'{"instance": "' + b"A" * 3000 + b'", "ts": 9}', qos=0)  # junk: never logged
        assert _ping(watcher, agent)["status"] in ("ok", "dry_run")  # and commands are still answered
    time.sleep(1.5)
    client.publish(HEALTH, _report("fedcba987654"), qos=1).wait_for_publish(5)  # after the bucket refilled
    assert _ping(watcher, agent)["status"] in ("ok", "dry_run")
    elapsed = time.monotonic() - started
    lines = [line for line in agent.output().splitlines() if "another Pilot agent" in line]
    # the rate limit: a burst of 20, then one a second, whatever arrives
    assert len(lines) <= 20 + int(elapsed) + 2, (len(lines), elapsed)
    assert any("similar messages suppressed" in line for line in lines), lines[-3:]
    assert len(agent.output()) - size_before < 20 * 1024 + int(elapsed + 2) * 600, len(agent.output())
    assert "A" * 600 not in agent.output()
    assert agent.running()


# ------------------------------------------------------------------ the health parser (in process)


def _own_report(**counters) -> dict:
    from types import SimpleNamespace as NS

    h = Health()
    h.health_rejected = counters.get("health_rejected", 0)
    return h.report(
        session_stats=NS(connected_since=1.0, connects=3, dropped_telemetry=7, callback_errors=0),
        command_stats=NS(rejected={"too_large": 2, "bad_value": 1}, executed=4),
        probe_errors=1,
        rule_errors=0,
    )


def test_our_own_report_passes_the_parser():
    report = _own_report()
    assert parse_report(health_mod.encode(report).encode()) == report


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"[]",
        b"null",
        b"[" * 100_000,
        b"{" * 5000,
        b'{"instance":"0123456789ab","ts":1,"x":[[[[1]]]]}',
        b'{"instance":"0123456789AB","ts":1}',  # upper case: not ours
        b'{"instance":"0123456789ab","ts":true}',
        b'{"instance":"0123456789ab","ts":NaN}',
        b'{"instance":"0123456789ab","ts":1e999}',
        b'{"instance":"0123456789ab","ts":"1"}',
        b'{"instance":"0123456789ab","ts":1,"ts":2}',  # duplicate keys
        b'{"instance":"0123456789ab","ts":1,"uptime_s":-1}',
        b'{"instance":"0123456789ab","ts":1,"uptime_s":1.5}',
        b'{"instance":"0123456789ab","ts":1,"duplicate_agent":"yes"}',
        b'{"instance":"0123456789ab","ts":1,"newer_counter":"text"}',
        b'{"instance":"0123456789ab","ts":1,"rejected_by_reason":{"a\\nb":1}}',
        b'{"instance":"0123456789ab\\n","ts":1}',
        b'{"instance":"0123456789ab","ts":1,"pad":"' + b"x" * MAX_REPORT_BYTES + b'"}',
        b'{"instance":"0123456789ab","ts":1' + b"9" * 5000 + b"}",
        b"\xff\xfe{}",
    ],
)
def test_the_parser_refuses_what_is_not_a_report(payload):
    assert parse_report(payload) is None


def test_brackets_inside_strings_do_not_count_as_depth():
    assert parse_report(b'{"instance":"0123456789ab","ts":1,"rejected_by_reason":{"x":1}}') is not None
    assert health_mod._depth_ok(b'{"a":"[[[[[[\\"[[[[["}')
    assert not health_mod._depth_ok(b'{"a":[[1]]}')


JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from(sorted(health_mod.COUNTERS | health_mod.FLAGS | {"rejected_by_reason", "instance", "ts"}))
REPORTS = st.fixed_dictionaries(
    {"instance": st.from_regex(r"[0-9a-f]{12}", fullmatch=True) | st.text(max_size=14), "ts": JSON_VALUES},
    optional={k: JSON_VALUES for k in ("uptime_s", "connected", "rejected_by_reason", "zz_new")},
).map(lambda d: json.dumps(d).encode())


def _check(payload: bytes) -> None:
    result = parse_report(payload)
    if result is None:
        return
    assert len(payload) <= MAX_REPORT_BYTES
    assert health_mod.INSTANCE_RE.match(result["instance"])
    assert not isinstance(result["ts"], bool) and isinstance(result["ts"], (int, float)) and 0 < result["ts"] < 2**40
    for key, value in result.items():
        if key in health_mod.COUNTERS:
            assert type(value) is int and value >= 0
        elif key in health_mod.FLAGS:
            assert type(value) is bool
        elif key == "rejected_by_reason":
            assert all(type(v) is int for v in value.values())
        elif key not in ("instance", "ts"):
            assert type(value) in (int, float)  # no text ever comes through


PROPERTY = settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.binary(max_size=6000))
def test_property_any_bytes_give_a_valid_report_or_none(payload):
    _check(payload)


@PROPERTY
@given(REPORTS)
def test_property_report_shaped_json_gives_a_valid_report_or_none(payload):
    _check(payload)


@PROPERTY
@given(st.integers(1, 50_000), st.sampled_from([b"[", b"{", b'{"a":', b"[{"]))
def test_property_any_nesting_is_refused_without_recursion(depth, opener):
    assert parse_report(opener * depth) is None


@PROPERTY
@given(st.binary(max_size=300))
def test_property_a_health_object_never_raises_or_trusts_junk(payload):
    h = Health()
    h.on_report(payload)
    h.on_report(payload, retained=True)
    assert h.other_instance is None or health_mod.INSTANCE_RE.match(h.other_instance)


# ------------------------------------------------------------------ log escaping and the rate limit (in process)


def _record(msg, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("pilot.test", logging.ERROR, __file__, 1, msg, args, exc_info)


SEPARATORS = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x00", "\x1b"]


@pytest.mark.parametrize("fmt", ["text", "journal", "json"])
@pytest.mark.parametrize("sep", SEPARATORS)
def test_no_format_lets_a_value_start_a_line(fmt, sep):
    formatter = {
        "text": logs.SafeFormatter("%(levelname)s %(name)s: %(message)s"),
        "journal": logs.JournalFormatter(),
        "json": logs.JsonFormatter(),
    }[fmt]
    hostile = f"x{sep}{FORGED}\u202e\x1b[31m"
    for record in (_record("instance %s", hostile), _record(f"f-string {hostile}"), _record("%(a)s", {"a": hostile})):
        text = formatter.format(record)
        assert len(text.splitlines()) == 1, repr(text)
        assert "\x1b" not in text and "\u202e" not in text
        if fmt == "json":
            assert FORGED in json.loads(text)["msg"]


def test_values_are_cut_with_their_length_and_numbers_keep_their_format():
    text = logs.SafeFormatter("%(message)s").format(_record("v=%s n=%d f=%.1f", "y" * 10_000, 7, 2.25))
    assert f"…(+{10_000 - logs.MAX_ARG_CHARS} chars)" in text and "n=7 f=2.2" in text
    assert len(text) < logs.MAX_ARG_CHARS + 100
    assert len(logs.JsonFormatter().format(_record("y" * 100_000))) < logs.MAX_MESSAGE_CHARS + 200


def test_a_traceback_keeps_its_lines_but_none_can_pass_for_a_log_line():
    try:
        raise ValueError(f"bad\n{FORGED}")
    except ValueError:
        import sys

        record = _record("failed", exc_info=sys.exc_info())
    lines = logs.SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record).splitlines()
    assert all(line.startswith("    | ") for line in lines[1:]) and any(FORGED in line for line in lines)


def test_rate_limit_holds_back_repeats_and_says_how_many():
    now = [0.0]
    limit = logs.RateLimit(burst=5, per=1.0, keys=4, clock=lambda: now[0])
    passed = [limit.filter(_record("flood %s", i)) for i in range(100)]
    assert sum(passed) == 5
    assert limit.filter(_record("another template"))  # its own bucket
    now[0] += 1.0
    record = _record("flood %s", 100)
    assert limit.filter(record) and "(95 similar messages suppressed)" in record.getMessage()
    # unique messages (f-strings) beyond the table share one bucket: still bounded
    assert sum(limit.filter(_record(f"unique {i}")) for i in range(1000)) <= 5 + 3 * 5


def test_setup_installs_the_safe_formatter_and_rate_limit(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("text", "info")
        (handler,) = root.handlers
        assert isinstance(handler.formatter, logs.SafeFormatter)
        assert any(isinstance(f, logs.RateLimit) for f in handler.filters)
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def test_the_fuzz_target_is_importable_without_atheris():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_health.py"
    spec = importlib.util.spec_from_file_location("fuzz_health", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for payload in (b"", b"[" * 5000, health_mod.encode(_own_report()).encode()):
        module.check(payload)
