"""Two agents claim one device id; a flood of malformed commands."""

from __future__ import annotations

import json
import os
import random
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pilot.agent.mqtt import BACKOFF_CAP, BACKOFF_FIRST
from pilot.agent.policy import UNAUTHENTICATED
from testkit.agent import new_keyring, recorded_calls, rss_kb
from tests.support.harness import figure, online


@pytest.mark.slow
def test_two_agents_with_one_device_id(tmp_path, brokers, watchers, agents):
    case = "two agents, one device id"
    device, base = "duprig", "pilot/duprig"
    profile = tmp_path / "dup.yaml"
    profile.write_text(
        f"pilot: 1\ndevice: {{id: {device}, name: Dup rig}}\nmqtt: {{keepalive: 5}}\n"
        "sensors:\n  cpu: {probe: cpu.percent, every: 1s}\n"
    )
    broker = brokers()
    w = watchers(broker.port)
    env = {"PILOT_HEALTH_EVERY": "1"}
    first = agents(profile, broker.port, state_dir=tmp_path / "a", env=env)
    assert w.wait_for(online(f"{base}/availability"), timeout=20), first.tail()
    time.sleep(1.0)
    second = agents(profile, broker.port, state_dir=tmp_path / "b", env=env)
    started = time.monotonic()
    detected_at = None
    while time.monotonic() - started < 20.0:
        if detected_at is None and (first.lines("another Pilot agent") or second.lines("another Pilot agent")):
            detected_at = time.monotonic() - started
        time.sleep(0.25)
    flagged = [m for m in w.on(f"{base}/health") if json.loads(m.payload).get("duplicate_agent") is True]
    figure(case, "detected in the log after the second start (s)", detected_at if detected_at is not None else "never")
    figure(case, "health reports with duplicate_agent: true", len(flagged))

    # not faster than the backoff: the n-th reconnect of an agent waits at least
    # 0.5 x min(BACKOFF_FIRST x 2^n, BACKOFF_CAP) (full jitter keeps at least half of each step)
    violations, counts = [], []
    for agent in (first, second):
        stamps = [r["ts"] for r in agent.lines("connected to")]
        counts.append(len(stamps))
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        for n, gap in enumerate(gaps):
            floor = 0.5 * min(BACKOFF_FIRST * 2**n, BACKOFF_CAP)
            if gap < floor - 0.05:
                violations.append((n, round(gap, 2), floor))
    figure(case, "connects in ~21 s (first, second)", tuple(counts))
    figure(case, "reconnects faster than the backoff", violations or "none")
    assert detected_at is not None, first.tail() + second.tail()
    assert flagged, "the health topic never reported duplicate_agent"
    assert not violations, violations
    assert first.running() and second.running()


def _junk(i: int, rng: random.Random, base: str) -> tuple[str, bytes]:
    kind = i % 6
    if kind == 0:
        return f"{base}/cmd/shutdown/set", rng.randbytes(rng.randrange(0, 300))
    if kind == 1:  # well-formed envelope, known key id, wrong signature: the agent pays for an HMAC
        env = {
            "v": 1,
            "kid": "k1",
            "ts": int(time.time()),
            "cmd": "PRESS",
            "nonce": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(22)),
            "sig": "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(43)),
        }
        return f"{base}/cmd/shutdown/set", json.dumps(env).encode()
    if kind == 2:
        return f"{base}/cmd/junk{i}/set", b"PRESS"
    if kind == 3:
        return f"{base}/cmd/backup/set", b"x" * 5000
    if kind == 4:
        return f"{base}/cmd/backup/set", b"\xff\xfe" + rng.randbytes(20)
    return f"{base}/cmd/shutdown/set", b"[" * 1000 + b"]" * 1000


