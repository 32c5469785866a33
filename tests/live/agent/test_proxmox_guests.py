"""Proxmox guests as child devices, end to end: the real agent (`pilot run`), a real Mosquitto and a
fake Proxmox VE API (HTTPS with its own CA, token checked; testkit/proxmox.py).

Guests appear as devices under the host, change, vanish and come back; the API fails and recovers;
nothing here depends on timing beyond generous deadlines (the set is polled every second)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from testkit.agent import pilot_env
from testkit.proxmox import FakeProxmox

PROFILE = """\
pilot: 1
device: {{id: {dev}, name: PVE One}}
children:
  guests:
    source: proxmox.guests
    every: 1s
    args: {{url: "{url}", token_id: "root@pam!pilot", token_file: "{token}", ca_file: "{ca}"}}
    sensors: {{status: {{}}, cpu: {{}}, node: {{}}}}
    commands: {{start: {{}}, shutdown: {{}}}}
"""


@pytest.fixture
def pve(tmp_path):
    (tmp_path / "pve").mkdir()
    with FakeProxmox(tmp_path / "pve") as fake:
        yield fake


def profile(tmp_path, pve, dev: str = "pve1") -> str:
    """A device id of its own per test: the session's broker still holds what earlier tests retained."""
    path = tmp_path / "pve.yaml"
    path.write_text(PROFILE.format(url=pve.url, token=pve.token_file, ca=pve.ca_file, dev=dev))
    return path


def retained_json(watcher, topic: str, predicate, timeout: float = 20.0):
    msg = watcher.wait_for(lambda m: m.topic == topic and m.payload and predicate(json.loads(m.payload)), timeout)
    assert msg is not None, f"nothing on {topic} matched; seen: {[m.topic for m in watcher.messages][-20:]}"
    return json.loads(msg.payload)


def test_guests_appear_change_and_vanish_as_devices_under_the_host(tmp_path, pve, broker, watcher, run_agent):
    pve.add_guest(101, name="web", node="pve1", status="running", cpu=0.25)
    pve.add_guest(201, name="cache", node="pve2", kind="lxc", status="stopped")
    pve.add_guest(900, name="tmpl", node="pve1", template=True)
    agent = run_agent(profile(tmp_path, pve), broker.port)

    config = retained_json(watcher, "homeassistant/device/pve1_guests_101/config", lambda c: True)
    assert config["device"]["name"] == "web" and config["device"]["via_device"] == "pilot_pve1"
    announced = {uid: c for uid, c in config["components"].items() if set(c) != {"platform"}}  # not removals
    assert sorted(announced) == [
        "pilot_pve1_guests_101_cpu",
        "pilot_pve1_guests_101_node",
        "pilot_pve1_guests_101_shutdown",
        "pilot_pve1_guests_101_start",
        "pilot_pve1_guests_101_status",
    ]
    assert retained_json(watcher, "pilot/pve1/guests/101/state", lambda s: True) == {
        "status": "running",
        "cpu": 25.0,
        "node": "pve1",
    }
    assert retained_json(watcher, "pilot/pve1/guests/201/state", lambda s: True)["status"] == "stopped"
    assert watcher.wait_for(lambda m: m.topic == "pilot/pve1/guests/101/availability" and m.payload == b"online")
    assert not [m for m in watcher.messages if "guests_900" in m.topic], "templates are not devices"

    pve.migrate(101, "pve2")  # same vmid on another node: the same device, a new node value
    assert retained_json(watcher, "pilot/pve1/guests/101/state", lambda s: s["node"] == "pve2")["node"] == "pve2"

    pve.remove_guest(201)
    assert watcher.wait_for(
        lambda m: m.topic == "homeassistant/device/pve1_guests_201/config" and m.payload == b"", timeout=20
    ), "a vanished guest's device is removed from Home Assistant"
    record = tmp_path / "state" / "children.json"
    deadline = time.monotonic() + 10
    while json.loads(record.read_text()) != {"guests": {"101": "web"}} and time.monotonic() < deadline:
        time.sleep(0.1)  # written right after the removal is published
    assert json.loads(record.read_text()) == {"guests": {"101": "web"}}
    assert agent.running()


def test_an_api_that_fails_makes_guests_unavailable_and_they_return_when_it_answers(
    tmp_path, pve, broker, watcher, run_agent
):
    pve.add_guest(101, name="web", node="pve1", status="running")
    agent = run_agent(profile(tmp_path, pve, "pve2"), broker.port)
    assert watcher.wait_for(
        lambda m: m.topic == "pilot/pve2/guests/101/availability" and m.payload == b"online",
        timeout=20,
    )
    pve.fail(500, times=3)
    assert watcher.wait_for(
        lambda m: m.topic == "pilot/pve2/guests/101/availability" and m.payload == b"offline", timeout=20
    )
    assert watcher.wait_for(
        lambda m: m.topic == "pilot/pve2/guests/101/availability" and m.payload == b"online",
        timeout=30,
        since=watcher.messages[-1].at,
    ), "back online once the API answers again"
    out = agent.output()
    assert out.count("cannot read proxmox.guests (server_error") == 1, out[-3000:]
    assert "answers again" in out
    assert pve.secret not in out, "the token's secret never reaches a log line"


def test_a_wrong_token_is_one_clear_log_line_and_the_agent_keeps_its_own_telemetry(
    tmp_path, pve, broker, watcher, run_agent
):
    pve.token_file.write_text("00000000-0000-0000-0000-000000000000\n")
    agent = run_agent(profile(tmp_path, pve, "pve3"), broker.port)
    assert watcher.wait_for(lambda m: m.topic == "pilot/pve3/availability" and m.payload == b"online", timeout=20)
    assert agent.wait_output("cannot read proxmox.guests (unauthorized", timeout=20), agent.output()[-2000:]
    assert agent.running()


