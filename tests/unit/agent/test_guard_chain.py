"""The guard chain of docs/security.md as a table: one message (after some prior state) in, one
literal answer out, through a real CommandService on a compiled profile.

Clocks are injected (nothing sleeps), signatures are real (a test keyring), and the machine is
never touched: `Recorder` is the System, the one place where an action would change it, and it
only records each call. `/bin/false` answers exit status 1 and `/bin/sleep` stays "running" until
released, so a table row can hold an action running.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from pilot.actions import ActionContext
from pilot.actions._base import Call, Outcome, System
from pilot.agent import signing
from pilot.agent.commands import CommandService, Guards
from testkit.agent import Signer, new_keyring
from tests.support.profiles import compile_text

WALL = 1_700_000_000.0  # the wall clock at the start of every row (signatures are checked against it)
MONO = 5_000.0  # the monotonic clock (cooldowns, confirmations, rate limits, reply throttles)
SECRET_MARK = "zebra-7f3a9"  # a payload nobody would answer with by chance

PROFILE = """pilot: 1
device: {id: d, name: D}
policies:
  allow: [press, other, sw, level, pick, note, armed, cool, slow, slowcool, failing, signed, signote]
  rate_limit: {max: 2, per: 10s}
  max_payload: 200
  hmac: {keyring: {ring}, window: 60s}
commands:
  press: {action: process.run, args: {argv: [/bin/true]}}
  other: {action: process.run, args: {argv: [/bin/true]}}
  hidden: {action: process.run, args: {argv: [/bin/true]}}
  sw: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, platform: switch}
  level: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, platform: number,
          min: 1, max: 10, step: 1}
  pick: {action: process.run, args: {argv: [/bin/true]}, platform: select, options: [a, b]}
  note: {action: process.run, args: {argv: [/bin/true]}, platform: text, pattern: "[a-z0-9-]*"}
  armed: {action: process.run, args: {argv: [/bin/true]}, policy: {confirm: 20s, cooldown: 1h}}
  cool: {action: process.run, args: {argv: [/bin/true]}, policy: {cooldown: 1h}}
  slow: {action: process.run, args: {argv: [/bin/sleep, "60"]}}
  slowcool: {action: process.run, args: {argv: [/bin/sleep, "60"]}, policy: {cooldown: 1h}}
  failing: {action: process.run, args: {argv: [/bin/false]}}
  signed: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, platform: switch,
           policy: {signed: true}}
  signote: {action: process.run, args: {argv: [/bin/true]}, platform: text, policy: {signed: true}}
"""


class Recorder(System):
    """The machine, recorded instead of changed: every call is kept and none is performed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []
        self.threads: list[str] = []  # the thread each call ran on
        self.graces: list[float] = []  # what each interrupt_all was given
        self._gate = threading.Event()
        self._interrupted = False

    def perform(self, call: Call) -> Outcome:
        self.calls.append(call.to_dict())
        self.threads.append(threading.current_thread().name)
        program = call.argv[0] if call.argv else ""
        if program == "/bin/sleep":
            self._gate.wait(30)
            if self._interrupted:
                return Outcome(returncode=-15, interrupted=True)
        if program == "/bin/false":
            return Outcome(returncode=1)
        return Outcome()

    def release(self) -> None:
        self._gate.set()

    def interrupt_all(self, grace: float = 2.0) -> None:
        self.graces.append(grace)
        self._interrupted = True
        self._gate.set()


