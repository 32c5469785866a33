"""The console's JSON API end to end: a real broker, a real agent (dry run), the console as a process.

One rig per module: an agent whose profile has a confirm command, a signed one and a number, a console
whose keyring shares the agent's `console` key, and three users. Each test reads the API as a page would.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import httpx
import pytest

from pilot.agent import signing
from testkit.agent import pilot_run
from testkit.broker import Mosquitto, Watcher
from testkit.console import ConsoleProcess
from tests.live.console.conftest import wait

DEVICE = "consolerig"
BASE = f"pilot/{DEVICE}"
PASSWORDS = {"alice": "alice-operator-pw", "victor": "victor-viewer-pw", "ada": "ada-admin-pw-1"}


def profile(keyring: Path) -> str:
    return f"""pilot: 1
device: {{id: {DEVICE}, name: Console rig}}
sensors:
  cpu_usage: {{probe: cpu.percent, every: 1s}}
  memory_usage: {{probe: memory.used_percent, every: 1s}}
  uptime: {{probe: system.uptime, every: 1h}}
commands:
  shutdown: {{action: power.shutdown, args: {{method: systemctl}}, platform: button, policy: {{signed: true}}}}
  reboot: {{action: power.reboot, args: {{method: systemctl}}, platform: button, policy: {{confirm: 20s}}}}
  level:
    {{action: mqtt.publish, args: {{topic: {BASE}/level, payload: "{{value}}"}}, platform: number, min: 0, max: 100}}
policies:
  allow: [shutdown, reboot, level]
  hmac: {{keyring: {keyring}, window: 60s}}
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-api")
    line = signing.new_key_line("console") + "\n"
    agent_ring, console_ring = tmp / "agent-keyring", tmp / "console-keyring"
    for ring in (agent_ring, console_ring):
        ring.write_text(line)
        ring.chmod(0o600)
    (tmp / "rig.yaml").write_text(profile(agent_ring))
    broker = Mosquitto().start()
    watcher = Watcher(broker.port).start()
    agent = pilot_run(tmp / "rig.yaml", broker.port, tmp / "state", "--dry-run", log=tmp / "agent.log").start()
    users = [("alice", "operator", PASSWORDS["alice"]), ("victor", "viewer", PASSWORDS["victor"])]
    users.append(("ada", "admin", PASSWORDS["ada"]))
    console = ConsoleProcess(broker.port, users=users, keyring=console_ring).start()
    console.wait_subscribed()

    class Rig:
        pass

    r = Rig()
    r.broker, r.watcher, r.agent, r.console = broker, watcher, agent, console
    r.alice = console.client("alice", PASSWORDS["alice"])
    r.victor = console.client("victor", PASSWORDS["victor"])
    r.ada = console.client("ada", PASSWORDS["ada"])
    wait(lambda: any(d["id"] == DEVICE and d["online"] for d in r.alice.get("/api/fleet").json()["devices"]))
    wait(lambda: "shutdown" in {e["key"] for e in r.alice.get(f"/api/devices/{DEVICE}").json()["entities"]})
    yield r
    console.cleanup()
    agent.stop()
    watcher.stop()
    broker.cleanup()


def test_the_agent_appears_with_its_name_version_and_key_sensors(rig):
    fleet = rig.alice.get("/api/fleet").json()
    assert (fleet["broker"]["connected"], fleet["broker"]["ready"]) == (True, True)
    device = next(d for d in fleet["devices"] if d["id"] == DEVICE)
    assert device["name"] == "Console rig"
    assert device["online"] is True
    assert device["dry_run"] is True
    assert [k["entity"] for k in device["key"]] == ["cpu_usage", "memory_usage", "uptime"]
    assert device["health"]["duplicate_agent"] is False


def test_the_device_page_lists_sensors_and_every_command_with_its_platform(rig):
    detail = rig.alice.get(f"/api/devices/{DEVICE}").json()
    entities = {e["key"]: e for e in detail["entities"]}
    assert entities["cpu_usage"]["group"] == "sensors" and entities["cpu_usage"]["unit"] == "%"
    # the signed command is not in Home Assistant's discovery: it comes from capabilities
    assert entities["shutdown"]["command"]["signed"] is True
    assert entities["reboot"]["command"]["confirm_within"] == 20
    assert entities["level"]["command"]["platform"] == "number"
    assert (entities["level"]["command"]["min"], entities["level"]["command"]["max"]) == (0, 100)


