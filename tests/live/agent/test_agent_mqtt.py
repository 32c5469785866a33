"""`pilot run` as a subprocess against a real Mosquitto, observed by a paho subscriber."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.support.probes import SYSFS_FIXTURES

HERE = Path(__file__).resolve().parent
BASIC = HERE / "profiles" / "basic.yaml"
SMALLER = HERE / "profiles" / "smaller.yaml"
BASE = "pilot/testrig01"
DISCOVERY = "homeassistant/device/testrig01/config"
LAPTOP = "thinkpad-smp-42t4977--unknown-threshold"  # BAT0 at 32 %, status Unknown, AC online


def discovery(watcher, since=0.0, timeout=15.0):
    msg = watcher.wait_for(lambda m: m.topic == DISCOVERY and m.payload, timeout=timeout, since=since)
    assert msg is not None, "no discovery message"
    return json.loads(msg.payload)


def laptop_env():
    return {"PILOT_SYSFS_ROOT": str(SYSFS_FIXTURES / LAPTOP)}


def test_discovery_payload_is_complete_and_consistent(broker, watcher, run_agent):
    agent = run_agent(BASIC, broker.port, env=laptop_env())
    payload = discovery(watcher)
    assert payload["device"]["identifiers"] == ["pilot_testrig01"]
    assert payload["device"]["name"] == "Test rig"
    assert payload["device"]["sw_version"].startswith("Pilot ")
    assert payload["origin"]["name"] == "Pilot"
    assert payload["availability"][0]["topic"] == f"{BASE}/availability"
    components = {k: v for k, v in payload["components"].items() if "_health_" not in k}
    health = {k: v for k, v in payload["components"].items() if "_health_" in k}
    assert all(c["state_topic"] == f"{BASE}/health" and c["entity_category"] == "diagnostic" for c in health.values())
    assert "pilot_testrig01_health_duplicate_agent" in health
    unique_ids = [c["unique_id"] for c in components.values()]
    assert len(unique_ids) == len(set(unique_ids))
    assert set(components) == set(unique_ids)
    for config in components.values():
        assert {"platform", "unique_id", "name", "state_topic", "default_entity_id"} <= set(config)
        assert "object_id" not in config
        assert config["state_topic"].startswith(f"{BASE}/state/")
    # no GPU here: the optional GPU sensor is not announced; the battery (recorded laptop) is
    assert "pilot_testrig01_gpu_temp" not in components
    battery = components["pilot_testrig01_battery"]
    assert battery["device_class"] == "battery" and battery["unit_of_measurement"] == "%"
    assert components["pilot_testrig01_plugged"]["platform"] == "binary_sensor"
    # every announced state topic receives a state from the agent
    for config in components.values():
        topic = config["state_topic"]
        got = watcher.wait_for(lambda m, t=topic: m.topic == t, timeout=10)
        assert got is not None, f"no state on {topic}\n{agent.output()}"
    assert watcher.latest(f"{BASE}/state/battery").payload == b"32"
    assert watcher.latest(f"{BASE}/state/battery_state").payload == b"unknown"
    assert watcher.latest(f"{BASE}/state/plugged").payload == b"ON"
    assert watcher.latest(f"{BASE}/state/low_battery").payload == b"ON"
    assert watcher.latest(f"{BASE}/availability").payload == b"online"


def test_required_but_unavailable_sensor_is_announced_and_logged(broker, watcher, run_agent, tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "pilot: 1\ndevice: {id: nogpu1, name: No GPU}\nsensors:\n"
        "  gpu: {probe: gpu.temperature, every: 5s}\n  cpu: {probe: cpu.percent, every: 1s}\n"
    )
    agent = run_agent(profile, broker.port)
    msg = watcher.wait_for(lambda m: m.topic == "homeassistant/device/nogpu1/config", timeout=15)
    components = {k for k in json.loads(msg.payload)["components"] if "_health_" not in k}
    assert components == {"pilot_nogpu1_gpu", "pilot_nogpu1_cpu"}  # announced: it is a declared, non-optional sensor
    assert watcher.wait_for(lambda m: m.topic == "pilot/nogpu1/state/cpu", timeout=10)
    assert agent.wait_output("sensor gpu unavailable", timeout=15), agent.output()


def test_states_arrive_at_their_intervals(broker, watcher, run_agent):
    run_agent(BASIC, broker.port)
    assert discovery(watcher)
    first = watcher.wait_for(lambda m: m.topic == f"{BASE}/state/memory_used", timeout=10)
    assert first is not None
    # max_silence 1s at a 1s interval: a heartbeat every second even though min_change is never reached;
    # how punctual they are is a figure for bench/, here only that they keep coming and do not flood
    assert watcher.wait_for(
        lambda m: m.topic == f"{BASE}/state/memory_used" and len(watcher.on(m.topic, since=first.at)) >= 4,
        timeout=20,
        since=first.at,
    ), [b.at - first.at for b in watcher.on(f"{BASE}/state/memory_used", since=first.at)]
    beats = watcher.on(f"{BASE}/state/memory_used", since=first.at)
    assert len(beats) <= (beats[-1].at - first.at) + 2, [b.at - first.at for b in beats]  # at most ~1 a second
    value = float(beats[-1].payload)
    assert 0 < value <= 100


def test_capabilities_are_retained_json(broker, watcher, run_agent):
    run_agent(BASIC, broker.port)
    msg = watcher.wait_for(lambda m: m.topic == f"{BASE}/capabilities", timeout=15)
    caps = json.loads(msg.payload)
    assert caps["profile"] == "basic" and len(caps["profile_hash"]) == 16
    assert caps["probes"]["cpu.percent"] == "ok"
    assert caps["probes"]["gpu.temperature"] != "ok"
    assert "cpu.percent" in caps["registry"]["probes"]


def test_kill_9_publishes_offline_by_lwt(broker, watcher, run_agent):
    """The will itself; how fast it comes is pinned (and printed) in tests/live/faults/test_agent_signals.py."""
    agent = run_agent(BASIC, broker.port)
    assert watcher.wait_for(lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=15)
    killed = time.monotonic()
    agent.signal(signal.SIGKILL)
    offline = watcher.wait_for(
        lambda m: m.topic == f"{BASE}/availability" and m.payload == b"offline", timeout=15, since=killed
    )
    assert offline is not None


def test_sigterm_publishes_offline_and_exits_0(broker, watcher, run_agent):
    agent = run_agent(BASIC, broker.port)
    assert watcher.wait_for(lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=15)
    stopped = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    assert watcher.wait_for(
        lambda m: m.topic == f"{BASE}/availability" and m.payload == b"offline", timeout=5, since=stopped
    )


def test_full_reannouncement_after_broker_restart_with_retained_state_lost(fresh_broker, run_agent):
    from testkit.broker import Watcher

    run_agent(BASIC, fresh_broker.port)
    w = Watcher(fresh_broker.port).start()
    try:
        assert w.wait_for(lambda m: m.topic == DISCOVERY, timeout=15)
    finally:
        w.stop()
    fresh_broker.restart(signal.SIGKILL)  # persistence is off: every retained message is gone
    back = time.monotonic()
    w = Watcher(fresh_broker.port).start()
    try:
        got = w.wait_for(lambda m: m.topic == DISCOVERY, timeout=20)
        assert got is not None, "discovery not republished after the broker came back"
        assert got.at - back <= 17.0  # reconnect (backoff capped near 10 s) + announcement
        assert w.wait_for(lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=5)
        assert w.wait_for(lambda m: m.topic == f"{BASE}/state/uptime", timeout=5)
    finally:
        w.stop()


def test_reannounces_when_home_assistant_comes_online(broker, watcher, run_agent):
    run_agent(BASIC, broker.port, env={"PILOT_HA_DELAY": "0.2,0.5"})
    first = watcher.wait_for(lambda m: m.topic == DISCOVERY, timeout=15)
    assert first is not None
    time.sleep(0.5)
    sent = time.monotonic()
    watcher.publish("homeassistant/status", "online")
    again = watcher.wait_for(lambda m: m.topic == DISCOVERY, timeout=15, since=sent)
    assert again is not None
    assert watcher.wait_for(lambda m: m.topic == f"{BASE}/state/uptime", timeout=5, since=sent)


def test_home_assistant_flapping_causes_at_most_one_burst_per_10s(broker, watcher, run_agent):
    run_agent(BASIC, broker.port, env={"PILOT_HA_DELAY": "0.1,0.2"})
    assert watcher.wait_for(lambda m: m.topic == DISCOVERY, timeout=15)
    time.sleep(0.3)
    start = time.monotonic()
    for _ in range(10):
        watcher.publish("homeassistant/status", "offline")
        watcher.publish("homeassistant/status", "online")
        time.sleep(0.2)
    time.sleep(1.0)
    bursts = watcher.on(DISCOVERY, since=start)
    assert len(bursts) <= 1, [b.at - start for b in bursts]


def test_entity_dropped_from_profile_is_removed(broker, watcher, run_agent, tmp_path):
    state = tmp_path / "state"
    first = run_agent(BASIC, broker.port, "--once", state_dir=state)
    assert first.wait(30) == 0, first.output()
    t = time.monotonic()
    second = run_agent(SMALLER, broker.port, "--once", state_dir=state)
    assert second.wait(30) == 0, second.output()
    msg = watcher.wait_for(lambda m: m.topic == DISCOVERY, timeout=10, since=t)
    components = json.loads(msg.payload)["components"]
    assert components["pilot_testrig01_cpu_usage"]["state_topic"] == f"{BASE}/state/cpu_usage"
    assert components["pilot_testrig01_memory_used"] == {"platform": "sensor"}  # the removal form
    assert components["pilot_testrig01_low_battery"] == {"platform": "binary_sensor"}
    # a third run no longer mentions what was removed
    t = time.monotonic()
    third = run_agent(SMALLER, broker.port, "--once", state_dir=state)
    assert third.wait(30) == 0
    msg = watcher.wait_for(lambda m: m.topic == DISCOVERY, timeout=10, since=t)
    assert {k for k in json.loads(msg.payload)["components"] if "_health_" not in k} == {"pilot_testrig01_cpu_usage"}


def test_per_entity_discovery_mode(broker, watcher, run_agent, tmp_path):
    profile = tmp_path / "entity.yaml"
    profile.write_text(
        "pilot: 1\ndevice: {id: oldha1, name: Old HA}\nmqtt: {discovery: entity}\n"
        "sensors:\n  cpu: {probe: cpu.percent, every: 1s}\n"
    )
    agent = run_agent(profile, broker.port, "--once")
    assert agent.wait(30) == 0
    msg = watcher.wait_for(lambda m: m.topic == "homeassistant/sensor/oldha1/cpu/config", timeout=10)
    config = json.loads(msg.payload)
    assert config["unique_id"] == "pilot_oldha1_cpu" and config["device"]["identifiers"] == ["pilot_oldha1"]
    assert "platform" not in config and config["state_topic"] == "pilot/oldha1/state/cpu"


def test_broken_profile_does_not_start(broker, run_agent, tmp_path):
    profile = tmp_path / "broken.yaml"
    profile.write_text("pilot: 1\nsensors:\n  cpu: {probe: cpu.precent}\n")
    agent = run_agent(profile, broker.port)
    assert agent.wait(30) == 1
    assert f"{profile}:3:16: error: $.sensors.cpu.probe: unknown probe 'cpu.precent'" in agent.output()


def test_broker_down_at_start_is_a_wait_not_an_error(run_agent, tmp_path):
    from testkit.broker import Mosquitto, free_port

    port = free_port()
    agent = run_agent(BASIC, port)
    time.sleep(2.0)
    assert agent.proc.poll() is None, agent.output()
    b = Mosquitto(port=port).start()
    try:
        from testkit.broker import Watcher

        w = Watcher(port).start()
        try:
            assert w.wait_for(lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=15)
        finally:
            w.stop()
        out = agent.output()
        assert "Traceback" not in out
        assert out.count("connection refused") == 1  # logged once per distinct error, not per retry
    finally:
        b.cleanup()


def test_json_logs_are_one_object_per_line(broker, watcher, run_agent):
    agent = run_agent(BASIC, broker.port, "--once", "--log-format", "json")
    assert agent.wait(30) == 0
    lines = [line for line in agent.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any(r["msg"].startswith("connected to 127.0.0.1") for r in records)
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