def test_a_press_in_home_assistant_reaches_the_api_with_the_exact_request(tmp_path, pve, broker, watcher, run_agent):
    pve.add_guest(101, name="web", node="pve1", status="stopped")
    run_agent(profile(tmp_path, pve, "pve4"), broker.port)
    assert retained_json(watcher, "pilot/pve4/guests/101/state", lambda s: s["status"] == "stopped")
    watcher.publish("pilot/pve4/guests/101/cmd/start/set", b"PRESS")
    result = retained_json(watcher, "pilot/pve4/guests/101/cmd/start/result", lambda r: True)
    assert result["status"] == "ok", result
    assert ("POST", "/api2/json/nodes/pve1/qemu/101/status/start") in pve.requests
    # the next poll sees what the API did
    assert retained_json(watcher, "pilot/pve4/guests/101/state", lambda s: s["status"] == "running")

    # shutdown is confirmed by default: the first press arms it and reaches no API
    watcher.publish("pilot/pve4/guests/101/cmd/shutdown/set", b"PRESS")
    armed = retained_json(watcher, "pilot/pve4/guests/101/cmd/shutdown/result", lambda r: True)
    assert armed["status"] == "armed"
    assert not [r for r in pve.requests if r[1].endswith("/status/shutdown")]


def test_dry_run_shows_the_request_and_reaches_no_api(tmp_path, pve, broker, watcher, run_agent):
    pve.add_guest(101, name="web", node="pve1", status="stopped")
    run_agent(profile(tmp_path, pve, "pve5"), broker.port, "--dry-run", env={"PILOT_HEALTH_EVERY": "1"})
    assert retained_json(watcher, "pilot/pve5/guests/101/state", lambda s: True)
    # a child command topic longer than any set id, key and command id can make: dropped, counted, unanswered
    watcher.publish("pilot/pve5/guests/" + "1" * 300 + "/cmd/start/set", b"PRESS")
    assert retained_json(watcher, "pilot/pve5/health", lambda h: h["inbound_dropped"] == 1)
    watcher.publish("pilot/pve5/guests/101/cmd/start/set", b"PRESS")
    result = retained_json(watcher, "pilot/pve5/guests/101/cmd/start/result", lambda r: True)
    assert result["status"] == "dry_run"
    assert result["calls"] == [
        {"kind": "request", "method": "POST", "path": "/nodes/pve1/qemu/101/status/start", "via": "guests"}
    ]
    assert [r for r in pve.requests if r[0] == "POST"] == []


def test_pilot_forget_takes_the_guests_devices_out_of_home_assistant_too(tmp_path, pve, broker, watcher, run_agent):
    pve.add_guest(101, name="web", node="pve1")
    pve.add_guest(102, name="db", node="pve1")
    agent = run_agent(profile(tmp_path, pve, "pve6"), broker.port)
    for key in ("101", "102"):
        retained_json(watcher, f"homeassistant/device/pve6_guests_{key}/config", lambda c: True)
    agent.stop()
    other = "homeassistant/device/somebody_else/config"
    watcher.publish(other, b"{}", retain=True)  # another device's configuration: left alone
    # another Pilot device whose id happens to read like one of our guests (ids may hold `_`)
    lookalike = "homeassistant/device/pve6_guests_999/config"
    watcher.publish(
        lookalike, b'{"device": {"identifiers": ["pilot_pve6_guests_999"], "via_device": "x"}}', retain=True
    )
    since = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pilot",
            "forget",
            str(tmp_path / "pve.yaml"),
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        env=pilot_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    for key in ("101", "102"):
        topic = f"homeassistant/device/pve6_guests_{key}/config"
        assert watcher.wait_for(lambda m, t=topic: m.topic == t and m.payload == b"", since=since), topic
        assert topic in done.stdout
    assert not watcher.on(other, since=since), "another device's discovery is not touched"
    assert not watcher.on(lookalike, since=since), "a lookalike that is not under this device is not touched"
    assert not (tmp_path / "state" / "children.json").exists()


def test_pilot_check_asks_the_api_once_and_says_what_it_found(tmp_path, pve):
    pve.add_guest(101, name="web", node="pve1")
    pve.add_guest(102, name="db", node="pve1")
    pve.add_guest(900, name="tmpl", node="pve1", template=True)
    path = profile(tmp_path, pve, "pve7")

    def check() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pilot", "check", str(path)],
            capture_output=True,
            text=True,
            env=pilot_env(),
            timeout=60,
        )
        return done.stdout

    assert "[ ok ] guests: proxmox.guests answers: 2 instance(s), each a device" in check()
    pve.token_file.write_text("00000000-0000-0000-0000-000000000000\n")
    assert "[FAIL] guests: proxmox.guests cannot be read (unauthorized" in check()


def test_a_set_renamed_in_the_profile_takes_its_old_devices_out_of_home_assistant(
    tmp_path, pve, broker, watcher, run_agent
):
    pve.add_guest(101, name="web", node="pve1")
    path = profile(tmp_path, pve, "pve8")
    first = run_agent(path, broker.port)
    retained_json(watcher, "homeassistant/device/pve8_guests_101/config", lambda c: True)
    first.stop()
    path.write_text(path.read_text().replace("  guests:", "  vms:"))
    since = time.monotonic()
    run_agent(path, broker.port)
    assert watcher.wait_for(
        lambda m: m.topic == "homeassistant/device/pve8_guests_101/config" and m.payload == b"",
        timeout=20,
        since=since,
    ), "the old set's device is removed"
    assert retained_json(watcher, "homeassistant/device/pve8_vms_101/config", lambda c: True)