def test_a_confirm_command_is_armed_then_runs_on_the_second_press(rig):
    first = rig.alice.post(f"/api/devices/{DEVICE}/commands/reboot", json={})
    assert first.status_code == 200
    assert first.json()["status"] == "armed"
    assert first.json()["confirm_within"] == 20
    second = rig.alice.post(f"/api/devices/{DEVICE}/commands/reboot", json={}).json()
    assert second["status"] == "dry_run"
    assert second["verified"] is False  # an unsigned command's answer is unauthenticated by nature
    presses = rig.alice.get(f"/api/devices/{DEVICE}").json()["presses"]
    assert [(p["user"], p["command"], p["status"]) for p in presses[:2]] == [
        ("alice", "reboot", "dry_run"),
        ("alice", "reboot", "armed"),
    ]


def test_a_signed_command_is_signed_by_the_console_and_the_device_audit_names_the_user(rig):
    since = time.monotonic()
    answer = rig.alice.post(f"/api/devices/{DEVICE}/commands/shutdown", json={}).json()
    assert answer == {"status": "dry_run", "verified": True, **{k: answer[k] for k in answer if k == "calls"}}
    sent = rig.watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/shutdown/set", since=since)
    envelope = json.loads(sent.payload)
    assert (envelope["kid"], envelope["by"], envelope["cmd"]) == ("console", "alice", "PRESS")
    audit = rig.watcher.wait_for(lambda m: m.topic == f"{BASE}/audit", since=since)
    event = json.loads(audit.payload)
    assert (event["command"], event["kid"], event["by"]) == ("shutdown", "console", "alice")


def test_a_number_out_of_range_is_refused_before_it_is_sent(rig):
    answer = rig.alice.post(f"/api/devices/{DEVICE}/commands/level", json={"value": "101"}).json()
    assert (answer["status"], answer["reason"]) == ("rejected", "bad_value")
    ok = rig.alice.post(f"/api/devices/{DEVICE}/commands/level", json={"value": "40"}).json()
    assert ok["status"] == "dry_run"


def test_a_viewer_reads_but_cannot_press(rig):
    assert rig.victor.get(f"/api/devices/{DEVICE}").status_code == 200
    refused = rig.victor.post(f"/api/devices/{DEVICE}/commands/reboot", json={})
    assert refused.status_code == 403
    assert refused.json() == {"error": "this needs the operator role"}


def test_state_changing_requests_need_the_sessions_csrf_token_and_the_same_origin(rig):
    path = f"/api/devices/{DEVICE}/commands/level"
    token = rig.alice.headers.pop("X-CSRF-Token")
    try:
        assert rig.alice.post(path, json={"value": "1"}).json() == {"error": "missing or wrong CSRF token"}
        forged = rig.alice.post(path, json={"value": "1"}, headers={"X-CSRF-Token": token[:-2] + "AA"})
        assert forged.status_code == 403
        foreign = rig.alice.post(
            path, json={"value": "1"}, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"}
        )
        assert foreign.json() == {"error": "cross-origin request refused"}
    finally:
        rig.alice.headers["X-CSRF-Token"] = token


def test_nothing_is_readable_without_a_session(rig):
    anonymous = httpx.Client(base_url=rig.console.url)
    for path in ("/api/fleet", f"/api/devices/{DEVICE}", "/api/events", "/api/session"):
        assert anonymous.get(path).status_code == 401, path
    bogus = httpx.Client(base_url=rig.console.url, cookies={"pilot_session": "A" * 43})
    assert bogus.get("/api/fleet").status_code == 401


def test_stats_are_for_admins(rig):
    assert rig.alice.get("/api/stats").status_code == 403
    stats = rig.ada.get("/api/stats").json()
    assert stats["devices"] >= 1 and stats["ingest"]["received"] > 0


def test_live_values_arrive_on_the_event_stream(rig):
    fleet = rig.alice.get("/api/fleet").json()
    seen: list[str] = []
    with rig.alice.stream("GET", f"/api/events?device={DEVICE}&cursor={fleet['cursor']}") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        rig.watcher.publish(f"{BASE}/state/uptime", "93.5")  # the agent's own next reading is an hour away
        deadline = time.monotonic() + 20
        for line in stream.iter_lines():
            if line.startswith("data: "):
                body = json.loads(line[6:])
                seen += [s[2] for s in body.get("states", []) if s[1] == "uptime"]
                if "93.5" in seen or time.monotonic() > deadline:
                    break
    assert "93.5" in seen


