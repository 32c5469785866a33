"""Home Assistant restarts (its birth message) and flaps; the agent re-announces, but not in a storm.

The agent's own 1-4 s random delay after the birth message is left as shipped (no PILOT_HA_DELAY):
the figure is the one a user gets.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.harness import figure, online

DEVICE = "harig"
BASE = f"pilot/{DEVICE}"
AVAIL = f"{BASE}/availability"
DISC = f"homeassistant/device/{DEVICE}/config"
DEBOUNCE = 10.0


@pytest.mark.slow
def test_home_assistant_restart_and_flapping(tmp_path, brokers, watchers, agents):
    case = "Home Assistant restart"
    profile = tmp_path / "ha.yaml"
    profile.write_text(
        f"pilot: 1\ndevice: {{id: {DEVICE}, name: HA rig}}\nmqtt: {{keepalive: 5}}\nsensors:\n"
        "  cpu: {probe: cpu.percent, every: 1s}\n"
        "  root_used: {probe: disk.used_percent, args: {path: /}, every: 5m}\n"
    )
    broker = brokers()
    w = watchers(broker.port)
    agent = agents(profile, broker.port)
    first = w.wait_for(lambda m: m.topic == DISC and m.payload, timeout=20)
    assert first is not None, agent.tail()
    components = json.loads(first.payload)["components"]
    states = {c["state_topic"] for c in components.values() if c.get("state_topic", "").startswith(f"{BASE}/state/")}
    assert w.wait_for(lambda m: m.topic == f"{BASE}/state/root_used", timeout=10)

    # one restart of Home Assistant, once the connect announcement is more than 10 s old
    time.sleep(max(0.0, first.at + DEBOUNCE + 0.5 - time.monotonic()))
    w.publish("homeassistant/status", "offline")
    sent = time.monotonic()
    w.publish("homeassistant/status", "online")
    wanted = {
        DISC: lambda m: m.topic == DISC and m.payload,
        AVAIL: online(AVAIL),
        **{t: (lambda m, t=t: m.topic == t) for t in states},
    }
    arrivals = {}
    for topic, predicate in wanted.items():
        got = w.wait_for(predicate, timeout=10, since=sent)
        assert got is not None, f"{topic} not re-announced after Home Assistant's birth\n{agent.tail()}"
        arrivals[topic] = got.at - sent
    slowest = max(arrivals.values())
    figure(case, "discovery + availability + states after birth (s, <= 5)", slowest)
    assert slowest <= 5.0, arrivals

    # Home Assistant flapping for 12 s: offline/online every 0.4 s
    flap_start = time.monotonic()
    while time.monotonic() - flap_start < 12.0:
        w.publish("homeassistant/status", "offline")
        w.publish("homeassistant/status", "online")
        time.sleep(0.4)
    time.sleep(1.0)
    bursts = [m.at for m in w.on(DISC) if m.payload]
    gaps = [b - a for a, b in zip(bursts, bursts[1:])]
    during = [b for b in bursts if b >= flap_start]
    figure(case, "bursts during 12 s of flapping (<= 2)", len(during))
    figure(case, "shortest gap between bursts (s, >= 10)", min(gaps) if gaps else "n/a")
    assert len(during) <= 2
    assert all(g >= DEBOUNCE - 0.1 for g in gaps), gaps
    assert agent.running() and "Traceback" not in agent.output()
