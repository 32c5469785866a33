"""Command latency: Pilot's command path next to LNXlink's bash button and a bare floor.

Everything runs on a private mosquitto on a free loopback port. A paho client
whose socket has TCP_NODELAY (set in on_socket_open) presses a button, waits
for the answer, then presses the next (sequential, `--gap` seconds apart), and
records the time from just before `publish()` to the receipt of the answer in
its on_message callback (both time.perf_counter). Commands go out at QoS 1.

Targets, all running at once and pressed in turn (round robin, the order
rotated every round, so load from elsewhere on the machine falls on all alike;
`--warmup` presses each first, not counted):

* pilot dry-run: `python -m pilot run PROFILE --dry-run` with
  bench/commands_profiles/pilot.yaml.tmpl: button `noop` =
  `process.run /bin/true`, no cooldown, no rate limit. Answer: the result
  message, status `dry_run`.
* pilot unsigned: the same profile in a second agent, not dry-run: it really
  execs /bin/true. Answer: the result, status `ok`.
* pilot signed: `noop_signed` in that second agent, `policy: {signed: true}`,
  `policies.hmac` pointing at a fresh keyring (mode 600). Every press is a
  fresh envelope (signed before the clock starts); the agent fsyncs the nonce
  to nonces.log in its state directory before running the action (the state
  directory's file system is reported). Answer: the result with our nonce.
* lnxlink: PyPI `lnxlink` (reused from `--lnxlink-venv`, else installed into a
  throwaway venv, as bench/agent.py does) with only its `bash` module
  (bench/lnxlink/commands.yaml.tmpl): one button whose command is /bin/true.
  Pressing it means publishing the command text to
  `lnxlink/<id>/commands/bash/bash_noop`; LNXlink runs it through
  `subprocess.run(..., shell=True)` on a new thread and publishes its stdout
  (empty) to `lnxlink/<id>/command_result/bash/bash_noop`. The bench presses
  once while subscribed to `lnxlink/#` and lists every topic that answered
  (see the notes); the command_result message is the answer timed. The power
  modules are excluded and shimmed exactly as in bench/agent.py (a PATH whose
  shutdown/reboot/... only echo, no system D-Bus), and the bench stops
  LNXlink if its "Loaded addons" line names anything but `bash`.
* floor: bench/commands_floor.py, bare paho: subscribe, subprocess.run
  /bin/true on the network thread, publish a result.

The broker runs with `set_tcp_nodelay true`: with mosquitto's default Nagle,
its PUBACK to the presser's QoS 1 command holds the result that follows until
the presser's delayed ACK, and every target, the floor included, reads ~42 ms
(`--broker-nagle` shows it).

Then the junk floods (`--junk-rates`, default `max,20000,2500`, each
`--junk-seconds` long, default 10; `--no-junk` skips them): a separate process
writes raw MQTT QoS 0 PUBLISH packets of junk to the Pilot agent's
`noop_signed/set` topic over loopback, `max` as fast as one sender can, else
paced (a third random bytes, a third broken text and JSON, a third well-formed
envelopes with a known kid, a current ts and a wrong signature, so the agent
pays for an HMAC). Meanwhile a probe sends a valid signed command every 0.5 s.
Reported: the flood's publish rate; what the broker counted (`$SYS` publish
received/sent/dropped, sys_interval 1 s); the junk the agent read (its TCP
connection's bytes_received from `ss -ti`, less what is still unread, over the
wire size of a junk packet, per second of flood plus drain) and how long it
kept reading after the flood stopped; its CPU; the probe's latencies and
losses; the result messages the agent sent in reply to junk (its rule: at most
one a second; the shortest gap between two is shown). A flood faster than the
agent can read fills the broker's queue for it, and mosquitto then drops
messages for that client, valid QoS 1 commands included.

Targets from the issue, printed beside the figures, never asserted (timings on
a shared machine are evidence, not tests): Pilot unsigned p50 no slower than
LNXlink's; signed p50 <= 1.5x unsigned; p99 <= 15 ms; junk >= 2,000 msg/s with
the valid command answered within 50 ms.

    python bench/commands.py [--count 1000] [--warmup 20] [--gap 0.005] [--json] [--keep]
                             [--lnxlink-venv DIR] [--no-lnxlink] [--broker-nagle]
                             [--junk-seconds 10] [--junk-rates max,20000,2500] [--no-junk]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "engine")]

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench._proc import finish, summary, table  # noqa: E402
from bench.agent import (  # noqa: E402
    MeasuredAgent,
    cpu_seconds,
    install_lnxlink,
    lnxlink_modules_ok,
    power_shims,
    source_state,
)
from pilot.agent import signing  # noqa: E402
from testkit.agent import pilot_argv, pilot_env  # noqa: E402
from testkit.broker import Mosquitto  # noqa: E402

PROFILE_TEMPLATE = REPO / "bench" / "commands_profiles" / "pilot.yaml.tmpl"
LNXLINK_TEMPLATE = REPO / "bench" / "lnxlink" / "commands.yaml.tmpl"
FLOOR_SCRIPT = REPO / "bench" / "commands_floor.py"
LNXLINK_MODULES = {"bash"}
DRY_ID, PILOT_ID, LNX_ID, FLOOR_ID = "benchdry", "benchcmd", "benchlnx", "benchfloor"
KID = "bench"
ANSWER_TIMEOUT = 5.0
READY_TIMEOUT = 60.0
PROBE_EVERY = 0.5
JUNK_REPLY_GAP = 0.9  # s: at most one reply to junk a second, less arrival jitter

# ------------------------------------------------------------------ the client that presses


@dataclass
class Target:
    name: str
    command_topic: str
    answer_topic: str
    payload: Callable[[], tuple[bytes, str | None]]  # payload, expected nonce (signed) or None
    expect: str | None  # the result status that counts as success; None: any message on answer_topic
    agent: str  # which process answers
    latencies_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)


@dataclass
class Answer:
    topic: str
    payload: bytes
    at: float  # perf_counter at receipt


class Presser:
    """One paho client (TCP_NODELAY) on its own loop thread: presses and collects answers."""

    def __init__(self, port: int, topics: tuple[str, ...]) -> None:
        self.port = port
        self.topics = topics
        self._cond = threading.Condition()
        self._waiting: Callable[[Answer], bool] | None = None
        self._got: Answer | None = None
        self.listeners: list[Callable[[Answer], None]] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-presser-{os.getpid()}-{id(self)}")
        self.client.on_socket_open = self._socket_open
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in self.topics])
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message

    @staticmethod
    def _socket_open(client, userdata, sock) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_message(self, client, userdata, msg) -> None:
        answer = Answer(msg.topic, msg.payload, time.perf_counter())
        for listener in self.listeners:
            listener(answer)
        with self._cond:
            if self._waiting is not None and self._got is None and self._waiting(answer):
                self._got = answer
                self._cond.notify_all()

    def start(self) -> Presser:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("the bench client could not subscribe")
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def press(
        self, topic: str, payload: bytes, match: Callable[[Answer], bool], timeout: float = ANSWER_TIMEOUT
    ) -> tuple[float, Answer] | None:
        """Publish, wait for the first answer that `match`es: (seconds, answer), or None on timeout."""
        with self._cond:
            self._waiting, self._got = match, None
        start = time.perf_counter()
        self.client.publish(topic, payload, qos=1)
        deadline = start + timeout
        with self._cond:
            while self._got is None:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            got, self._waiting = self._got, None
        return None if got is None else (got.at - start, got)


def answer_status(answer: Answer) -> tuple[str | None, str | None]:
    """(status, nonce) of a Pilot/floor result; (None, None) if it is not JSON."""
    try:
        body = json.loads(answer.payload)
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    return body.get("status"), body.get("nonce")


def press_once(presser: Presser, target: Target, timeout: float = ANSWER_TIMEOUT) -> tuple[float | None, str]:
    """Press target once: (latency s, "ok") or (None or latency, what went wrong)."""
    payload, nonce = target.payload()
    got = presser.press(
        target.command_topic,
        payload,
        lambda a: a.topic == target.answer_topic and (nonce is None or answer_status(a)[1] == nonce),
        timeout,
    )
    if got is None:
        return None, "no answer"
    seconds, answer = got
    if target.expect is None:
        return seconds, "ok"
    status, _ = answer_status(answer)
    return (seconds, "ok") if status == target.expect else (seconds, f"status {status}")


# ------------------------------------------------------------------ agents


def render_profile(work: Path, device_id: str, keyring: Path) -> Path:
    path = work / f"{device_id}.yaml"
    path.write_text(PROFILE_TEMPLATE.read_text().format(device_id=device_id, keyring=keyring))
    return path


def make_keyring(work: Path) -> tuple[Path, signing.Key]:
    path = work / "keyring"
    path.write_text(signing.new_key_line(KID) + "\n")
    path.chmod(0o600)
    return path, signing.load_keyring(path)[KID]


def pilot_agent(profile: Path, port: int, state_dir: Path, work: Path, name: str, *extra: str) -> MeasuredAgent:
    # the action really runs (/bin/true): nothing recorded in its place. pilot_env() sets PILOT_ALLOW_ROOT=1,
    # or as root `pilot run` would refuse to start
    env = pilot_env(base={k: v for k, v in os.environ.items() if k != "PILOT_SYSTEM_RECORD"})
    return MeasuredAgent(
        name,
        pilot_argv(profile, port, state_dir, *extra),
        owns=lambda t: False,
        is_discovery=lambda t: False,
        log=work / f"{name}.log",
        env=env,
    )


def floor_agent(port: int, work: Path) -> MeasuredAgent:
    argv = [sys.executable, str(FLOOR_SCRIPT), "--broker", f"127.0.0.1:{port}", "--device-id", FLOOR_ID]
    return MeasuredAgent("floor", argv, owns=lambda t: False, is_discovery=lambda t: False, log=work / "floor.log")


def lnxlink_agent(exe: Path, port: int, work: Path) -> MeasuredAgent:
    """As bench/agent.py starts it: power commands shimmed on PATH, no system D-Bus."""
    config_dir = work / "lnxlink"
    config_dir.mkdir(exist_ok=True)
    config = config_dir / "lnxlink.yaml"
    config.write_text(LNXLINK_TEMPLATE.read_text().format(port=port, client_id=LNX_ID))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNXLINK_")}
    env.update(
        PATH=f"{power_shims(work / 'shims')}:{env.get('PATH', '/usr/bin:/bin')}",
        DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={work / 'no-system-bus'}",
    )
    argv = [str(exe), "-c", str(config), "--ignore-systemd", "--logging", "INFO", "--log-directory", str(config_dir)]
    return MeasuredAgent(
        "lnxlink", argv, owns=lambda t: False, is_discovery=lambda t: False, log=work / "lnxlink.log", env=env
    )


def wait_ready(presser: Presser, target: Target, agent: MeasuredAgent) -> str | None:
    """Press until the target answers as expected (its subscription is in place); None or why not."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if not agent.running():
            return f"{agent.name} exited (rc {agent.proc.returncode}): {agent.tail(lines=5)}"
        seconds, what = press_once(presser, target, timeout=1.0)
        if what == "ok":
            return None
        last = what
    return f"{target.name}: never answered as expected within {READY_TIMEOUT:.0f} s ({last})"


