"""Deploying a profile through the console to a real agent (`pilot run --dry-run`) on a real Mosquitto.

The console and the agent share a keyring; the agent's profile names the broker itself (no --broker), so
a deployed profile's mqtt settings really move it. A new sensor deployed from the console shows up in the
device's discovery and the console's device page; the rollout state is in the fleet and on the event
stream; the device's own profile reads back with its secret redacted; a wrong broker port rolls back and
the console says so; an invalid text never leaves the console.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pilot.agent import deploy
from testkit.agent import new_keyring, pilot_run
from testkit.broker import Mosquitto, Watcher, free_port
from testkit.console import ConsoleProcess
from tests.live.console.conftest import wait
from tests.support.deploy_profiles import deploy_profile

DEVICE = "consoledeploy"
BASE = f"pilot/{DEVICE}"
PASSWORDS = {"ada": "ada-admin-pw-1", "olga": "olga-operator-pw"}


def profile_text(keyring: Path, port: int, sensors: str = "") -> str:
    return deploy_profile(DEVICE, "Console deploy rig", keyring, port, sensors)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-deploy")
    keyring = new_keyring(tmp / "keyring")  # kid k1, shared by the agent and the console
    broker = Mosquitto().start()
    watcher = Watcher(broker.port).start()
    folder = tmp / "profiles"
    folder.mkdir()
    path = folder / "device.yaml"
    original = profile_text(keyring, broker.port)
    path.write_text(original)
    agent = pilot_run(path, None, tmp / "state", "--dry-run", "--deploy-deadline", "3", log=tmp / "agent.log")
    agent.start()
    users = [("ada", "admin", PASSWORDS["ada"]), ("olga", "operator", PASSWORDS["olga"])]
    console = ConsoleProcess(broker.port, users=users, keyring=keyring, kid="k1").start()
    console.wait_subscribed()

    class Rig:
        pass

    r = Rig()
    r.tmp, r.keyring, r.broker, r.watcher, r.agent, r.console = tmp, keyring, broker, watcher, agent, console
    r.path, r.original = path, original
    r.ada = console.client("ada", PASSWORDS["ada"])
    r.olga = console.client("olga", PASSWORDS["olga"])
    wait(lambda: any(d["id"] == DEVICE and d["online"] for d in r.ada.get("/api/fleet").json()["devices"]), timeout=30)
    yield r
    console.cleanup()
    agent.stop()
    watcher.stop()
    broker.cleanup()


def device(rig) -> dict:
    return rig.ada.get(f"/api/devices/{DEVICE}").json()


def stream_until(rig, cursor: int, predicate, timeout: float = 30.0) -> dict:
    """Read the device's event stream from `cursor` until an update satisfies `predicate`."""
    deadline = time.monotonic() + timeout
    with rig.ada.stream("GET", f"/api/events?device={DEVICE}&cursor={cursor}", timeout=timeout) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                body = json.loads(line[6:])
                if predicate(body):
                    return body
            if time.monotonic() > deadline:
                break
    raise AssertionError("no such event")


def test_a_deploy_from_the_console_applies_and_the_new_sensor_is_discovered(rig):
    text = profile_text(rig.keyring, rig.broker.port, sensors="  load: {probe: cpu.load, every: 30s}\n")
    cursor = rig.ada.get("/api/fleet").json()["cursor"]
    answer = rig.ada.post(f"/api/devices/{DEVICE}/deploy", json={"text": text}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["verified"]) == ("ok", True), body
    assert body["profile_hash"] and body["errors"] == []
    assert rig.path.read_text() == text  # the text itself, comments and all
    wait(lambda: "load" in {e["key"] for e in device(rig)["entities"]}, timeout=30)
    state = device(rig)["deploy"]
    assert (state["state"], state["by"], state["sha256"]) == ("applied", "ada", deploy.text_sha256(text))
    update = stream_until(
        rig, cursor, lambda b: (b.get("devices", {}).get(DEVICE, {}).get("deploy") or {}).get("state") == "applied"
    )
    assert update["devices"][DEVICE]["deploy"]["by"] == "ada"
    presses = device(rig)["presses"]
    assert (presses[0]["user"], presses[0]["command"], presses[0]["status"]) == ("ada", "_profile/set", "ok")


def test_the_device_profile_reads_back_with_its_secret_redacted(rig):
    answer = rig.ada.get(f"/api/devices/{DEVICE}/profile", timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    running = rig.path.read_text()
    assert body["name"] == "device.yaml"
    assert "t0ps3cret-value" not in body["text"] and body["redacted"]
    assert body["text"].replace("<redacted>", "t0ps3cret-value") == running
    assert body["sha256"] == deploy.text_sha256(body["text"])


def test_a_wrong_broker_port_rolls_back_and_the_console_says_so(rig):
    before = rig.path.read_bytes()
    wrong = profile_text(rig.keyring, free_port())
    answer = rig.ada.post(f"/api/devices/{DEVICE}/deploy", json={"text": wrong}, timeout=60)
    body = answer.json()
    assert (body["status"], body["reason"], body["verified"]) == ("rolled_back", "broker_unreachable", True), body
    assert body["detail"]
    assert rig.path.read_bytes() == before
    state = wait(lambda: device(rig)["deploy"], timeout=30)
    assert (state["state"], state["reason"]) == ("rolled_back", "broker_unreachable")
    wait(lambda: device(rig)["online"], timeout=30)


def test_an_invalid_text_never_leaves_the_console(rig):
    since = time.monotonic()
    bad = profile_text(rig.keyring, rig.broker.port, sensors="  load: {probe: cpu.lod}\n")
    answer = rig.ada.post(f"/api/devices/{DEVICE}/deploy", json={"text": bad})
    assert answer.status_code == 422
    [finding] = answer.json()["diagnostics"]
    assert (finding["line"], finding["fix"]["insert"]) == (7, "cpu.load")
    time.sleep(0.5)
    assert rig.watcher.on(deploy.set_topic(BASE), since=since) == []


def test_an_operator_cannot_deploy_or_read_the_device_profile(rig):
    text = profile_text(rig.keyring, rig.broker.port)
    assert rig.olga.post(f"/api/devices/{DEVICE}/deploy", json={"text": text}).status_code == 403
    assert rig.olga.get(f"/api/devices/{DEVICE}/profile").status_code == 403