class Running(set):
    """Guards.running that says when an action finishes, so a test waits for it without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def discard(self, item) -> None:
        with self.changed:
            super().discard(item)
            self.changed.notify_all()


@dataclass
class Rig:
    """A CommandService on a compiled profile, with its clocks, keys, wire and machine in reach."""

    svc: CommandService
    system: Recorder
    signer: Signer
    clock: dict[str, float]
    wire: list[tuple[str, str]] = field(default_factory=list)
    frames: list[tuple[str, str, int, bool]] = field(default_factory=list)  # the wire with QoS and retain

    def send(self, command: str, payload: bytes | Callable[[Rig], bytes], retained: bool = False) -> None:
        data = payload(self) if callable(payload) else payload
        self.svc.handle(f"pilot/d/cmd/{command}/set", data, retained)
        self.settle()

    def settle(self) -> None:
        """Wait until every action that is not held running (/bin/sleep) has answered."""
        held = {c.id for c in self.svc.plan.commands if c.args.get("argv", [""])[0] == "/bin/sleep"}
        running = self.svc.guards.running
        with running.changed:
            assert running.changed.wait_for(lambda: running <= held, 20), sorted(running)

    def tick(self, seconds: float) -> None:
        self.clock["wall"] += seconds
        self.clock["mono"] += seconds

    def results(self, since: int = 0) -> list[tuple[str, dict]]:
        return [(t.split("/")[3], json.loads(p)) for t, p in self.wire[since:] if t.endswith("/result")]

    def audit(self, since: int = 0) -> list[dict]:
        return [json.loads(p) for t, p in self.wire[since:] if t == "pilot/d/audit"]


def make_rig(
    tmp_path: Path,
    text: str = PROFILE,
    *,
    dry_run: bool = False,
    keyring: bool = True,
    ctx: ActionContext | None = None,
    system: Recorder | None = None,
) -> Rig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    ring = new_keyring(tmp_path / "ring")
    plan = compile_text(text.replace("{ring}", str(ring)))
    if not keyring:
        ring.unlink()  # the keyring went away after the profile was compiled
    clock = {"wall": WALL, "mono": MONO}
    guards = Guards.fresh(lambda: clock["mono"])
    guards.running = Running()
    system = system or Recorder()
    wire: list[tuple[str, str]] = []
    frames: list[tuple[str, str, int, bool]] = []
    lock = threading.Lock()

    def publish(topic: str, payload: str, qos: int, retain: bool) -> None:
        with lock:
            wire.append((topic, payload))
            frames.append((topic, payload, qos, retain))

    svc = CommandService(
        plan,
        publish,
        system,
        tmp_path / "state",
        dry_run=dry_run,
        wall=lambda: clock["wall"],
        mono=lambda: clock["mono"],
        guards=guards,
        **({"ctx": ctx} if ctx is not None else {}),
    )
    signer = Signer(ring, "d", "pilot/d") if keyring else None
    return Rig(svc, system, signer, clock, wire, frames)


# ------------------------------------------------------------------ payloads


NONCE = signing.b64url(bytes(range(16)))  # one fixed nonce: the same envelope, byte for byte, twice


def signed(value: str = "ON", command: str = "signed", *, age: int = 0, key: signing.Key | None = None, nonce=None):
    """A pilot-cmd-v1 envelope for `value`, made when the row runs: signed `age` seconds ago by `key`
    (default: the keyring's k1)."""

    def make(rig: Rig) -> bytes:
        k = key or rig.signer.keys["k1"]
        ts = int(rig.clock["wall"]) - age
        env = signing.sign(k, "d", f"pilot/d/cmd/{command}/set", value, ts=ts, nonce=nonce)
        return json.dumps(env).encode()

    return make


FORGED = signing.Key("k1", b"\x07" * 32)  # the right key id with a secret the agent does not hold
STRANGER = signing.Key("k9", b"\x07" * 32)  # a key id the agent does not know


# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Row:
    command: str
    payload: bytes | Callable[[Rig], bytes]
    expect: tuple[str, str | None]  # (status, reason) of the one answer
    retained: bool = False
    before: tuple[tuple[str, bytes | Callable[[Rig], bytes]], ...] = ()  # messages sent first, in order
    after: float = 0.0  # seconds on both clocks between the last of `before` and this message
    dry_run: bool = False
    keyring: bool = True


ROWS = {
    # every status
    "ok": Row("press", b"PRESS", ("ok", None)),
    "ok, a switch": Row("sw", b"OFF", ("ok", None)),
    "ok, a number at its max": Row("level", b"10", ("ok", None)),
    "ok, a select option": Row("pick", b"b", ("ok", None)),
    "ok, signed": Row("signed", signed("ON"), ("ok", None)),
    "ok, signed just inside its window": Row("signed", signed("ON", age=60), ("ok", None)),
    "failed: exit status": Row("failing", b"PRESS", ("failed", "exit_status")),
    "dry_run": Row("press", b"PRESS", ("dry_run", None), dry_run=True),
    "armed: first press of a confirm command": Row("armed", b"PRESS", ("armed", None)),
    "ok: its second press within the window": Row(
        "armed", b"PRESS", ("ok", None), before=(("armed", b"PRESS"),), after=20
    ),
    "armed again: a second press after the window": Row(
        "armed", b"PRESS", ("armed", None), before=(("armed", b"PRESS"),), after=20.5
    ),
    # every reason, each alone
    "malformed: not UTF-8": Row("press", b"\xffPRESS", ("rejected", "malformed")),
    "malformed: a control character": Row("note", b"a\x1b[2J", ("rejected", "malformed")),
    "malformed: a signed command sent bare": Row("signed", b"ON", ("rejected", "malformed")),
    "malformed: signed text with a control character": Row(
        "signote", signed("ok\x1b[2J", "signote"), ("rejected", "malformed")
    ),
    "too_large: one byte over max_payload": Row("note", b"a" * 201, ("rejected", "too_large")),
    "exactly max_payload passes": Row("note", b"a" * 200, ("ok", None)),
    "retained": Row("press", b"PRESS", ("rejected", "retained"), retained=True),
    "unauthorized: a key the agent does not hold": Row("signed", signed(key=FORGED), ("rejected", "unauthorized")),
    "unauthorized: an unknown key id": Row("signed", signed(key=STRANGER), ("rejected", "unauthorized")),
    "expired: signed 61 s ago, window 60 s": Row("signed", signed(age=61), ("rejected", "expired")),
    "replayed: the same envelope again": Row(
        "signed", signed(nonce=NONCE), ("rejected", "replayed"), before=(("signed", signed(nonce=NONCE)),)
    ),
    "not_allowed: declared, not in policies.allow": Row("hidden", b"PRESS", ("rejected", "not_allowed")),
    "not_allowed: not declared": Row("ghost", b"PRESS", ("rejected", "not_allowed")),
    "bad_value: a switch": Row("sw", b"on", ("rejected", "bad_value")),
    "bad_value: a number off its range": Row("level", b"11", ("rejected", "bad_value")),
    "bad_value: a number off its step": Row("level", b"2.5", ("rejected", "bad_value")),
    "bad_value: a select": Row("pick", b"c", ("rejected", "bad_value")),
    "bad_value: a text pattern": Row("note", b"ABC", ("rejected", "bad_value")),
    "bad_value: signed, after the signature": Row("signed", signed("on"), ("rejected", "bad_value")),
    "cooldown": Row("cool", b"PRESS", ("rejected", "cooldown"), before=(("cool", b"PRESS"),), after=3599),
    "cooldown over": Row("cool", b"PRESS", ("ok", None), before=(("cool", b"PRESS"),), after=3600),
    "busy: the same command still running": Row("slow", b"PRESS", ("rejected", "busy"), before=(("slow", b"PRESS"),)),
    "unavailable: the keyring is gone": Row("signed", signed(key=FORGED), ("rejected", "unavailable"), keyring=False),
    "rate_limited: a third command in 10 s": Row(
        "sw", b"ON", ("rejected", "rate_limited"), before=(("press", b"PRESS"), ("other", b"PRESS")), after=9.9
    ),
    "the rate limit slides: 10 s later": Row(
        "sw", b"ON", ("ok", None), before=(("press", b"PRESS"), ("other", b"PRESS")), after=10
    ),
    # two guards fail: the earlier one answers
    "too_large before retained": Row("press", b"P" * 201, ("rejected", "too_large"), retained=True),
    "too_large before not_allowed": Row("ghost", b"P" * 201, ("rejected", "too_large")),
    "retained before not_allowed": Row("hidden", b"PRESS", ("rejected", "retained"), retained=True),
    "retained before a bad signature": Row("signed", signed(key=FORGED), ("rejected", "retained"), retained=True),
    "not_allowed before malformed": Row("hidden", b"\xff", ("rejected", "not_allowed")),
    "malformed before unavailable": Row("signed", b"{}", ("rejected", "malformed"), keyring=False),
    "unauthorized before expired": Row("signed", signed(key=FORGED, age=3600), ("rejected", "unauthorized")),
    "unauthorized before bad_value": Row("signed", signed("on", key=FORGED), ("rejected", "unauthorized")),
    "expired before replayed": Row(
        "signed",
        signed(nonce=NONCE, age=61),
        ("rejected", "expired"),
        before=(("signed", signed(nonce=NONCE)),),
        after=61,
    ),
    "replayed before bad_value (a refused value still spends its nonce)": Row(
        "signed", signed("on", nonce=NONCE), ("rejected", "replayed"), before=(("signed", signed("on", nonce=NONCE)),)
    ),
    "malformed before bad_value": Row("sw", b"O\x00N", ("rejected", "malformed")),
    "bad_value before armed": Row("armed", b"press", ("rejected", "bad_value")),
    "bad_value before cooldown": Row("cool", b"press", ("rejected", "bad_value"), before=(("cool", b"PRESS"),)),
    "cooldown before armed (refused at once, not armed)": Row(
        "armed",
        b"PRESS",
        ("rejected", "cooldown"),
        before=(("armed", b"PRESS"), ("armed", b"PRESS")),
        after=60,
    ),
    "cooldown before busy": Row(
        "slowcool", b"PRESS", ("rejected", "cooldown"), before=(("slowcool", b"PRESS"),), after=1
    ),
    "cooldown before rate_limited": Row(
        "cool", b"PRESS", ("rejected", "cooldown"), before=(("cool", b"PRESS"), ("other", b"PRESS")), after=1
    ),
    "busy before rate_limited": Row(
        "slow", b"PRESS", ("rejected", "busy"), before=(("slow", b"PRESS"), ("other", b"PRESS")), after=1
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_guard_chain(rigs, row: Row):
    rig = rigs(dry_run=row.dry_run, keyring=row.keyring)
    for command, payload in row.before:
        rig.send(command, payload)
    rig.tick(row.after)
    mark = len(rig.wire)
    rig.send(row.command, row.payload, row.retained)
    answers = rig.results(mark)
    status, reason = row.expect
    assert [(c, a["status"], a.get("reason")) for c, a in answers] == [(row.command, status, reason)]
    event = {"event_type": status, "command": None if row.command == "ghost" else row.command}
    event = {**event, "origin": "mqtt", **({"reason": reason} if reason else {})}
    if "nonce" in answers[0][1]:  # the signature verified: the audit names the key that signed
        event["kid"] = "k1"
    assert rig.audit(mark) == [event]


def test_the_table_covers_every_status_and_reason():
    """docs/security.md lists these; each is some row's answer."""
    answers = {row.expect for row in ROWS.values()}
    statuses = {status for status, _ in answers}
    reasons = {reason for _, reason in answers if reason}
    assert statuses >= {"ok", "rejected", "failed", "dry_run", "armed"}
    assert reasons == {
        "malformed",
        "too_large",
        "retained",
        "unauthorized",
        "expired",
        "replayed",
        "not_allowed",
        "bad_value",
        "cooldown",
        "busy",
        "unavailable",
        "rate_limited",
        "exit_status",
    }


# ------------------------------------------------------------------ the order of busy and the rate limit


def test_only_commands_that_start_spend_the_rate_limit(rigs):
    """The rate limit is the last guard: a press refused `busy` or `cooldown`, or one that only arms,
    starts nothing and spends none of the budget. Checked before `busy`, it would let a flood at a
    running command (no key needed) use up the budget and lock out every other command."""
    rig = rigs()  # rate_limit: 2 per 10 s
    rig.send("slow", b"PRESS")  # 1 of 2, still running
    for _ in range(5):
        rig.send("slow", b"PRESS")
    rig.send("armed", b"PRESS")
    rig.send("cool", b"PRESS")  # 2 of 2
    rig.send("cool", b"PRESS")
    rig.send("press", b"PRESS")
    answers = [(c, a["status"], a.get("reason")) for c, a in rig.results()]
    assert answers == [
        ("slow", "rejected", "busy"),
        ("slow", "rejected", "busy"),
        ("slow", "rejected", "busy"),  # two more `busy` counted, not answered (3 replies in 3 s)
        ("armed", "armed", None),
        ("cool", "ok", None),
        ("cool", "rejected", "cooldown"),
        ("press", "rejected", "rate_limited"),
    ]
    assert rig.svc.guards.stats.rejected == {"busy": 5, "cooldown": 1, "rate_limited": 1}


# ------------------------------------------------------------------ each promise of docs/security.md


SIGNED_EVERYWHERE = """pilot: 1
device: {id: d, name: D}
policies: {require_signed: REQUIRED, hmac: {keyring: {ring}}}
commands:
  press: {action: process.run, args: {argv: [/bin/true]}}
"""


def test_require_signed_refuses_a_bare_command_that_does_not_ask_for_a_signature(rigs):
    rig = rigs(SIGNED_EVERYWHERE.replace("REQUIRED", "true"))
    rig.send("press", b"PRESS")
    rig.tick(1)  # rejections of keyless senders: one answer a second
    rig.send("press", signed("PRESS", "press"))
    assert [(a["status"], a.get("reason")) for _, a in rig.results()] == [("rejected", "malformed"), ("ok", None)]
    assert [call["argv"] for call in rig.system.calls] == [("/bin/true",)]

    rig = rigs(SIGNED_EVERYWHERE.replace("REQUIRED", "false"))
    rig.send("press", b"PRESS")
    assert [(a["status"], a.get("reason")) for _, a in rig.results()] == [("ok", None)]


FOUR_SLOW = """pilot: 1
device: {id: d, name: D}
commands:
  s1: {action: process.run, args: {argv: [/bin/sleep, "60"]}}
  s2: {action: process.run, args: {argv: [/bin/sleep, "60"]}}
  s3: {action: process.run, args: {argv: [/bin/sleep, "60"]}}
  s4: {action: process.run, args: {argv: [/bin/sleep, "60"]}}
  press: {action: process.run, args: {argv: [/bin/true]}}
"""


def test_a_fifth_concurrent_action_is_busy(rigs):
    """At most four actions run at once: a fifth command, on any topic, is refused `busy`."""
    rig = rigs(FOUR_SLOW)
    for command in ("s1", "s2", "s3"):
        rig.send(command, b"PRESS")
    rig.send("press", b"PRESS")  # three running: a fourth may start
    rig.send("s4", b"PRESS")
    rig.send("press", b"PRESS")
    assert [(c, a["status"], a.get("reason")) for c, a in rig.results()] == [
        ("press", "ok", None),
        ("press", "rejected", "busy"),
    ]
    assert sorted(rig.svc.guards.running) == ["s1", "s2", "s3", "s4"]
    rig.system.release()
    with rig.svc.guards.running.changed:
        assert rig.svc.guards.running.changed.wait_for(lambda: not rig.svc.guards.running, 20)
    rig.send("press", b"PRESS")
    assert [a["status"] for c, a in rig.results() if c == "press"] == ["ok", "rejected", "ok"]


def test_a_failed_action_answers_exit_status_with_the_program_and_its_code(rigs):
    rig = rigs()
    rig.send("failing", b"PRESS")
    [(_, answer)] = rig.results()
    assert answer == {
        "status": "failed",
        "reason": "exit_status",
        "detail": "/bin/false exited 1",
        "ts": 1_700_000_000,
    }
    assert rig.svc.guards.stats.failed == 1 and rig.svc.guards.stats.executed == 0


def test_stopping_the_agent_interrupts_a_running_action(rigs):
    rig = rigs()
    rig.send("slow", b"PRESS")
    rig.svc.stop(timeout=10)
    assert [(c, a["status"]) for c, a in rig.results()] == [("slow", "interrupted")]
    assert rig.audit() == [{"event_type": "interrupted", "command": "slow", "origin": "mqtt"}]


def test_dry_run_answers_the_exact_calls_and_performs_none(rigs):
    rig = rigs(dry_run=True)
    rig.send("sw", b"ON")
    [(_, answer)] = rig.results()
    assert answer["status"] == "dry_run"
    assert [call["argv"] for call in answer["calls"]] == [["/bin/echo", "ON"]]
    assert rig.system.calls == []
    assert rig.svc.guards.stats.dry_run == 1


def test_ok_performs_the_planned_calls_and_publishes_the_state(rigs):
    rig = rigs()
    rig.send("sw", b"ON")
    assert [call["argv"] for call in rig.system.calls] == [("/bin/echo", "ON")]
    assert ("pilot/d/cmd/sw/state", "ON") in rig.wire
    [(_, answer)] = rig.results()
    assert answer == {"status": "ok", "ts": 1_700_000_000}  # no nonce, no sig: the command was not signed


def test_an_answer_to_a_signed_command_echoes_its_nonce_and_is_signed(rigs):
    rig = rigs()
    rig.send("signed", signed("ON", nonce=NONCE))
    [(_, answer)] = rig.results()
    assert answer["status"] == "ok" and answer["nonce"] == NONCE
    key = rig.signer.keys["k1"]
    assert signing.verify_result(answer, key, "d", "pilot/d/cmd/signed/set", NONCE)
    assert not signing.verify_result(answer, FORGED, "d", "pilot/d/cmd/signed/set", NONCE)


def named(value: str, by: str | None, *, key: signing.Key | None = None, command: str = "signed"):
    """A signed envelope that names who pressed."""

    def make(rig: Rig) -> bytes:
        k = key or rig.signer.keys["k1"]
        env = signing.sign(k, "d", f"pilot/d/cmd/{command}/set", value, ts=int(rig.clock["wall"]), by=by)
        return json.dumps(env).encode()

    return make


def test_the_audit_of_a_verified_signed_command_names_its_key_and_who_pressed(rigs, caplog):
    rig = rigs()
    caplog.set_level("INFO", logger="pilot.commands")
    rig.send("signed", named("ON", "alice.ops@example-home_1"))
    rig.send("signed", named("on", "bob"))  # bad_value, after the signature: still named
    rig.tick(10)  # rate_limit: 2 per 10 s
    rig.send("signed", named("OFF", None))
    rig.send("press", b"PRESS")
    assert rig.audit() == [
        {"event_type": "ok", "command": "signed", "origin": "mqtt", "kid": "k1", "by": "alice.ops@example-home_1"},
        {
            "event_type": "rejected",
            "command": "signed",
            "origin": "mqtt",
            "reason": "bad_value",
            "kid": "k1",
            "by": "bob",
        },
        {"event_type": "ok", "command": "signed", "origin": "mqtt", "kid": "k1"},
        {"event_type": "ok", "command": "press", "origin": "mqtt"},
    ]
    executed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("executed ")]
    assert [m.split(":")[0] for m in executed] == [
        "executed signed (mqtt, kid k1, by alice.ops@example-home_1)",
        "executed signed (mqtt, kid k1)",
        "executed press (mqtt)",
    ]


def test_a_name_that_proved_no_key_is_never_audited(rigs):
    """A forged or unverified envelope's `kid` and `by` are a stranger's claims: the audit leaves them out."""
    rig = rigs()
    rig.send("signed", named("ON", "alice", key=FORGED))  # unauthorized
    rig.tick(1)
    forged = json.loads(named("ON", "alice")(rig))
    forged["by"] = "mallory"  # changed after signing
    rig.send("signed", json.dumps(forged).encode())
    rig.tick(1)
    rig.send("signed", named("ON", "alice", key=STRANGER))
    rig.tick(1)
    bad = json.loads(named("ON", "alice")(rig))
    bad["by"] = "mallory\nexecuted shutdown"
    rig.send("signed", json.dumps(bad).encode())  # malformed
    assert [(e["reason"], sorted(e)) for e in rig.audit()] == [
        ("unauthorized", ["command", "event_type", "origin", "reason"]),
        ("unauthorized", ["command", "event_type", "origin", "reason"]),
        ("unauthorized", ["command", "event_type", "origin", "reason"]),
        ("malformed", ["command", "event_type", "origin", "reason"]),
    ]
    assert rig.system.calls == []


def test_no_answer_or_audit_event_echoes_the_payload(rigs):
    """Whatever is refused or run, the answers and audit events carry decisions, never what was sent."""
    rig = rigs()
    mark = SECRET_MARK
    rig.send("sw", mark.encode())  # bad_value
    rig.send("level", mark.encode())
    rig.send("note", mark.encode())  # ok: the text is the value
    rig.send("signed", signed(mark))  # bad_value, after the signature
    rig.send("failing", b"PRESS")
    keyless = [  # one answer a second to these: a tick before each
        ("note", (mark + "\x00").encode()),  # malformed
        ("note", (mark * 30).encode()),  # too_large
        (mark, b"PRESS"),  # not_allowed, on a topic named by the sender
        ("signote", signed(mark + "\x1b", "signote")),  # malformed text, after the signature
        ("signed", signed(mark, key=FORGED)),  # unauthorized
        ("signed", json.dumps({"v": 1, "cmd": mark}).encode()),  # malformed envelope
    ]
    for command, payload in keyless:
        rig.tick(1)
        rig.send(command, payload)
    answered = [p for t, p in rig.wire if t.endswith("/result") or t == "pilot/d/audit"]
    assert len(answered) == 2 * 11
    assert not [p for p in answered if mark in p]


def test_a_confirm_press_during_its_cooldown_is_refused_and_arms_nothing(rigs):
    rig = rigs()
    rig.send("armed", b"PRESS")
    rig.send("armed", b"PRESS")  # confirmed: runs, and the hour of cooldown starts
    rig.tick(1800)
    rig.send("armed", b"PRESS")  # refused at once, not armed
    rig.tick(1800)
    rig.send("armed", b"PRESS")  # had the refused press armed, this one would run
    assert [(a["status"], a.get("reason")) for _, a in rig.results()] == [
        ("armed", None),
        ("ok", None),
        ("rejected", "cooldown"),
        ("armed", None),
    ]
    assert len(rig.system.calls) == 1


def test_armed_answers_say_how_long_the_confirmation_may_take(rigs):
    rig = rigs()
    rig.send("armed", b"PRESS")
    assert rig.results() == [("armed", {"status": "armed", "confirm_within": 20.0, "ts": 1_700_000_000})]


# ------------------------------------------------------------------ reply throttles


def statuses(rig: Rig, since: int = 0) -> list[str | None]:
    return [a.get("reason", a["status"]) for _, a in rig.results(since)]


def test_an_unsigned_command_is_answered_at_most_three_times_in_three_seconds(rigs):
    rig = rigs()
    for _ in range(10):
        rig.send("sw", b"maybe")
    assert statuses(rig) == ["bad_value"] * 3
    rig.tick(2.99)
    rig.send("sw", b"maybe")
    rig.send("pick", b"z")  # another command has its own three
    assert statuses(rig) == ["bad_value"] * 4
    rig.tick(0.01)  # three seconds after the burst
    mark = len(rig.wire)
    for _ in range(10):
        rig.send("sw", b"maybe")
    assert statuses(rig, mark) == ["bad_value"] * 3
    assert rig.svc.guards.stats.rejected == {"bad_value": 22}  # each counted, answered or not
    assert rig.svc.guards.stats.replies_suppressed == 15


def test_armed_answers_count_among_an_unsigned_commands_three(rigs):
    rig = rigs()
    for _ in range(2):
        rig.send("armed", b"nope")
    rig.send("armed", b"PRESS")
    rig.send("armed", b"nope")
    assert statuses(rig) == ["bad_value", "bad_value", "armed"]


def test_senders_without_a_key_get_one_answer_a_second_overall(rigs):
    """Junk on any topic, bad signatures and replays share one budget: one answer a second."""
    rig = rigs()
    rig.send("signed", signed(nonce=NONCE))  # ok: answers to a proven key are never throttled
    junk = [
        ("ghost", b"PRESS"),  # not_allowed
        ("press", b"\xff"),  # malformed
        ("signed", signed(key=FORGED)),  # unauthorized
        ("signed", signed(nonce=NONCE)),  # replayed
        ("press", b"PRESS" * 50),  # too_large
    ]
    for command, payload in junk:
        rig.send(command, payload)
    assert statuses(rig) == ["ok", "not_allowed"]
    rig.tick(0.99)
    for command, payload in junk:
        rig.send(command, payload)
    assert statuses(rig) == ["ok", "not_allowed"]
    for command, payload in reversed(junk):
        rig.tick(1.0)
        rig.send(command, payload)
    assert statuses(rig) == ["ok", "not_allowed", "too_large", "replayed", "unauthorized", "malformed", "not_allowed"]
    assert rig.svc.guards.stats.replies_suppressed == 9


def test_rejections_after_a_verified_signature_are_always_answered(rigs):
    """Whoever proved a key is owed every answer: only keyless senders are throttled."""
    rig = rigs()
    for _ in range(6):
        rig.send("signed", signed("maybe"))
    assert statuses(rig) == ["bad_value"] * 6
    assert all(a["nonce"] and a["sig"] for _, a in rig.results())


# ------------------------------------------------------------------ the rest of CommandService's interface


def test_a_topic_outside_the_command_tree_is_answered_on_the_unknown_result_topic(rigs):
    rig = rigs()
    rig.svc.handle("pilot/d/cmd/a/b/set", b"PRESS", False)
    rig.tick(1)
    rig.svc.handle("pilot/other/cmd/press/set", b"PRESS", False)
    topics = [(t, json.loads(p).get("reason")) for t, p in rig.wire if t.endswith("/result")]
    assert topics == [("pilot/d/cmd/_unknown/result", "not_allowed")] * 2
    assert rig.audit()[0] == {"event_type": "rejected", "command": None, "origin": "mqtt", "reason": "not_allowed"}


def test_an_action_that_refuses_its_value_fails_unavailable_with_why(rigs):
    """The action's own check of the value (an option-like text for a program's argument) is the
    last word: `failed` / `unavailable`, with the action's reason in `detail`."""
    text = PROFILE + '  opt: {action: process.run, args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}, '
    text += "platform: text}\n"
    rig = rigs(text.replace("allow: [", "allow: [opt, "))
    rig.send("opt", b"-rf")
    [(_, answer)] = rig.results()
    assert (answer["status"], answer["reason"]) == ("failed", "unavailable")
    assert "put '--' before it in argv" in answer["detail"]
    assert rig.system.calls == []


def test_a_system_error_fails_unavailable_with_the_error_and_frees_the_command(rigs):
    rig = rigs()

    def broken(call):
        raise OSError("no such program")

    rig.system.perform = broken
    rig.send("press", b"PRESS")
    assert rig.results() == [
        ("press", {"status": "failed", "reason": "unavailable", "detail": "no such program", "ts": 1_700_000_000})
    ]
    assert not rig.svc.guards.running and rig.svc.guards.stats.failed == 1


def test_an_unexpected_error_is_answered_failed_once_a_second_and_never_raised(rigs):
    """A bug (here a plan no compiler would write: a number whose min is text) is answered, at most
    once a second, instead of killing paho's thread with a traceback per message."""
    rig = rigs()
    broken = [
        replace(c, entity=replace(c.entity, extra={"min": "one"})) if c.id == "level" else c
        for c in rig.svc.plan.commands
    ]
    rig.svc = CommandService(
        replace(rig.svc.plan, commands=tuple(broken)),
        rig.svc.publish,
        rig.system,
        rig.svc.state_dir,
        wall=rig.svc.wall,
        mono=rig.svc.mono,
        guards=rig.svc.guards,
    )
    for _ in range(3):
        rig.send("level", b"5")
    rig.tick(1)
    rig.send("level", b"5")
    assert [a for _, a in rig.results()] == [
        {"status": "failed", "reason": "unavailable", "ts": 1_700_000_000},
        {"status": "failed", "reason": "unavailable", "ts": 1_700_000_001},
    ]
    assert rig.audit()[0] == {"event_type": "failed", "command": "level", "origin": "mqtt", "reason": "unavailable"}
    assert rig.svc.guards.stats.replies_suppressed == 2


def test_dry_run_shows_environment_variables_by_name_only(rigs):
    text = PROFILE + "  envy: {action: process.run, args: {argv: [/bin/true], env: {TOKEN: s3cr3t-value}}}\n"
    rig = rigs(text.replace("allow: [", "allow: [envy, "), dry_run=True)
    rig.send("envy", b"PRESS")
    [(_, answer)] = rig.results()
    [call] = answer["calls"]
    assert ["TOKEN", "<redacted>"] in call["env"]
    assert all(value == "<redacted>" for _, value in call["env"])
    assert "s3cr3t-value" not in json.dumps(answer)


def test_a_number_is_applied_and_its_state_published_as_given(rigs):
    rig = rigs()
    rig.send("level", b"5")
    rig.send("press", b"PRESS")
    assert [call["argv"] for call in rig.system.calls] == [("/bin/echo", "5"), ("/bin/true",)]
    assert [(t, p) for t, p in rig.wire if t.endswith("/state")] == [("pilot/d/cmd/level/state", "5")]
    assert rig.svc.guards.stats.executed == 2


def test_a_rule_runs_a_command_without_confirmation_under_the_other_guards(rigs):
    rig = rigs()
    rig.svc.run_local("armed", None, "rule:hot")  # a confirm command runs at once for a rule
    rig.settle()
    rig.svc.run_local("armed", None, "rule:hot")  # its cooldown still holds
    rig.svc.run_local("hidden", None, "schedule:night")  # and the allowlist
    rig.svc.run_local("level", 3, "rule:hot")
    rig.settle()
    assert [(c, a["status"], a.get("reason")) for c, a in rig.results()] == [
        ("armed", "ok", None),
        ("armed", "rejected", "cooldown"),
        ("hidden", "rejected", "not_allowed"),
        ("level", "ok", None),
    ]
    assert [e["origin"] for e in rig.audit()] == ["rule:hot", "rule:hot", "schedule:night", "rule:hot"]
    assert [call["argv"] for call in rig.system.calls] == [("/bin/true",), ("/bin/echo", "3")]


def test_a_retired_service_answers_busy_and_leaves_a_signed_commands_nonce_unspent(rigs):
    """On reload the old service accepts nothing new; the same envelope works on the new one."""
    old = rigs()
    old.svc.retire()
    envelope = signed(nonce=NONCE)(old)
    old.send("signed", envelope)
    old.send("press", b"PRESS")
    assert [(a["status"], a.get("reason")) for _, a in old.results()] == [("rejected", "busy")] * 2
    assert old.results()[0][1]["nonce"] == NONCE  # the signature verified: the answer is for its sender
    new = CommandService(
        old.svc.plan,
        old.svc.publish,
        old.system,
        old.svc.state_dir,
        guards=old.svc.guards,
        wall=old.svc.wall,
        mono=old.svc.mono,
    )
    mark = len(old.wire)
    new.handle("pilot/d/cmd/signed/set", envelope, False)
    old.settle()
    assert [(a["status"], a.get("reason")) for _, a in old.results(mark)] == [("ok", None)]
    new.stop()


def test_control_commands_get_the_size_retained_and_signature_guards(rigs):
    topic = "pilot/d/cmd/_reload/set"
    rig = rigs(SIGNED_EVERYWHERE.replace("REQUIRED", "false"))
    assert rig.svc.verify_control(topic, b"PRESS", False) == (None, None)
    assert rig.svc.verify_control(topic, b"PRESS", True) == ("retained", None)
    assert rig.svc.verify_control(topic, b"P" * 4097, False) == ("too_large", None)
    assert rig.svc.verify_control(topic, b"P" * 4096, False) == (None, None)

    rig = rigs(SIGNED_EVERYWHERE.replace("REQUIRED", "true"))
    key = rig.signer.keys["k1"]
    good = json.dumps(signing.sign(key, "d", topic, "PRESS", ts=int(WALL), nonce=NONCE)).encode()
    assert rig.svc.verify_control(topic, b"PRESS", False) == ("malformed", None)
    forged = json.dumps(signing.sign(FORGED, "d", topic, "PRESS", ts=int(WALL))).encode()
    assert rig.svc.verify_control(topic, forged, False) == ("unauthorized", None)
    assert rig.svc.verify_control(topic, good, True) == ("retained", None)
    assert rig.svc.verify_control(topic, good, False) == (None, NONCE)
    assert rig.svc.verify_control(topic, good, False) == ("replayed", NONCE)