def lnxlink_answers(presser: Presser, target: Target) -> list[str]:
    """Press LNXlink's button once while listening to lnxlink/#: every topic that arrived within 2 s."""
    seen: list[Answer] = []
    listener = seen.append
    presser.listeners.append(listener)
    try:
        start = time.perf_counter()
        presser.client.publish(target.command_topic, target.payload()[0], qos=1)
        time.sleep(2.0)
    finally:
        presser.listeners.remove(listener)
    return [
        f"{a.topic} ({len(a.payload)} B, +{(a.at - start) * 1000:.1f} ms)"
        for a in seen
        if a.topic.startswith("lnxlink/") and a.topic != target.command_topic
    ]


# ------------------------------------------------------------------ latency rounds


def run_rounds(presser: Presser, targets: list[Target], count: int, warmup: int, gap: float) -> None:
    for i in range(warmup + count):
        shift = i % len(targets)
        for target in targets[shift:] + targets[:shift]:
            seconds, what = press_once(presser, target)
            if i >= warmup:
                if what == "ok" and seconds is not None:
                    target.latencies_ms.append(seconds * 1000)
                else:
                    target.failures[what] = target.failures.get(what, 0) + 1
            if gap:
                time.sleep(gap)


# ------------------------------------------------------------------ the junk flood


