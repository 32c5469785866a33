"""wol.send and url.open through a real agent and a real broker.

wol.send's packet goes to a UDP socket this test binds on 127.0.0.1; url.open's program is a stand-in
`xdg-open` first on the agent's PATH that only writes down its argv. Dry-run reports the exact call and
sends or runs nothing; a real press sends the exact 102 bytes and runs the exact argv; a hostile URL
from MQTT is refused with a reason and runs nothing.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

BASE = "pilot/wolrig"
MAGIC = bytes.fromhex("ffffffffffff" + "001122aabbcc" * 16)  # written out: six 0xFF, the MAC sixteen times
DOCS = "https://example.org/docs?a=1&b=2"


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)  # a bound on a hang, not a measurement
    yield sock
    sock.close()


@pytest.fixture
def rig(tmp_path: Path, listener, broker, watcher, run_agent):
    port = listener.getsockname()[1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opened = tmp_path / "opened.jsonl"
    fake = bin_dir / "xdg-open"
    fake.write_text(
        f"#!/usr/bin/env python3\nimport json, sys\nopen({str(opened)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    profile = tmp_path / "wol.yaml"
    profile.write_text(
        f"""pilot: 1
device: {{id: wolrig, name: Wol rig}}
commands:
  wake: {{action: wol.send, args: {{mac: "00:11:22:aa:bb:cc", broadcast: 127.0.0.1, port: {port}}}, platform: button}}
  docs: {{action: url.open, args: {{url: "{DOCS}"}}, platform: button}}
  visit: {{action: url.open, args: {{hosts: [example.org]}}, platform: text, max_length: 255}}
policies:
  allow: [wake, docs, visit]
""",
        encoding="utf-8",
    )

    class Rig:
        def start(self, *extra: str) -> Rig:
            started = time.monotonic()
            env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "DISPLAY": ":0"}
            self.agent = run_agent(profile, broker.port, *extra, env=env)
            online = watcher.wait_for(
                lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=20, since=started
            )
            assert online, self.agent.output()
            time.sleep(0.3)  # subscriptions are made before `online`; a little slack for the watcher
            return self

        def press(self, command: str, payload: str = "PRESS") -> dict:
            sent = time.monotonic()
            watcher.publish(f"{BASE}/cmd/{command}/set", payload)
            msg = watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/{command}/result", timeout=10, since=sent)
            assert msg is not None, f"no result for {command}\n{self.agent.output()}"
            body = json.loads(msg.payload)
            assert isinstance(body.pop("ts"), int)  # when the agent answered; the rest is compared whole
            return body

        def opened(self) -> list[list[str]]:
            if not opened.exists():
                return []
            return [json.loads(line) for line in opened.read_text().splitlines()]

    return Rig()


def _nothing_arrived_before_a_marker(listener) -> None:
    """Sends a marker to the listener: if it is the first datagram there, nothing came before it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"marker", listener.getsockname())
    assert listener.recvfrom(4096)[0] == b"marker"


def test_dry_run_reports_the_exact_packet_and_argv_and_sends_and_runs_nothing(rig, listener) -> None:
    rig.start("--dry-run")
    port = listener.getsockname()[1]
    assert rig.press("wake") == {
        "status": "dry_run",
        "calls": [{"kind": "datagram", "path": f"127.0.0.1:{port}", "data": MAGIC.hex()}],
    }
    body = rig.press("docs")
    assert body["status"] == "dry_run"
    assert [c["argv"] for c in body["calls"]] == [["xdg-open", DOCS]]
    _nothing_arrived_before_a_marker(listener)
    assert rig.opened() == []


def test_a_press_sends_the_exact_102_bytes_and_opens_the_exact_url(rig, listener, tmp_path: Path) -> None:
    rig.start()
    assert rig.press("wake") == {"status": "ok"}
    data, sender = listener.recvfrom(4096)
    assert data == MAGIC and sender[0] == "127.0.0.1"
    assert rig.press("docs") == {"status": "ok"}
    assert rig.opened() == [[str(tmp_path / "bin" / "xdg-open"), DOCS]]
    assert rig.press("visit", "https://example.org/page") == {"status": "ok"}
    assert rig.opened()[-1][1:] == ["https://example.org/page"]


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("https://evil.example/", "is not one of the hosts"),
        ("https://example.org@evil.example/", "user name before its host"),
        ("javascript:alert(1)", "only http and https URLs are opened"),
        ("file:///etc/passwd", "only http and https URLs are opened"),
        ("https://example.org/\u202egnp.exe", "spaces, control or invisible characters"),
    ],
)
def test_a_hostile_url_from_mqtt_is_refused_and_runs_nothing(rig, value: str, detail: str) -> None:
    rig.start()
    body = rig.press("visit", value)
    assert body["status"] == "failed" and detail in body["detail"], body
    assert rig.opened() == []