def test_history_is_kept_and_served_for_a_range(rig):
    def points():
        answer = rig.alice.get(f"/api/devices/{DEVICE}/history/cpu_usage?range=1h").json()
        return answer if len(answer["ts"]) >= 2 else None

    answer = wait(points, timeout=30)
    assert answer["tier"] == "raw" and answer["unit"] == "%"
    assert answer["ts"] == sorted(answer["ts"])
    assert all(0 <= v <= 100 for v in answer["values"])
    bad = rig.alice.get(f"/api/devices/{DEVICE}/history/cpu_usage?range=2w")
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"x" * (16 * 1024 + 1), {"content-type": "application/json"}, 413),
        (b"[" * 10000 + b"]" * 10000, {"content-type": "application/json"}, 413),
        (b"[" * 5000 + b"]" * 5000, {"content-type": "application/json"}, 400),
        (b'{"username": "alice", "password": "\xff\xfe"}', {"content-type": "application/json"}, 400),
        (b"username=alice&password=x", {"content-type": "application/x-www-form-urlencoded"}, 415),
        (b'["alice"]', {"content-type": "application/json"}, 400),
    ],
    ids=["oversized", "nested-oversized", "nested", "not-utf8", "form-post", "not-an-object"],
)
def test_hostile_login_bodies_get_a_clear_status_and_nothing_else(rig, body, headers, status):
    answer = httpx.post(rig.console.url + "/api/login", content=body, headers=headers)
    assert answer.status_code == status
    assert "set-cookie" not in answer.headers
    assert rig.console.proc.poll() is None


def test_garbage_and_huge_device_messages_are_counted_and_dropped(rig):
    before = rig.ada.get("/api/stats").json()["ingest"]["dropped"]
    rig.watcher.publish(f"{BASE}/state/cpu_usage", b"\xff\xfe\x00")
    rig.watcher.publish(f"{BASE}/state/cpu_usage", b"9" * (10 * 1024 * 1024))
    rig.watcher.publish(f"{BASE}/health", b'{"instance": ' * 1000)
    rig.watcher.publish("homeassistant/device/evil/config", b"[" * 100000)

    def dropped():
        now = rig.ada.get("/api/stats").json()["ingest"]["dropped"]
        grown = {k: now.get(k, 0) - before.get(k, 0) for k in now}
        return grown if grown.get("too_large", 0) >= 1 and grown.get("not_utf8", 0) >= 1 else None

    grown = wait(dropped)
    assert grown.get("bad_health", 0) + grown.get("too_large", 0) >= 2
    assert rig.console.proc.poll() is None
    value = rig.alice.get(f"/api/devices/{DEVICE}").json()
    assert next(e for e in value["entities"] if e["key"] == "cpu_usage")["value"] != "9" * 10


def test_a_markup_device_name_is_served_as_data_and_pages_forbid_inline_script(rig):
    evil = '<img src=x onerror="alert(1)">'
    config = {
        "device": {"identifiers": ["pilot_evil1"], "name": evil},
        "origin": {"name": "Pilot"},
        "components": {},
    }
    rig.watcher.publish("homeassistant/device/evil1/config", json.dumps(config), retain=True)
    try:
        wait(lambda: any(d["id"] == "evil1" for d in rig.alice.get("/api/fleet").json()["devices"]))
        device = rig.alice.get("/api/devices/evil1")
        assert device.headers["content-type"] == "application/json"
        assert device.json()["name"] == evil
        page = rig.alice.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
    finally:
        rig.watcher.publish("homeassistant/device/evil1/config", "", retain=True)
    wait(lambda: all(d["id"] != "evil1" for d in rig.alice.get("/api/fleet").json()["devices"]))


def test_sign_out_ends_the_session(rig):
    client = rig.console.client("victor", PASSWORDS["victor"])
    assert client.get("/api/session").json()["user"] == "victor"
    assert client.post("/api/logout").status_code == 204
    assert client.get("/api/session").status_code == 401


def test_the_broker_going_away_is_reported_and_recovered(rig):
    rig.broker.stop()
    try:
        wait(lambda: rig.alice.get("/api/fleet").json()["broker"]["connected"] is False)
        answer = rig.alice.post(f"/api/devices/{DEVICE}/commands/level", json={"value": "5"}).json()
        assert (answer["status"], answer["reason"]) == ("rejected", "broker_unavailable")
    finally:
        rig.broker.start()
    wait(lambda: rig.alice.get("/api/fleet").json()["broker"]["ready"] is True, timeout=30)
    # the agent comes back too and is online again
    wait(lambda: any(d["id"] == DEVICE and d["online"] for d in rig.alice.get("/api/fleet").json()["devices"]), 30)