def mqtt_string(text: bytes) -> bytes:
    return struct.pack("!H", len(text)) + text


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    body = mqtt_string(topic) + payload
    return b"\x30" + remaining_length(len(body)) + body


def junk_payloads(n: int, device_id: str, topic: str) -> list[bytes]:
    """A third random bytes, a third broken text/JSON, a third envelopes with a wrong signature."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(rng.randbytes(rng.randint(1, 200)))
        elif kind == 1:
            out.append(
                rng.choice(
                    [
                        b"PRESS",
                        b"{",
                        b'{"v": 1, "kid": "bench"',
                        b"null",
                        b"[]" * rng.randint(1, 40),
                        b'{"v":1}',
                        "\u00e9\u00e9PRESS".encode(),
                        b"x" * rng.randint(1, 300),
                    ]
                )
            )
        else:
            env = {
                "v": 1,
                "kid": KID,
                "ts": int(time.time()),
                "nonce": signing.b64url(rng.randbytes(16)),
                "cmd": "PRESS",
                "sig": signing.b64url(rng.randbytes(32)),
            }
            out.append(json.dumps(env).encode())
    return out


def flood_child(port: int, topic: str, seconds: float, rate: float, device_id: str) -> None:
    """Raw MQTT: CONNECT, then QoS 0 PUBLISH packets for `seconds`; prints a JSON line of what it sent."""
    packets = [publish_packet(topic.encode(), p) for p in junk_payloads(3000, device_id, topic)]
    sock = socket.create_connection(("127.0.0.1", port))
    client_id = f"bench-flood-{os.getpid()}".encode()
    connect = mqtt_string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + mqtt_string(client_id)
    sock.sendall(b"\x10" + remaining_length(len(connect)) + connect)
    if sock.recv(4)[:1] != b"\x20":
        raise SystemExit("no CONNACK")
    batch = 50 if not rate else max(1, int(rate / 200))  # rate: one batch every 5 ms
    sent = wire = 0
    start = time.perf_counter()
    end = start + seconds
    i = 0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if rate:
            due = int((now - start) * rate)
            if sent >= due:
                time.sleep(min(0.005, end - now))
                continue
        chunk = [packets[(i + k) % len(packets)] for k in range(batch)]
        i += batch
        data = b"".join(chunk)
        sock.sendall(data)
        sent += batch
        wire += len(data)
    elapsed = time.perf_counter() - start
    sock.sendall(b"\xe0\x00")
    sock.close()
    print(
        json.dumps(
            {
                "sent": sent,
                "seconds": elapsed,
                "rate": sent / elapsed,
                "wire_bytes": wire,
                "mean_packet": wire / max(1, sent),
            }
        )
    )


def agent_socket(pid: int, broker_port: int) -> int | None:
    """The local port of the agent's TCP connection to the broker (from /proc/PID/fd and /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table_path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table_path).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[9] in inodes and int(parts[2].rsplit(":", 1)[1], 16) == broker_port:
                return int(parts[1].rsplit(":", 1)[1], 16)
    return None


