"""Rules run on the machine itself: with the broker down, a rule still fires and runs its local
action, and the agent neither crashes nor stalls; its publish steps reach the broker once it is back,
and the rule keeps working after the reconnect."""

from __future__ import annotations

import time

from testkit.agent import recorded_calls
from testkit.broker import Watcher

BASE = "pilot/offrig"

PROFILE = """pilot: 1
device: {id: offrig, name: Offline rig}
mqtt: {keepalive: 5}
sensors:
  level: {probe: sysfs.read, args: {path: /sys/class/test/value, parse: int}, every: 1s}
commands:
  cool_down: {action: process.run, args: {argv: [/bin/echo, cooling]}}
rules:
  hot:
    when: "level > 50"
    clear: "level < 30"
    do: [{command: cool_down}, {publish: {topic: "~/note", payload: "hot at {level}", retain: true}}]
    on_clear: [{publish: {topic: "~/note", payload: "calm at {level}", retain: true}}]
"""


def write_value(root, value: int) -> None:
    path = root / "class" / "test" / "value"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{value}\n")
    tmp.replace(path)


def until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_a_rule_fires_its_local_action_while_the_broker_is_down_and_publishes_once_it_is_back(
    run_agent, fresh_broker, tmp_path
):
    sysroot = tmp_path / "sys"
    (sysroot / "class" / "test").mkdir(parents=True)
    write_value(sysroot, 10)
    profile = tmp_path / "offline.yaml"
    profile.write_text(PROFILE)
    record = tmp_path / "calls.jsonl"
    watcher = Watcher(fresh_broker.port).start()
    started = time.monotonic()
    agent = run_agent(
        profile, fresh_broker.port, env={"PILOT_SYSFS_ROOT": str(sysroot), "PILOT_SYSTEM_RECORD": str(record)}
    )
    assert watcher.wait_for(
        lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=20, since=started
    ), agent.tail()
    assert watcher.wait_for(lambda m: m.topic == f"{BASE}/state/level" and m.payload == b"10", timeout=10)
    watcher.stop()

    fresh_broker.stop()
    assert agent.wait_output("disconnected from", timeout=20), agent.tail()
    write_value(sysroot, 80)
    cooling = lambda: [c for c in recorded_calls(record) if c.get("argv") == ["/bin/echo", "cooling"]]  # noqa: E731
    assert until(lambda: len(cooling()) == 1), f"the rule's action did not run offline\n{agent.tail()}"
    assert agent.running(), agent.tail()

    back = time.monotonic()
    fresh_broker.start()
    watcher = Watcher(fresh_broker.port).start()
    try:
        # retained: the agent may reconnect and publish before this watcher has subscribed
        hot = watcher.wait_for(lambda m: m.topic == f"{BASE}/note", timeout=30, since=back)
        assert hot is not None and hot.payload == b"hot at 80", agent.tail()  # queued while away
        cooled = time.monotonic()
        write_value(sysroot, 20)
        calm = watcher.wait_for(lambda m: m.topic == f"{BASE}/note", timeout=20, since=cooled)
        assert calm is not None and calm.payload == b"calm at 20", agent.tail()
    finally:
        watcher.stop()
    assert len(cooling()) == 1 and agent.running()