def test_wrong_passwords_are_rate_limited_with_retry_after(tmp_path):
    broker = Mosquitto().start()
    console = ConsoleProcess(broker.port, users=[("bob", "viewer", "bob-password-1")]).start()
    try:
        client = httpx.Client(base_url=console.url)
        codes = [client.post("/api/login", json={"username": "bob", "password": "nope-nope"}).status_code]
        codes += [client.post("/api/login", json={"username": "bob", "password": "nope-nope"}).status_code]
        for _ in range(8):
            codes.append(client.post("/api/login", json={"username": "bob", "password": "nope-nope"}).status_code)
        assert codes[0] == 401 and 429 in codes
        limited = client.post("/api/login", json={"username": "bob", "password": "bob-password-1"})
        assert limited.status_code == 429  # even the right password waits: the limit is on the attempt
        assert int(limited.headers["retry-after"]) >= 1
    finally:
        console.cleanup()
        broker.cleanup()


def test_large_answers_are_compressed_for_browsers_that_ask_and_the_event_stream_never_is(rig):
    detail = rig.alice.get(f"/api/devices/{DEVICE}", headers={"accept-encoding": "gzip"})
    assert detail.headers.get("content-encoding") == "gzip"
    assert detail.json()["id"] == DEVICE
    with rig.alice.stream("GET", "/api/events", headers={"accept-encoding": "gzip"}) as stream:
        assert "content-encoding" not in stream.headers
        assert next(stream.iter_lines()) == "retry: 2000"
    session = rig.alice.get("/api/session", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in session.headers  # the CSRF token never shares a compressed body


def test_an_open_stream_ends_when_its_session_does_and_one_session_holds_at_most_eight(tmp_path):
    broker = Mosquitto().start()
    config = tmp_path / "console.yaml"
    config.write_text("auth: {stream_recheck_s: 0.5}\n")
    console = ConsoleProcess(
        broker.port, users=[("olga", "viewer", "olga-viewer-pw")], extra_args=["--config", str(config)]
    ).start()
    try:
        reader, other = console.client("olga", "olga-viewer-pw"), console.client("olga", "olga-viewer-pw")
        with reader.stream("GET", "/api/events") as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"
            users_removed = console.users_file.read_text().replace("olga:", "#olga:")
            console.users_file.write_text(users_removed)  # the user is removed while the stream is open
            rest = [line for line in lines if line.startswith("event:")]
        assert rest[-1] == "event: signed_out"  # and then the stream ended: the loop above finished
        assert other.get("/api/fleet").status_code == 401
        fresh = ConsoleProcess(broker.port, users=[("pia", "viewer", "pia-viewer-pw")])
        fresh.start()
        try:
            client = fresh.client("pia", "pia-viewer-pw")
            with contextlib.ExitStack() as streams:
                opened = [streams.enter_context(client.stream("GET", "/api/events")) for _ in range(8)]
                lines = [s.iter_lines() for s in opened]  # kept: a dropped line iterator closes its stream
                assert [next(it) for it in lines] == ["retry: 2000"] * 8
                assert client.get("/api/events").status_code == 503
        finally:
            fresh.cleanup()
    finally:
        console.cleanup()
        broker.cleanup()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/api/devices/{DEVICE}/history/cpu_usage?start=nan&end=10", 400),
        (f"/api/devices/{DEVICE}/history/cpu_usage?start=10&end=inf", 400),
        (f"/api/devices/{DEVICE}/history/cpu_usage?start=20&end=10", 400),
        (f"/api/devices/{DEVICE}/history/cpu_usage?points=0", 400),
        (f"/api/devices/{DEVICE}/history/cpu_usage?points=" + "9" * 5000, 400),
        (f"/api/devices/{DEVICE}/history/..%2F..%2Fetc", 404),
        ("/api/devices/%1b%5B31m/history/x", 404),
        ("/api/devices/" + "d" * 300, 404),
        ("/api/events?cursor=abc", 400),
        ("/api/events?device=%00", 404),
    ],
)
def test_hostile_query_parameters_and_names_get_a_clear_status(rig, path, status):
    assert rig.alice.get(path).status_code == status
    assert rig.console.proc.poll() is None