def test_malformed_command_flood(tmp_path, brokers, watchers, agents):
    case = "malformed command flood (10,000)"
    device, base = "floodrig", "pilot/floodrig"
    keyring = new_keyring(tmp_path / "keyring")
    profile = tmp_path / "flood.yaml"
    profile.write_text(
        f"pilot: 1\ndevice: {{id: {device}, name: Flood rig}}\nmqtt: {{keepalive: 5}}\n"
        "sensors:\n  cpu: {probe: cpu.percent, every: 1s}\n"
        "commands:\n  shutdown: {action: power.shutdown, platform: button, policy: {signed: true}}\n"
        "  backup: {action: process.run, args: {argv: [/bin/echo, backup]}, platform: button}\n"
        f"policies:\n  allow: [shutdown, backup]\n  hmac: {{keyring: {keyring}, window: 60s}}\n"
    )
    record = tmp_path / "calls.jsonl"
    # mosquitto's default per-client queue (max_queued_messages 1000) would drop part of a flood before the
    # agent sees it; lifted so that all 10,000 reach the agent
    broker = brokers(extra_conf="max_queued_messages 20000\n")
    w = watchers(broker.port, topics=(f"{base}/cmd/+/result", f"{base}/health", f"{base}/availability"))
    agent = agents(profile, broker.port, env={"PILOT_SYSTEM_RECORD": str(record), "PILOT_HEALTH_EVERY": "1"})
    assert w.wait_for(online(f"{base}/availability"), timeout=20), agent.tail()
    time.sleep(1.5)
    rss0 = rss_kb(agent.pid)
    peak = [rss0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            try:
                peak.append(rss_kb(agent.pid))
            except (OSError, RuntimeError):
                return
            sampling.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rng = random.Random(20240601)
    messages = [_junk(i, rng, base) for i in range(10_000)]
    flooder = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flooder-{os.getpid()}")
    flooder.max_queued_messages_set(0)
    flooder.connect("127.0.0.1", broker.port)
    flooder.loop_start()
    try:
        begin = time.monotonic()
        for topic, payload in messages:
            flooder.publish(topic, payload, qos=0)
        flooder.publish("faults/flood/end", b"end", qos=1).wait_for_publish(60)
        sent = time.monotonic()
    finally:
        flooder.loop_stop()
        flooder.disconnect()
    figure(case, "flood publish rate (msg/s)", 10_000 / (sent - begin))

    # the agent has read the flood once its rejection counter stops moving
    last, still_since, rejected = -1, time.monotonic(), 0
    while time.monotonic() - sent < 30:
        reports = w.on(f"{base}/health", since=begin)
        rejected = json.loads(reports[-1].payload)["commands_rejected"] if reports else 0
        if rejected != last:
            last, still_since = rejected, time.monotonic()
        elif time.monotonic() - still_since > 2.5:
            break
        time.sleep(0.25)
    drained = still_since
    figure(case, "junk rejected by the agent (health)", rejected)
    figure(case, "agent done after the flood started (s)", drained - begin)

    since = time.monotonic()
    w.publish(f"{base}/cmd/backup/set", "PRESS")
    ok = w.wait_for(
        lambda m: m.topic == f"{base}/cmd/backup/result" and json.loads(m.payload)["status"] == "ok",
        timeout=10,
        since=since,
    )
    sampling.set()
    sampler.join(2)
    replies = [
        m
        for m in w.messages
        if m.at >= begin and m.topic.endswith("/result") and json.loads(m.payload).get("reason") in UNAUTHENTICATED
    ]
    span = (replies[-1].at - begin) if replies else 0.0
    gaps = [b.at - a.at for a, b in zip(replies, replies[1:])]
    growth = max(peak) - rss0
    figure(case, "replies to junk (<= 1 per s)", f"{len(replies)} over {span:.1f} s")
    figure(case, "shortest gap between junk replies (s)", min(gaps) if gaps else "n/a")
    figure(case, "valid command after the flood", "ok" if ok else "no answer")
    figure(case, "RSS growth (kB, < 5120)", growth)
    assert agent.running(), agent.tail()
    assert ok is not None, "the next valid command was not executed"
    assert rejected == 10_000, "the agent should have read and rejected every junk message"
    assert [c["argv"] for c in recorded_calls(record)] == [["/bin/echo", "backup"]]  # the valid one, once
    assert len(replies) <= span + 1
    assert growth < 5 * 1024
    assert "Traceback" not in agent.output()
