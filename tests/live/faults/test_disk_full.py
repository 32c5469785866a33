"""The state directory's file system fills up (a 64 KiB tmpfs), then gets space back.

Signed commands need their nonce made durable first, so they must be refused `unavailable` while
nothing can be written; telemetry needs no disk and must go on; state files are written atomically
(tmp, fsync, rename), so a full disk must leave the old file or the new one, never a truncated one;
and once space returns, signed commands must work again within 5 s.

The truncation check leaves exactly one 4 KiB page free, then makes the agent rewrite a state file
larger than a page (discovery.json of a profile announcing ~40 entities in per-entity mode): on a
nearly full file system `write()` then writes the first page and returns a short count instead of
failing, which is how a truncated file comes about.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from testkit.agent import Signer, new_keyring, recorded_calls
from tests.support.harness import figure, online

DEVICE = "dfrig"
BASE = f"pilot/{DEVICE}"
PAGE = 4096


@pytest.fixture
def tmpfs_state(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    target = tmp_path / "state"
    target.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(target)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield target
    if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _fill(path) -> int:
    """Write 4 KiB pages until the file system refuses; returns the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0
    try:
        while True:
            try:
                n = os.write(fd, b"\0" * PAGE)
            except OSError:
                break
            written += n
            if n < PAGE:
                break
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


def _add_battery(sysroot) -> None:
    bat = sysroot / "class" / "power_supply" / "BAT0"
    bat.mkdir(parents=True)
    for name, value in {"type": "Battery", "present": "1", "capacity": "57", "status": "Discharging"}.items():
        (bat / name).write_text(value + "\n")


def test_disk_full_state_directory(tmp_path, tmpfs_state, brokers, watchers, agents):
    case = "disk full (64 KiB tmpfs)"
    keyring = new_keyring(tmp_path / "keyring")
    sysroot = tmp_path / "sys"
    sysroot.mkdir()
    sensors = "".join(f"  uptime_reading_{i:03d}: {{probe: system.uptime, every: 2s}}\n" for i in range(40))
    profile = tmp_path / "df.yaml"
    profile.write_text(
        f"pilot: 1\ndevice: {{id: {DEVICE}, name: Disk rig}}\nmqtt: {{keepalive: 5, discovery: entity}}\n"
        f"sensors:\n{sensors}  battery: {{probe: battery.level, every: 2s, optional: true}}\n"
        "commands:\n  stamp: {action: process.run, args: {argv: [/bin/true]}, platform: button, "
        "policy: {signed: true}}\n"
        f"policies:\n  allow: [stamp]\n  hmac: {{keyring: {keyring}, window: 60s}}\n"
    )
    record = tmp_path / "calls.jsonl"
    broker = brokers()
    w = watchers(broker.port)
    agent = agents(
        profile,
        broker.port,
        state_dir=tmpfs_state,
        env={"PILOT_SYSTEM_RECORD": str(record), "PILOT_SYSFS_ROOT": str(sysroot), "PILOT_HEALTH_EVERY": "1"},
    )
    assert w.wait_for(online(f"{BASE}/availability"), timeout=20), agent.tail()
    signer = Signer(keyring, DEVICE, BASE)
    deadline = time.monotonic() + 5
    while not (tmpfs_state / "discovery.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    before = (tmpfs_state / "discovery.json").read_bytes()
    json.loads(before)
    figure(case, "discovery.json size before (bytes, > 4096)", len(before))
    assert len(before) > PAGE, "the profile must make discovery.json larger than a page"
    assert (tmpfs_state / "plan-cache.json").exists(), "the compile cache should fit in the tmpfs"

    def send(command: str = "stamp", timeout: float = 10.0) -> dict | None:
        since = time.monotonic()
        w.publish(f"{BASE}/cmd/{command}/set", signer.envelope(command))
        msg = w.wait_for(lambda m: m.topic == f"{BASE}/cmd/{command}/result", timeout=timeout, since=since)
        return json.loads(msg.payload) if msg else None

    # 1. full: signed commands fail closed, telemetry goes on
    filler = tmpfs_state / "filler"
    filled = _fill(filler)
    figure(case, "filler written (bytes)", filled)
    full = send()
    figure(case, "signed command on a full disk", f"{full.get('status')}/{full.get('reason')}" if full else "none")
    since = time.monotonic()
    telemetry = w.wait_for(lambda m: m.topic.startswith(f"{BASE}/state/"), timeout=5, since=since)
    figure(case, "telemetry while full", telemetry is not None)

    # 2. one page free: the agent rewrites discovery.json (a battery appeared; reload with the same profile)
    size = os.path.getsize(filler)
    os.truncate(filler, max(0, (size // PAGE - 1) * PAGE))
    _add_battery(sysroot)
    since = time.monotonic()
    agent.signal(signal.SIGHUP)
    reloaded = w.wait_for(lambda m: m.topic == f"{BASE}/cmd/_reload/result", timeout=15, since=since)
    assert reloaded is not None and json.loads(reloaded.payload)["status"] == "ok", agent.tail()
    assert w.wait_for(lambda m: m.topic == "homeassistant/sensor/dfrig/battery/config", timeout=5, since=since)
    time.sleep(1.0)
    after = (tmpfs_state / "discovery.json").read_bytes()
    try:
        json.loads(after)
        intact = True
    except ValueError:
        intact = False
    figure(
        case,
        "discovery.json after a rewrite with 1 page free",
        f"{'valid' if intact else 'TRUNCATED'} ({len(after)} bytes, was {len(before)})",
    )
    leftovers = sorted(p.name for p in tmpfs_state.iterdir() if p.name.endswith(".tmp"))
    figure(case, "temporary files left", leftovers or "none")

    # 3. space returns
    filler.unlink()
    returned = time.monotonic()
    recovered = None
    while time.monotonic() - returned < 10:
        body = send(timeout=5)
        if body and body.get("status") == "ok":
            recovered = time.monotonic() - returned
            break
        time.sleep(0.2)
    figure(case, "signed command ok after space returns (s, <= 5)", recovered if recovered is not None else "never")
    nonces = (tmpfs_state / "nonces.log").read_text()
    nonce_lines_ok = all(re.fullmatch(r"[A-Za-z0-9_-]{22} \d+", line) for line in nonces.splitlines())
    json.loads((tmpfs_state / "plan-cache.json").read_text())

    assert full is not None and full["status"] == "rejected" and full["reason"] == "unavailable", full
    assert telemetry is not None, "telemetry stopped while the disk was full"
    assert intact, (
        f"discovery.json was truncated by a write on a nearly full file system "
        f"({len(after)} of at least {len(before)} bytes): {after[-80:]!r}"
    )
    assert recovered is not None and recovered <= 5.0
    assert nonce_lines_ok, nonces
    assert [c["argv"] for c in recorded_calls(record)] == [["/bin/true"]]
    assert agent.running() and "Traceback" not in agent.output()
