"""Soak: the agent under steady load while its broker keeps restarting.

    python bench/soak.py [--minutes 15] [--restart-every 120] [--rate 10] [--command-every 10]
                         [--json] [--strict] [--keep]

One private mosquitto on a free loopback port, one `pilot run` (JSON logs, actions recorded with
PILOT_SYSTEM_RECORD, nothing performed) with `--rate` sensors (system.uptime copies read every second
and sent every second: `--rate` telemetry messages/s) and one signed `text` command whose value
reaches the recorded argv, so every execution names the command that caused it.

* every `--restart-every` seconds the broker is restarted on the same port, SIGTERM and SIGKILL in
  turn, down 1 s (persistence is off: retained messages are lost each time, the agent puts them back);
* every `--command-every` seconds a freshly signed command `c000001`, `c000002`... is sent at QoS 1
  while the agent is online and no restart is due within 3 s; if no result comes within 10 s the same
  envelope is sent again (at most 3 times), as a client that retries would. A command is *missed* if
  it never executed, *duplicated* if it executed more than once (the recorder's file is the truth);
* the agent's RSS (/proc/PID/status VmRSS), open file descriptors (/proc/PID/fd) and threads
  (/proc/PID/task) are sampled every 5 s. The baseline is taken after a 30 s warm-up (commands and
  telemetry running); the last sample is the end figure.

Targets (from the issue): RSS drift < 5 MB, fd and thread counts constant, zero missed and zero
duplicated commands. A table is printed; `--strict` exits 1 when a target is missed (by default the
script only reports, like the other benches). Takes `--minutes` plus ~10 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "engine")]

from testkit.agent import Signer, fd_count, new_keyring, pilot_run, recorded_calls, rss_kb, thread_count  # noqa: E402
from testkit.broker import Mosquitto, Watcher  # noqa: E402

DEVICE = "soakrig"
BASE = f"pilot/{DEVICE}"
WARMUP = 30.0


def profile_text(rate: int, keyring: Path) -> str:
    sensors = "".join(
        f"  up{i:03d}: {{probe: system.uptime, every: 1s, publish: {{max_silence: 1s}}}}\n" for i in range(rate)
    )
    return (
        f"pilot: 1\ndevice: {{id: {DEVICE}, name: Soak rig}}\nmqtt: {{keepalive: 10}}\nsensors:\n{sensors}"
        'commands:\n  stamp: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}", '
        'value_pattern: "^c[0-9]{6}$"}, platform: text, max_length: 16, policy: {signed: true}}\n'
        f"policies:\n  allow: [stamp]\n  hmac: {{keyring: {keyring}, window: 60s}}\n"
    )


class Observer(Watcher):
    """The soak's own MQTT client: reconnects quickly after each restart and resubscribes."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.client.reconnect_delay_set(0.1, 1.0)
        self.telemetry = 0
        self.availability = b""

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic.startswith(f"{BASE}/state/"):
            self.telemetry += 1  # counted, not kept: 10 msg/s for 15 min is 9,000 messages
            return
        if msg.topic == f"{BASE}/availability":
            self.availability = msg.payload
        if msg.topic.startswith(f"{BASE}/cmd/") or msg.topic == f"{BASE}/availability":
            super()._on_message(client, userdata, msg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--restart-every", type=float, default=120.0, help="seconds between broker restarts")
    parser.add_argument("--rate", type=int, default=10, help="telemetry messages per second")
    parser.add_argument("--command-every", type=float, default=10.0, help="seconds between signed commands")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, record)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="pilot-soak-"))
    keyring = new_keyring(work / "keyring")
    signer = Signer(keyring, DEVICE, BASE)
    profile = work / "soak.yaml"
    profile.write_text(profile_text(args.rate, keyring))
    record = work / "calls.jsonl"
    broker = Mosquitto().start()
    observer = Observer(broker.port, topics=(f"{BASE}/#",)).start()
    agent = pilot_run(
        profile, broker.port, work / "state", env={"PILOT_SYSTEM_RECORD": str(record)}, log_format="json", log_dir=work
    ).start()
    duration = args.minutes * 60.0
    samples: list[tuple[float, int, int, int]] = []
    restarts: list[dict] = []
    commands: dict[str, dict] = {}
    failure = ""

    def sample() -> None:
        samples.append((time.monotonic() - t0, rss_kb(agent.pid), fd_count(agent.pid), thread_count(agent.pid)))

    try:
        deadline = time.monotonic() + 30
        while observer.availability != b"online" and time.monotonic() < deadline:
            time.sleep(0.1)
        if observer.availability != b"online":
            raise RuntimeError(f"the agent never came online\n{agent.tail()}")
        t0 = time.monotonic()
        print(
            f"soak: {args.minutes:g} min, broker restart every {args.restart_every:g} s, {args.rate} msg/s, "
            f"a signed command every {args.command_every:g} s; work folder {work}",
            file=sys.stderr,
        )
        next_sample, next_restart, next_command = t0, t0 + args.restart_every, t0 + 2.0
        seq = 0
        pending: list[str] = []
        restart_signal = signal.SIGTERM
        while time.monotonic() - t0 < duration:
            now = time.monotonic()
            if not agent.running():
                failure = f"the agent exited (code {agent.proc.returncode})"
                break
            if now >= next_sample:
                sample()
                next_sample += 5.0
            if now >= next_restart:
                broker.stop(restart_signal)
                time.sleep(1.0)
                broker.start()
                back = time.monotonic()
                came = None
                while time.monotonic() - back < 30:
                    online = [m for m in observer.on(f"{BASE}/availability", since=back) if m.payload == b"online"]
                    if online:
                        came = online[0].at - back
                        break
                    time.sleep(0.05)
                restarts.append(
                    {
                        "at": round(back - t0, 1),
                        "signal": signal.Signals(restart_signal).name,
                        "online_after_s": round(came, 2) if came is not None else None,
                        "rss_kb": rss_kb(agent.pid),
                    }
                )
                restart_signal = signal.SIGKILL if restart_signal == signal.SIGTERM else signal.SIGTERM
                next_restart += args.restart_every
                continue
            # results of what is pending; resend the same envelope after 10 s without one
            for value in list(pending):
                entry = commands[value]
                got = [
                    m
                    for m in observer.on(f"{BASE}/cmd/stamp/result", since=entry["first"])
                    if json.loads(m.payload).get("nonce") == entry["nonce"]
                ]
                if got:
                    entry["results"] = [
                        json.loads(m.payload).get("reason") or json.loads(m.payload)["status"] for m in got
                    ]
                    pending.remove(value)
                elif now - entry["last"] > 10.0:
                    if entry["sends"] >= 3:
                        pending.remove(value)
                    elif observer.availability == b"online" and next_restart - now > 3.0:
                        observer.client.publish(f"{BASE}/cmd/stamp/set", entry["payload"], qos=1)
                        entry["sends"] += 1
                        entry["last"] = now
            if now >= next_command and observer.availability == b"online" and next_restart - now > 3.0:
                seq += 1
                value = f"c{seq:06d}"
                env = signer.sign("stamp", value)
                payload = json.dumps(env)
                commands[value] = {
                    "nonce": env["nonce"],
                    "payload": payload,
                    "first": now,
                    "last": now,
                    "sends": 1,
                    "results": [],
                }
                observer.client.publish(f"{BASE}/cmd/stamp/set", payload, qos=1)
                pending.append(value)
                next_command += args.command_every
            time.sleep(0.05)
        end_wait = time.monotonic()
        while pending and time.monotonic() - end_wait < 12:
            for value in list(pending):
                got = [
                    m
                    for m in observer.on(f"{BASE}/cmd/stamp/result", since=commands[value]["first"])
                    if json.loads(m.payload).get("nonce") == commands[value]["nonce"]
                ]
                if got:
                    commands[value]["results"] = [
                        json.loads(m.payload).get("reason") or json.loads(m.payload)["status"] for m in got
                    ]
                    pending.remove(value)
            time.sleep(0.1)
        if agent.running():
            sample()
        elapsed = time.monotonic() - t0
    finally:
        agent.stop()
        observer.stop()
        broker.cleanup()

    executions: dict[str, int] = {}
    for call in recorded_calls(record):
        value = (call.get("argv") or [None, None])[-1]
        executions[value] = executions.get(value, 0) + 1
    missed = sorted(v for v in commands if executions.get(v, 0) == 0)
    duplicated = sorted(v for v, n in executions.items() if n > 1)
    unknown = sorted(v for v in executions if v not in commands)
    resent = sum(1 for c in commands.values() if c["sends"] > 1)
    warmup = min(WARMUP, elapsed / 4)  # a short trial run gets a shorter warm-up
    baseline = next((s for s in samples if s[0] >= warmup), samples[0] if samples else None)
    steady = [s for s in samples if baseline and s[0] >= baseline[0]]
    last = samples[-1] if samples else None
    after_first_restart = restarts[0]["rss_kb"] if restarts else None
    out = agent.output()
    figures = {
        "minutes": round(elapsed / 60, 2),
        "broker_restarts": len(restarts),
        "restarts": restarts,
        "telemetry_msgs": observer.telemetry,
        "telemetry_rate": round(observer.telemetry / elapsed, 2) if elapsed else 0,
        "commands_sent": len(commands),
        "commands_resent": resent,
        "executions": sum(executions.values()),
        "missed": missed,
        "duplicated": duplicated,
        "unexpected_executions": unknown,
        "rss_kb": [baseline[1], last[1]] if baseline and last else None,
        "rss_kb_after_first_restart": after_first_restart,
        "fds": [baseline[2], last[2]] if baseline and last else None,
        "fds_range": [min(s[2] for s in steady), max(s[2] for s in steady)] if steady else None,
        "threads": [baseline[3], last[3]] if baseline and last else None,
        "threads_range": [min(s[3] for s in steady), max(s[3] for s in steady)] if steady else None,
        "tracebacks": out.count("Traceback"),
        "failure": failure,
    }

    def row(name, start, end, drift, target, ok):
        return (name, start, end, drift, target, "ok" if ok else "MISSED")

    rows = []
    if baseline and last:
        rss_drift = last[1] - baseline[1]
        rows.append(row("RSS (kB)", baseline[1], last[1], f"{rss_drift:+d}", "< 5120 kB drift", rss_drift < 5120))
        if after_first_restart is not None:
            rows.append(
                row(
                    "RSS since 1st restart (kB)",
                    after_first_restart,
                    last[1],
                    f"{last[1] - after_first_restart:+d}",
                    "(context)",
                    True,
                )
            )
        fr, tr = figures["fds_range"], figures["threads_range"]
        rows.append(
            row(
                "open fds",
                baseline[2],
                last[2],
                f"{last[2] - baseline[2]:+d} (range {fr[0]}-{fr[1]})",
                "constant",
                last[2] == baseline[2],
            )
        )
        rows.append(
            row(
                "threads",
                baseline[3],
                last[3],
                f"{last[3] - baseline[3]:+d} (range {tr[0]}-{tr[1]})",
                "constant",
                last[3] == baseline[3],
            )
        )
    rows.append(row("commands missed", "", len(missed), "", "0", not missed))
    rows.append(row("commands duplicated", "", len(duplicated), "", "0", not duplicated))
    rows.append(row("commands sent / resent", "", f"{len(commands)} / {resent}", "", "", True))
    rows.append(
        row(
            "broker restarts / worst online after (s)",
            "",
            len(restarts),
            max((r["online_after_s"] or 99 for r in restarts), default="-"),
            "",
            True,
        )
    )
    rows.append(row("telemetry (msg/s)", "", figures["telemetry_rate"], "", f"~{args.rate}", True))
    rows.append(
        row(
            "agent alive, no traceback",
            "",
            "yes" if not failure and not figures["tracebacks"] else "NO",
            "",
            "yes",
            not failure and not figures["tracebacks"],
        )
    )
    headers = ("figure", "start", "end", "drift", "target", "verdict")
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths))  # noqa: E731
    print(
        f"\nPilot soak: {figures['minutes']} min, {len(restarts)} broker restarts "
        f"(baseline after {warmup:.0f} s warm-up)"
    )
    print("\n".join([line(headers), line(tuple("-" * w for w in widths))] + [line(r) for r in rows]))
    if args.json:
        print(json.dumps(figures, indent=2))
    if args.keep:
        print(f"kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    missed_target = any(r[-1] != "ok" for r in rows)
    return 1 if (args.strict and missed_target) else 0


if __name__ == "__main__":
    sys.exit(main())