def socket_received(local_port: int) -> tuple[int, int] | None:
    """(bytes the kernel received on that connection, bytes not yet read by the agent), from `ss -ti`."""
    try:
        out = subprocess.run(
            ["ss", "-tinH", "state", "established", f"( sport = :{local_port} )"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.strip().splitlines()
    found = re.search(r"bytes_received:(\d+)", out)
    if not lines or not found:
        return None
    recv_q = int(lines[0].split()[0]) if lines[0].split()[0].isdigit() else 0
    return int(found.group(1)), recv_q


class SysCounters:
    """The broker's $SYS publish counters (sys_interval 1 s): latest value per topic."""

    TOPICS = (
        "$SYS/broker/publish/messages/received",
        "$SYS/broker/publish/messages/sent",
        "$SYS/broker/publish/messages/dropped",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
    )

    def __init__(self, presser: Presser) -> None:
        self.values: dict[str, tuple[int, float]] = {}
        presser.listeners.append(self._on)
        presser.client.subscribe([(t, 0) for t in self.TOPICS])

    def _on(self, answer: Answer) -> None:
        if answer.topic.startswith("$SYS/"):
            try:
                self.values[answer.topic] = (int(answer.payload), answer.at)
            except ValueError:
                pass

    def snapshot(self) -> dict[str, int]:
        return {t.rsplit("broker/", 1)[1]: v for t, (v, _) in self.values.items()}

    def settle(self) -> dict[str, int]:
        time.sleep(2.2)  # two sys_intervals: the counters now include everything before this call
        return self.snapshot()


def junk_phase(
    presser: Presser,
    agent: MeasuredAgent,
    key: signing.Key,
    port: int,
    seconds: float,
    rate: float,
    counters: SysCounters,
) -> dict:
    topic = f"pilot/{PILOT_ID}/cmd/noop_signed/set"
    result_topic = f"pilot/{PILOT_ID}/cmd/noop_signed/result"
    sent_at: dict[str, float] = {}
    answered: dict[str, tuple[float, str | None]] = {}
    junk_replies: list[float] = []
    lock = threading.Lock()

    def on_answer(a: Answer) -> None:
        if a.topic != result_topic:
            return
        status, nonce = answer_status(a)
        with lock:
            if nonce and nonce in sent_at:
                answered.setdefault(nonce, (a.at - sent_at[nonce], status))
            elif status == "rejected" and not nonce:
                junk_replies.append(a.at)

    local_port = agent_socket(agent.proc.pid, port)
    received = lambda: socket_received(local_port) if local_port else None  # noqa: E731
    before_sys = counters.settle()
    presser.listeners.append(on_answer)
    before_bytes = received()
    cpu_before = cpu_seconds(agent.proc.pid)
    child = subprocess.Popen(
        [sys.executable, __file__, "--flood-child", str(port), topic, str(seconds), str(rate), PILOT_ID],
        stdout=subprocess.PIPE,
        text=True,
    )
    flood_start = time.perf_counter()
    time.sleep(0.25)  # the flood is under way
    next_at = time.perf_counter()
    while time.perf_counter() < flood_start + seconds - 0.25:
        env = signing.sign(key, PILOT_ID, topic, "PRESS")
        payload = json.dumps(env).encode()
        with lock:
            sent_at[env["nonce"]] = time.perf_counter()
        presser.client.publish(topic, payload, qos=1)
        next_at += PROBE_EVERY
        time.sleep(max(0.0, next_at - time.perf_counter()))
    out, _ = child.communicate(timeout=seconds + 30)
    flood_end = time.perf_counter()
    flood = json.loads(out.strip().splitlines()[-1])
    # the agent's backlog: how long after the flood stopped it still had unread bytes or received more
    last, last_change = received(), time.perf_counter()
    while time.perf_counter() - last_change < 0.5 and time.perf_counter() - flood_end < 60:
        time.sleep(0.05)
        now = received()
        if now != last or (now and now[1]):
            last, last_change = now, time.perf_counter()
    drain_s = max(0.0, last_change - flood_end)
    cpu = cpu_seconds(agent.proc.pid) - cpu_before
    time.sleep(1.0)  # late answers
    presser.listeners.remove(on_answer)
    after_sys = counters.settle()
    lat = [s * 1000 for s, status in answered.values() if status == "ok"]
    statuses: dict[str, int] = {}
    for _, status in answered.values():
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    window = flood["seconds"]
    sys_delta = {k: after_sys.get(k, 0) - before_sys.get(k, 0) for k in after_sys}
    read_bytes = (last[0] - last[1]) - before_bytes[0] if last and before_bytes else None
    est = read_bytes / flood["mean_packet"] if read_bytes is not None else None
    gaps = [b - a for a, b in zip(junk_replies, junk_replies[1:])]
    return {
        "seconds": window,
        "rate_limit": rate or None,
        "flood_sent": flood["sent"],
        "flood_rate": flood["rate"],
        "mean_packet_bytes": flood["mean_packet"],
        "broker": sys_delta,
        "agent_read_bytes": read_bytes,
        "agent_junk_received_est": est,
        "agent_junk_per_s_est": est / (window + drain_s) if est is not None else None,
        "agent_drain_s": drain_s,
        "agent_cpu_s": cpu,
        "probes_sent": len(sent_at),
        "probes_answered": len(answered),
        "probe_statuses": statuses,
        "probe_ms": summary(lat) if lat else None,
        "junk_replies": len(junk_replies),
        "junk_reply_min_gap_s": min(gaps) if gaps else None,
    }


# ------------------------------------------------------------------ the run


def state_fs(path: Path) -> str:
    """The file system type the state directory is on (from /proc/mounts)."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if (
                len(parts) > 2
                and str(path.resolve()).startswith(parts[1].rstrip("/") + "/")
                and len(parts[1]) >= len(best)
            ):
                best, kind = parts[1], f"{parts[2]} ({parts[0]} on {parts[1]})"
    except OSError:
        pass
    return kind


def bench(args: argparse.Namespace, work: Path) -> dict:
    notes: list[str] = []
    exe = None
    if args.no_lnxlink:
        notes.append("LNXlink: skipped (--no-lnxlink)")
    else:
        venv = Path(args.lnxlink_venv) if args.lnxlink_venv else work / "lnxlink-venv"
        exe, how = install_lnxlink(venv, work / "lnxlink-install.log")
        notes.append(f"LNXlink: {how}" if exe else f"LNXlink could NOT be installed: {how}")

    keyring, key = make_keyring(work)
    state_root = Path(args.state_parent) if args.state_parent else work
    state_dry, state_pilot = Path(tempfile.mkdtemp(dir=state_root)), Path(tempfile.mkdtemp(dir=state_root))
    if os.geteuid() == 0:
        notes.append("running as root: the Pilot agents get PILOT_ALLOW_ROOT=1 (their only action is /bin/true)")
    notes.append(f"signed nonces are fsynced to {state_pilot}: file system {state_fs(state_pilot)}")
    broker = Mosquitto(extra_conf="sys_interval 1\n" + ("" if args.broker_nagle else "set_tcp_nodelay true")).start()
    notes.append(
        "broker: mosquitto with "
        + ("its default Nagle (no set_tcp_nodelay)" if args.broker_nagle else "set_tcp_nodelay true")
        + ", sys_interval 1"
    )
    presser = Presser(
        broker.port,
        (
            f"pilot/{DRY_ID}/cmd/+/result",
            f"pilot/{PILOT_ID}/cmd/+/result",
            f"lnxlink/{LNX_ID}/#",
            f"floor/{FLOOR_ID}/cmd/+/result",
        ),
    ).start()
    counters = SysCounters(presser)

    def signed_payload(device: str, topic: str) -> Callable[[], tuple[bytes, str | None]]:
        def make() -> tuple[bytes, str | None]:
            env = signing.sign(key, device, topic, "PRESS")
            return json.dumps(env).encode(), env["nonce"]

        return make

    press = lambda: (b"PRESS", None)  # noqa: E731
    agents = {
        "pilot-dry": pilot_agent(
            render_profile(work, DRY_ID, keyring), broker.port, state_dry, work, "pilot-dry", "--dry-run"
        ),
        "pilot": pilot_agent(render_profile(work, PILOT_ID, keyring), broker.port, state_pilot, work, "pilot"),
        "floor": floor_agent(broker.port, work),
    }
    if exe:
        agents["lnxlink"] = lnxlink_agent(exe, broker.port, work)
    base = lambda d: f"pilot/{d}/cmd"  # noqa: E731
    all_targets = [
        Target(
            "pilot dry-run", f"{base(DRY_ID)}/noop/set", f"{base(DRY_ID)}/noop/result", press, "dry_run", "pilot-dry"
        ),
        Target("pilot unsigned", f"{base(PILOT_ID)}/noop/set", f"{base(PILOT_ID)}/noop/result", press, "ok", "pilot"),
        Target(
            "pilot signed",
            f"{base(PILOT_ID)}/noop_signed/set",
            f"{base(PILOT_ID)}/noop_signed/result",
            signed_payload(PILOT_ID, f"{base(PILOT_ID)}/noop_signed/set"),
            "ok",
            "pilot",
        ),
        Target(
            "lnxlink bash button",
            f"lnxlink/{LNX_ID}/commands/bash/bash_noop",
            f"lnxlink/{LNX_ID}/command_result/bash/bash_noop",
            lambda: (b"/bin/true", None),
            None,
            "lnxlink",
        ),
        Target(
            "floor (bare paho)",
            f"floor/{FLOOR_ID}/cmd/noop/set",
            f"floor/{FLOOR_ID}/cmd/noop/result",
            press,
            "ok",
            "floor",
        ),
    ]
    targets: list[Target] = []
    junk: list[dict] = []
    cpu: dict[str, float] = {}
    try:
        for agent in agents.values():
            agent.start()
        if "lnxlink" in agents:
            problem = lnxlink_modules_ok(agents["lnxlink"], LNXLINK_MODULES, timeout=20.0)
            if problem:
                agents["lnxlink"].stop()
                notes.append(f"lnxlink stopped by the bench: {problem}")
        for target in all_targets:
            agent = agents.get(target.agent)
            if agent is None or not agent.running():
                if agent is not None:
                    notes.append(f"{target.name}: {agent.name} is not running: {agent.tail(lines=5)}")
                continue
            why = wait_ready(presser, target, agent)
            if why:
                notes.append(why)
                continue
            targets.append(target)
        lnx = next((t for t in targets if t.agent == "lnxlink"), None)
        if lnx is not None:
            answered = lnxlink_answers(presser, lnx)
            notes.append(
                "LNXlink, one press of its bash button while subscribed to lnxlink/#, answered on: "
                + ("; ".join(answered) if answered else "nothing")
                + f"; timed: {lnx.answer_topic}"
            )
        running = {t.agent for t in targets}
        cpu_before = {name: cpu_seconds(a.proc.pid) for name, a in agents.items() if name in running and a.running()}
        started = time.monotonic()
        run_rounds(presser, targets, args.count, args.warmup, args.gap)
        rounds_s = time.monotonic() - started
        for name, before in cpu_before.items():
            if agents[name].running():
                presses = sum(len(t.latencies_ms) + sum(t.failures.values()) for t in targets if t.agent == name)
                cpu[name] = (cpu_seconds(agents[name].proc.pid) - before) * 1000 / max(1, presses)
        notes.append(
            f"{args.count} presses per target (+{args.warmup} warm-up each, not counted), round robin, "
            f"{args.gap * 1000:.0f} ms gap, {rounds_s:.0f} s in all"
        )
        if not args.no_junk and agents["pilot"].running() and any(t.agent == "pilot" for t in targets):
            for rate in args.junk_rates:
                junk.append(junk_phase(presser, agents["pilot"], key, broker.port, args.junk_seconds, rate, counters))
                if not agents["pilot"].running():
                    break
        for agent in agents.values():
            if agent.proc is not None and not agent.running():
                notes.append(f"{agent.name} exited during the run (rc {agent.proc.returncode}): {agent.tail(lines=5)}")
    finally:
        presser.stop()
        for agent in agents.values():
            agent.stop()
        broker.cleanup()
    for target in targets:
        if target.failures:
            notes.append(f"{target.name}: failed presses {target.failures}")
    rows = {
        t.name: {
            "agent": t.agent,
            "n": len(t.latencies_ms),
            "failed": sum(t.failures.values()),
            "failures": t.failures,
            "ms": summary(t.latencies_ms) if t.latencies_ms else None,
            "cpu_ms_per_press": cpu.get(t.agent),
        }
        for t in targets
    }
    return {"count": args.count, "targets": rows, "junk": junk, "checks": checks(rows, junk), "notes": notes}


def checks(rows: dict, junk: list[dict]) -> list[dict]:
    """The issue's targets: (what, value, limit, meets)."""

    def p(name: str, key: str) -> float | None:
        ms = rows.get(name, {}).get("ms")
        return ms[key] if ms else None

    out = []

    def add(
        label: str, value: float | None, limit: float, unit: str, at_least: bool = False, meets: bool | None = None
    ) -> None:
        if meets is None and value is not None:
            meets = value >= limit if at_least else value <= limit
        out.append(
            {"target": label, "value": value, "limit": limit, "unit": unit, "at_least": at_least, "meets": meets}
        )

    unsigned, signed, lnx = p("pilot unsigned", "p50"), p("pilot signed", "p50"), p("lnxlink bash button", "p50")
    add("Pilot unsigned p50 / LNXlink p50", unsigned / lnx if unsigned and lnx else None, 1.0, "x")
    add("Pilot signed p50 / unsigned p50", signed / unsigned if signed and unsigned else None, 1.5, "x")
    for name in ("pilot dry-run", "pilot unsigned", "pilot signed"):
        add(f"{name} p99", p(name, "p99"), 15.0, "ms")
    for j in junk:
        label = f"junk at {j['rate_limit']:.0f}/s" if j["rate_limit"] else "junk at max rate"
        add(f"{label}: msg/s read by the agent", j["agent_junk_per_s_est"], 2000.0, "msg/s", at_least=True)
        probe = j["probe_ms"]
        lost = j["probes_sent"] - j["probe_statuses"].get("ok", 0)
        add(
            f"{label}: valid command max" + (f" ({lost} of {j['probes_sent']} not answered ok)" if lost else ""),
            probe["max"] if probe else None,
            50.0,
            "ms",
            meets=False if lost else None,
        )
        add(
            f"{label}: shortest gap between junk replies", j["junk_reply_min_gap_s"], JUNK_REPLY_GAP, "s", at_least=True
        )
    return out


# ------------------------------------------------------------------ output


def fmt(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_result(result: dict) -> None:
    headers = ("target", "n", "failed", "p50 ms", "p90 ms", "p99 ms", "max ms", "min ms", "agent CPU ms/press")
    rows = []
    for name, r in result["targets"].items():
        ms = r["ms"] or {}
        rows.append(
            (
                name,
                r["n"],
                r["failed"],
                fmt(ms.get("p50")),
                fmt(ms.get("p90")),
                fmt(ms.get("p99")),
                fmt(ms.get("max")),
                fmt(ms.get("min")),
                fmt(r["cpu_ms_per_press"]),
            )
        )
    print("publish -> result, sequential, loopback\n")
    print(table(rows, headers))
    for junk in result["junk"]:
        b = junk["broker"]
        probe = junk["probe_ms"] or {}
        rate = f"at most {junk['rate_limit']:.0f}/s" if junk["rate_limit"] else "as fast as one sender can"
        print(
            f"\njunk flood to pilot/{PILOT_ID}/cmd/noop_signed/set, QoS 0, {rate}, {junk['seconds']:.1f} s; "
            f"a valid signed command every {PROBE_EVERY} s\n"
        )
        read = junk["agent_junk_received_est"]
        span = junk["seconds"] + junk["agent_drain_s"]
        jrows = [
            (
                "flood published",
                f"{junk['flood_sent']} msgs, {junk['flood_rate']:.0f}/s ({junk['mean_packet_bytes']:.0f} B/packet)",
            ),
            (
                "broker $SYS publish received / sent / dropped",
                f"{b.get('publish/messages/received', '-')} / {b.get('publish/messages/sent', '-')} / "
                f"{b.get('publish/messages/dropped', '-')}",
            ),
            (
                "read by the agent (its socket's bytes_received)",
                "-" if read is None else f"{read:.0f} msgs, {junk['agent_junk_per_s_est']:.0f}/s",
            ),
            ("agent still reading after the flood stopped", f"{junk['agent_drain_s']:.2f} s"),
            (
                "agent CPU, flood + drain",
                f"{junk['agent_cpu_s']:.2f} s ({100 * junk['agent_cpu_s'] / span:.0f} % of a core)",
            ),
            (
                "valid commands sent / answered",
                f"{junk['probes_sent']} / {junk['probes_answered']} {junk['probe_statuses']}",
            ),
            (
                "valid command latency p50 / p99 / max ms",
                f"{fmt(probe.get('p50'))} / {fmt(probe.get('p99'))} / {fmt(probe.get('max'))}",
            ),
            (
                "result replies to junk (shortest gap)",
                f"{junk['junk_replies']} ({fmt(junk['junk_reply_min_gap_s'])} s)",
            ),
        ]
        print(table(jrows, ("figure", "value")))
    print()
    trows = []
    for t in result["checks"]:
        limit = f"{'>=' if t['at_least'] else '<='} {t['limit']:g} {t['unit']}"
        trows.append(
            (t["target"], fmt(t["value"]), limit, "-" if t["meets"] is None else ("meets" if t["meets"] else "MISSES"))
        )
    print(table(trows, ("target", "value", "limit", "")))
    if result["notes"]:
        print("\nnotes:")
        for note in result["notes"]:
            print(f"  - {note}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--flood-child"]:
        port, topic, seconds, rate, device = argv[1:6]
        flood_child(int(port), topic, float(seconds), float(rate), device)
        return 0
    parser = argparse.ArgumentParser(description="Command latency: Pilot vs LNXlink vs a bare floor.")
    parser.add_argument("--count", type=int, default=1000, help="timed presses per target (default 1000)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed presses per target first (default 20)")
    parser.add_argument("--gap", type=float, default=0.005, help="pause between presses, seconds (default 0.005)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--no-lnxlink", action="store_true", help="leave LNXlink out")
    parser.add_argument("--lnxlink-venv", metavar="DIR", help="reuse (or create and keep) LNXlink's venv here")
    parser.add_argument("--no-junk", action="store_true", help="skip the junk flood")
    parser.add_argument("--junk-seconds", type=float, default=10.0, help="junk flood length (default 10)")
    parser.add_argument(
        "--junk-rates",
        default="max,20000,2500",
        type=lambda s: [0.0 if r == "max" else float(r) for r in s.split(",") if r],
        help="comma-separated junk floods to run, messages/s or `max` "
        "(as fast as one sender can); default max,20000,2500",
    )
    parser.add_argument(
        "--broker-nagle",
        action="store_true",
        help="leave mosquitto's default Nagle on (its QoS 1 answers then stall ~40 ms on "
        "delayed ACKs, for every agent alike)",
    )
    parser.add_argument("--state-parent", metavar="DIR", help="where the agents' state dirs go (default: work dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="pilot-bench-commands-"))
    load_before = os.getloadavg()[0]
    try:
        result = bench(args, work)
    except BaseException:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        raise
    result["pilot_source"] = source_state()
    result["notes"].insert(0, f"Pilot measured at {result['pilot_source']}")
    return finish(result, load_before, work, args.keep, args.json, print_result)


if __name__ == "__main__":
    raise SystemExit(main())
