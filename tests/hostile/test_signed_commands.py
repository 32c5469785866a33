"""Hostile input on the signed command path (issue "Hostile input, round two", signed command part).

Each test reproduces one failure against the real agent (`pilot run`, actions recorded with
PILOT_SYSTEM_RECORD, never performed) on a real Mosquitto, and checks the class of fix rather than
the one payload: a short write to the nonce log (RLIMIT_FSIZE on the agent process, the same short
`write()` a full disk gives) must not let a command run twice after a restart; an unreadable nonce
log is an error, not a skipped line; a lone surrogate in `cmd` and every non-canonical spelling of
an envelope are `malformed`; `pilot send` believes only answers signed with its key; dry-run
results do not publish environment values; a reload neither drops a command nor forgets a nonce;
the keyring is opened without following links and must belong to the service user.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pilot.actions._base import Outcome, System
from pilot.agent import signing
from testkit.agent import REPO, Signer, new_keyring, pilot_run, recorded_calls
from testkit.broker import Mosquitto, Watcher

DEVICE = "sigrig01"
BASE = f"pilot/{DEVICE}"
SECRET_ENV = "s3cret-token-value-7f3a"
RECORD_LINE = re.compile(r"[A-Za-z0-9_-]{22} [0-9]+")
B64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


class Recorder(System):
    """The machine, recorded: every call kept, none performed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list = []

    def perform(self, call):
        self.calls.append(call)
        return Outcome()


def profile_text(keyring: Path, window: int = 60) -> str:
    return (
        "pilot: 1\n"
        f"device: {{id: {DEVICE}, name: Signed rig}}\n"
        "sensors:\n  cpu: {probe: cpu.percent, every: 30s}\n"
        "commands:\n"
        "  shutdown: {action: power.shutdown, platform: button, policy: {signed: true}}\n"
        "  backup: {action: process.run, platform: button,\n"
        f"           args: {{argv: [/bin/echo, backup], env: {{API_TOKEN: {SECRET_ENV}}}}}}}\n"
        "policies:\n"
        "  allow: [shutdown, backup]\n"
        f"  hmac: {{keyring: {keyring}, window: {window}s}}\n"
        "  rate_limit: {max: 1000, per: 1m}\n"
    )


# ------------------------------------------------------------ fixtures: the agent (broker, watcher: conftest.py)


class Rig:
    """The agent of one test: its profile, keyring, state directory and recorded calls."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, watcher: Watcher) -> None:
        self.tmp, self.broker, self.watcher = tmp_path, broker, watcher
        self.keyring = new_keyring(tmp_path / "keyring")
        self.profile = tmp_path / "signed.yaml"
        self.profile.write_text(profile_text(self.keyring))
        self.state = tmp_path / "state"
        self.record = tmp_path / "calls.jsonl"
        self.signer = Signer(self.keyring, DEVICE, BASE)
        self.agents: list = []
        self.agent = None

    @property
    def nonce_log(self) -> Path:
        return self.state / "nonces.log"

    def start(self, *extra: str, keyring_env: dict | None = None):
        started = time.monotonic()
        self.agent = pilot_run(
            self.profile, self.broker.port, self.state, *extra, env={"PILOT_SYSTEM_RECORD": str(self.record)}
        ).start()
        self.agents.append(self.agent)
        online = self.watcher.wait_for(
            lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=30, since=started
        )
        assert online, self.agent.tail()
        time.sleep(0.3)  # the watcher's subscription settles; the agent subscribes before `online`
        return self.agent

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()

    def send(self, command: str, payload: str | bytes, *, nonce: str | None = None, timeout: float = 10) -> dict:
        """Publish and wait for the answer (the one echoing `nonce` when given)."""
        since = time.monotonic()
        self.watcher.publish(f"{BASE}/cmd/{command}/set", payload)

        def match(m) -> bool:
            if m.topic != f"{BASE}/cmd/{command}/result":
                return False
            return nonce is None or json.loads(m.payload).get("nonce") == nonce

        msg = self.watcher.wait_for(match, timeout=timeout, since=since)
        assert msg is not None, f"no answer to {payload!r}\n{self.agent.tail() if self.agent else ''}"
        return json.loads(msg.payload)

    def send_signed(self, env: dict) -> dict:
        return self.send("shutdown", json.dumps(env), nonce=env["nonce"])

    def executions(self) -> int:
        return len(recorded_calls(self.record))


@pytest.fixture
def rig(tmp_path, broker, watcher):
    r = Rig(tmp_path, broker, watcher)
    yield r
    for agent in r.agents:
        agent.stop()


def _records(path: Path) -> list[str]:
    data = path.read_bytes()
    assert data.endswith(b"\n") or not data, data[-80:]
    return data.decode().splitlines()


# ------------------------------------------------------------------ 1. durable nonces


def test_a_short_nonce_write_is_rolled_back_and_no_command_runs_twice_after_a_restart(rig):
    """Was: a short write left a partial line, the next record was glued onto it, and after a restart
    `_load` skipped the merged line, so re-publishing that envelope executed it a second time."""
    agent = rig.start()
    first = rig.signer.sign("shutdown")
    assert rig.send_signed(first)["status"] == "ok"
    per_command = rig.executions()
    assert per_command >= 1
    size = rig.nonce_log.stat().st_size
    soft, hard = resource.prlimit(agent.pid, resource.RLIMIT_FSIZE)
    # the next record (23 + 1 + 10 + 1 bytes) fits only partly: write() returns short, then EFBIG
    # (Python ignores SIGXFSZ, so the agent gets the error rather than being killed)
    resource.prlimit(agent.pid, resource.RLIMIT_FSIZE, (size + 7, hard))
    try:
        cut = rig.signer.sign("shutdown")
        body = rig.send_signed(cut)
    finally:
        resource.prlimit(agent.pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert body["status"] == "rejected" and body["reason"] == "unavailable", body
    assert rig.nonce_log.stat().st_size == size, "the partial record was not rolled back"
    after = rig.signer.sign("shutdown")
    assert rig.send_signed(after)["status"] == "ok"
    lines = _records(rig.nonce_log)
    assert all(RECORD_LINE.fullmatch(line) for line in lines), lines
    assert [line.split()[0] for line in lines] == [first["nonce"], after["nonce"]]

    rig.stop()
    rig.start()
    for env in (first, after):  # both ran once: after a restart they are replays
        body = rig.send_signed(env)
        assert body["status"] == "rejected" and body["reason"] == "replayed", body
        time.sleep(1.05)  # a replayer holds no key: its answers come at most once a second
    assert rig.send_signed(cut)["status"] == "ok"  # it never ran: its nonce was never admitted
    assert rig.executions() == 3 * per_command
    assert "Traceback" not in rig.agent.output()


@pytest.mark.parametrize(
    "damage",
    [
        "glued",  # a partial record with the next one appended to it (what the short write left)
        "torn tail",  # a record cut short, no newline
        "split nonce",  # a nonce written with a trailing newline: two lines, neither a record
        "not text",
    ],
)
def test_an_unreadable_nonce_record_at_start_refuses_signed_commands_with_a_logged_reason(rig, damage):
    one, two = rig.signer.sign("shutdown"), rig.signer.sign("shutdown")
    good = f"{one['nonce']} {one['ts']}\n"
    broken = {
        "glued": f"{one['nonce']} 17{two['nonce']} {two['ts']}\n",
        "torn tail": f"{good}{two['nonce']} {str(two['ts'])[:4]}",
        "split nonce": f"{good}{two['nonce']}\n {two['ts']}\n",
        "not text": f"{good}\udcff{two['nonce']} {two['ts']}\n",
    }[damage]
    rig.state.mkdir(mode=0o700)
    rig.nonce_log.write_bytes(broken.encode("utf-8", "surrogateescape"))
    rig.nonce_log.chmod(0o600)
    rig.start()
    body = rig.send_signed(rig.signer.sign("shutdown"))
    assert body["status"] == "rejected" and body["reason"] == "unavailable", body
    assert rig.send_signed(two)["reason"] == "unavailable"  # never silently forgotten and run
    out = rig.agent.output()
    assert "nonce store" in out and "line " in out and "refused" in out, rig.agent.tail()
    assert rig.executions() == 0
    assert rig.send("backup", "PRESS")["status"] == "ok"  # unsigned commands are not affected
    assert "Traceback" not in out


# ------------------------------------------------------------------ 2. lone surrogates, and no traceback loop


@pytest.mark.parametrize("cmd", ["\\ud800", "\\udfff", "PRESS\\udc80", "\\ud83d"])
def test_a_lone_surrogate_in_cmd_is_malformed_audited_and_raises_nothing(rig, cmd):
    rig.start()
    since = time.monotonic()
    # JSON escapes, so the payload is valid UTF-8 and valid JSON; no key is needed to send it
    payload = f'{{"v":1,"kid":"k1","ts":{int(time.time())},"nonce":"{"A" * 22}","cmd":"{cmd}","sig":"{"A" * 43}"}}'
    for _ in range(2):  # each one used to be a traceback, and no answer at all
        body = rig.send("shutdown", payload)
        assert body == {"status": "rejected", "reason": "malformed", "ts": body["ts"]}, body
        time.sleep(1.05)  # unauthenticated rejections are answered once a second
    audit = rig.watcher.wait_for(lambda m: m.topic == f"{BASE}/audit", timeout=5, since=since)
    assert audit is not None and json.loads(audit.payload).get("reason") == "malformed"
    assert rig.send_signed(rig.signer.sign("shutdown"))["status"] == "ok"
    out = rig.agent.output()
    assert "Traceback" not in out and "UnicodeEncodeError" not in out, rig.agent.tail()


# ------------------------------------------------------------------ 3. envelope strictness


def _spellings(sig: str) -> list[str]:
    """The other spellings of a 43-character base64url signature: its last character's two unused bits."""
    index = B64.index(sig[-1])
    return [sig[:-1] + B64[(index & ~3) | low] for low in range(4) if (index & ~3) | low != index]


def test_non_canonical_envelopes_signed_with_the_real_key_are_malformed(rig):
    """Each of these verified before (or was written to the nonce log split over two lines)."""
    rig.start()
    key = rig.signer.keys["k1"]
    topic = f"{BASE}/cmd/shutdown/set"
    fresh = lambda **kw: signing.sign(key, DEVICE, topic, "PRESS", **kw)  # noqa: E731
    base = fresh()
    variants = [
        fresh(nonce=signing.b64url(os.urandom(16)) + "\n"),  # `$` accepted a trailing newline
        signing.sign(signing.Key("k1\n", key.secret), DEVICE, topic, "PRESS"),
        {**fresh(), "v": True},  # True == 1 in Python
        {**fresh(), "v": 1.0},
    ]
    env = fresh()
    variants.append(json.loads(json.dumps(env).replace(f'"ts": {env["ts"]}', f'"ts": {env["ts"]}.0')))
    variants += [{**base, "sig": other} for other in _spellings(base["sig"])]
    nonce = signing.b64url(os.urandom(15) + b"\x00")  # the last byte's low 4 bits land in unused bits
    odd = nonce[:-1] + B64[B64.index(nonce[-1]) | 1]
    variants.append(fresh(nonce=odd))
    before = rig.nonce_log.read_bytes() if rig.nonce_log.exists() else b""
    for variant in variants:
        body = rig.send("shutdown", json.dumps(variant))
        assert body["status"] == "rejected" and body["reason"] == "malformed", (variant, body)
        assert "nonce" not in body and "sig" not in body
        time.sleep(1.05)  # unauthenticated rejections are answered once a second
    dup = json.dumps(base)[:-1] + ', "cmd": "PRESS"}'  # a duplicate key: which one was signed?
    assert rig.send("shutdown", dup)["reason"] == "malformed"
    assert rig.executions() == 0
    assert (rig.nonce_log.read_bytes() if rig.nonce_log.exists() else b"") == before
    assert rig.send_signed(base)["status"] == "ok"  # the canonical spelling still works


def _signed_by(key: signing.Key, by: str, **fields) -> dict:
    """An envelope whose HMAC really covers `by`, whatever it holds (`signing.sign` refuses a bad name):
    the agent must refuse it for its shape, not for its signature."""
    import hashlib
    import hmac

    topic, ts, nonce = f"{BASE}/cmd/shutdown/set", int(time.time()), signing.b64url(os.urandom(16))
    canon = signing.canonical(key.kid, DEVICE, topic, ts, nonce, b"PRESS", by)
    sig = signing.b64url(hmac.new(key.secret, canon, hashlib.sha256).digest())
    return {"v": 1, "kid": key.kid, "ts": ts, "nonce": nonce, "cmd": "PRESS", "by": by, "sig": sig, **fields}


def test_a_forged_or_hostile_by_runs_nothing_and_is_never_audited(rig):
    """Nobody on the broker can put another name on a press, nor a line break into the audit or the log."""
    rig.start()
    key = rig.signer.keys["k1"]
    topic = f"{BASE}/cmd/shutdown/set"
    since = time.monotonic()
    good = signing.sign(key, DEVICE, topic, "PRESS", by="alice")
    cases = [
        ({**good, "by": "mallory"}, "unauthorized"),  # a captured press, renamed
        ({k: v for k, v in signing.sign(key, DEVICE, topic, "PRESS", by="alice").items() if k != "by"}, "unauthorized"),
        ({**signing.sign(key, DEVICE, topic, "PRESS"), "by": "mallory"}, "unauthorized"),  # a name added
        (_signed_by(key, "mallory\nexecuted shutdown (mqtt, kid k1, by root)"), "malformed"),
        (_signed_by(key, "mallory\x1b[2J"), "malformed"),
        (_signed_by(key, "mallory\u2028"), "malformed"),
        (_signed_by(key, "m" * 65), "malformed"),
        (_signed_by(key, ""), "malformed"),
    ]
    before = rig.nonce_log.read_bytes() if rig.nonce_log.exists() else b""
    for env, reason in cases:
        body = rig.send("shutdown", json.dumps(env))
        assert (body["status"], body.get("reason")) == ("rejected", reason), (env, body)
        assert "nonce" not in body and "sig" not in body
        time.sleep(1.05)  # unauthenticated rejections are answered once a second
    twice = json.dumps(signing.sign(key, DEVICE, topic, "PRESS", by="alice"))[:-1] + ', "by": "mallory"}'
    assert rig.send("shutdown", twice)["reason"] == "malformed"  # which one was signed?
    time.sleep(1.05)
    null = {**signing.sign(key, DEVICE, topic, "PRESS"), "by": None}  # a second spelling of "no name"
    assert rig.send("shutdown", json.dumps(null))["reason"] == "malformed"
    assert rig.executions() == 0
    assert (rig.nonce_log.read_bytes() if rig.nonce_log.exists() else b"") == before
    deadline = time.monotonic() + 10  # each audit event follows its answer
    while len(rig.watcher.on(f"{BASE}/audit", since=since)) < len(cases) + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    audits = [json.loads(m.payload) for m in rig.watcher.on(f"{BASE}/audit", since=since)]
    assert len(audits) == len(cases) + 2
    assert all("by" not in a and "kid" not in a for a in audits), audits
    assert "mallory" not in rig.agent.output()

    assert rig.send_signed(good)["status"] == "ok"  # the name as signed: run and named
    named = rig.watcher.wait_for(
        lambda m: m.topic == f"{BASE}/audit" and json.loads(m.payload).get("event_type") == "ok",
        timeout=10,
        since=since,
    )
    assert named is not None and json.loads(named.payload) == {
        "event_type": "ok",
        "command": "shutdown",
        "origin": "mqtt",
        "kid": "k1",
        "by": "alice",
    }
    assert rig.executions() == 1


# ------------------------------------------------------------------ 4. authenticated results


def _pilot_send(rig: Rig, *args: str, timeout: float = 3.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pilot",
            "send",
            str(rig.profile),
            *args,
            "--broker",
            f"127.0.0.1:{rig.broker.port}",
            "--state-dir",
            str(rig.tmp / "send-state"),
            "--timeout",
            str(timeout),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO / "engine")},
        capture_output=True,
        text=True,
        timeout=60,
    )


class Forger:
    """Anyone on the broker: answers every command on its result topic, as the agent would, without the key."""

    def __init__(self, port: int, answers) -> None:
        self.answers = answers
        self.seen: list[bytes] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"forger-{os.getpid()}-{id(self)}")
        self.client.on_connect = lambda c, *_: c.subscribe(f"{BASE}/cmd/+/set", 1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        time.sleep(0.3)

    def _on_message(self, client, userdata, msg) -> None:
        self.seen.append(msg.payload)
        try:
            nonce = json.loads(msg.payload).get("nonce")
        except (ValueError, AttributeError):
            nonce = None
        for body in self.answers(nonce):
            client.publish(msg.topic[: -len("/set")] + "/result", json.dumps(body), qos=1)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_pilot_send_refuses_forged_ok_answers_to_a_signed_command(rig):
    """Was: with no agent running, `{"status":"ok"}` from anyone made `pilot send ... shutdown` exit 0."""
    ts = int(time.time())
    forger = Forger(
        rig.broker.port,
        lambda nonce: [
            {"status": "ok", "ts": ts},  # no nonce
            {"status": "ok", "ts": ts, "nonce": nonce},  # the nonce is public: echoing it proves nothing
            {"status": "ok", "ts": ts, "nonce": nonce, "sig": signing.b64url(os.urandom(32))},
            {"status": "dry_run", "ts": ts, "nonce": nonce, "sig": "A" * 43},
        ],
    )
    try:
        done = _pilot_send(rig, "shutdown")
    finally:
        forger.stop()
    assert forger.seen, "the forger never saw the command"
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "FORGED" in done.stderr and "no authenticated result" in done.stderr, done.stderr


def test_pilot_send_takes_the_agents_signed_answer_and_flags_unsigned_commands(rig):
    rig.start()
    done = _pilot_send(rig, "shutdown", timeout=15)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "ok" and signing.canonical_b64url(body["sig"], 32)
    key = rig.signer.keys["k1"]
    assert signing.verify_result(body, key, DEVICE, f"{BASE}/cmd/shutdown/set", body["nonce"])
    assert not signing.verify_result(
        {**body, "status": "dry_run"}, key, DEVICE, f"{BASE}/cmd/shutdown/set", body["nonce"]
    )
    unsigned = _pilot_send(rig, "backup", timeout=15)
    assert unsigned.returncode == 0 and json.loads(unsigned.stdout)["status"] == "ok"
    assert "unauthenticated" in unsigned.stderr


# ------------------------------------------------------------------ 5. dry-run results


def test_dry_run_results_name_environment_variables_but_publish_no_values(rig):
    rig.start("--dry-run")
    body = rig.send("backup", "PRESS")
    assert body["status"] == "dry_run"
    env = dict(body["calls"][0]["env"])
    assert "API_TOKEN" in env and "PATH" in env, env
    assert set(env.values()) == {"<redacted>"}
    published = b"".join(m.payload for m in rig.watcher.messages)
    assert SECRET_ENV.encode() not in published
    assert os.environ["PATH"].encode() not in published


# ------------------------------------------------------------------ 6. reloads


def test_a_reload_keeps_the_nonce_store_and_answers_every_command_sent_across_it(rig):
    agent = rig.start()
    first = rig.signer.sign("shutdown")
    assert rig.send_signed(first)["status"] == "ok"
    rig.profile.write_text(profile_text(rig.keyring, window=120))  # a new window: the store stays the same

    sent: list[str] = []
    envelopes: dict[str, dict] = {}
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.is_set():
            env = rig.signer.sign("shutdown")
            sent.append(env["nonce"])
            envelopes[env["nonce"]] = env
            rig.watcher.publish(f"{BASE}/cmd/shutdown/set", json.dumps(env))
            stop.wait(0.05)

    since = time.monotonic()
    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        time.sleep(0.5)
        agent.signal(signal.SIGHUP)
        reloaded = rig.watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/_reload/result", timeout=30, since=since)
        time.sleep(0.5)
    finally:
        stop.set()
        sender.join()
    assert reloaded is not None and json.loads(reloaded.payload)["status"] == "ok", agent.tail()
    answers: dict[str, dict] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for m in rig.watcher.on(f"{BASE}/cmd/shutdown/result", since=since):
            body = json.loads(m.payload)
            answers.setdefault(body.get("nonce"), body)
        if all(n in answers for n in sent):
            break
        time.sleep(0.1)
    missing = [n for n in sent if n not in answers]
    assert not missing, f"{len(missing)} of {len(sent)} commands sent across a reload got no answer"
    outcomes = {answers[n]["status"] if answers[n]["status"] == "ok" else answers[n].get("reason") for n in sent}
    assert outcomes <= {"ok", "busy"}, outcomes
    body = rig.send_signed(first)  # admitted before the reload: the same store remembers it
    assert body["status"] == "rejected" and body["reason"] == "replayed", body
    lines = _records(rig.nonce_log)
    assert all(RECORD_LINE.fullmatch(line) for line in lines), lines
    logged = [line.split()[0] for line in lines]
    assert len(logged) == len(set(logged))
    ran = {n for n in sent if answers[n]["status"] == "ok"}
    # every command that ran was spent once; a `busy` spent its nonce only when it reached the live service
    # while the same action was still running (admitted before anything runs), never from the retired one
    assert {first["nonce"]} | ran <= set(logged) <= {first["nonce"]} | set(sent)
    unspent = [n for n in sent if n not in logged]
    assert all(answers[n].get("reason") == "busy" for n in unspent)
    for nonce in unspent[:3]:  # the retired service left these unspent: the very same envelope runs now
        assert rig.send_signed(envelopes[nonce])["status"] == "ok"


def test_a_retired_command_service_answers_busy_and_leaves_the_nonce_unspent(tmp_path):
    """In process: the service a reload replaces. A command that still reaches it is answered `busy`
    (signed, so `pilot send` believes it), and the same envelope runs on the next service."""
    from pilot.agent.commands import CommandService
    from tests.support.profiles import compile_text

    keyring = new_keyring(tmp_path / "keyring")
    plan = compile_text(profile_text(keyring), folder=tmp_path, name="signed.yaml", device_id=DEVICE)
    published: list[tuple[str, str]] = []
    system = Recorder()
    old = CommandService(plan, lambda t, p, q, r: published.append((t, p)), system, tmp_path / "state")
    old.retire()
    signer = Signer(keyring, DEVICE, BASE)
    env = signer.sign("shutdown")
    old.handle(f"{BASE}/cmd/shutdown/set", json.dumps(env).encode(), False)
    old.handle(f"{BASE}/cmd/backup/set", b"PRESS", False)
    results = [json.loads(p) for t, p in published if t.endswith("/result")]
    assert [(r["status"], r["reason"]) for r in results] == [("rejected", "busy")] * 2, results
    assert signing.verify_result(results[0], signer.keys["k1"], DEVICE, f"{BASE}/cmd/shutdown/set", env["nonce"])
    new = CommandService(
        plan, lambda t, p, q, r: published.append((t, p)), system, tmp_path / "state", guards=old.guards
    )
    assert new.guards.nonces is old.guards.nonces
    new.handle(f"{BASE}/cmd/shutdown/set", json.dumps(env).encode(), False)
    deadline = time.monotonic() + 5
    while new.guards.running and time.monotonic() < deadline:
        time.sleep(0.01)
    results = [json.loads(p) for t, p in published if t.endswith("/result")]
    assert results[-1]["status"] == "ok" and results[-1]["nonce"] == env["nonce"], results
    new.stop(timeout=1)


# ------------------------------------------------------------------ 7. the keyring


@pytest.mark.parametrize("how", ["symlink", "foreign owner", "group writable", "world readable"])
def test_a_keyring_that_is_a_link_foreign_or_shared_is_refused_with_its_reason(rig, how):
    real = rig.keyring
    expected = {
        "symlink": "is a symbolic link",
        "foreign owner": "owned by uid 4242",
        "group writable": "writable by others",
        "world readable": "readable by others",
    }[how]
    if how == "symlink":
        link = rig.tmp / "keyring-link"
        link.symlink_to(real)
        rig.profile.write_text(profile_text(link))
    elif how == "foreign owner":
        if os.geteuid() != 0:
            pytest.skip("giving a file to another user needs root")
        os.chown(real, 4242, -1)
    elif how == "group writable":
        real.chmod(0o620)
    else:
        real.chmod(0o604)
    env = rig.signer.sign("shutdown")
    rig.start()
    body = rig.send("shutdown", json.dumps(env))
    assert body["status"] == "rejected" and body["reason"] == "unavailable", body
    assert expected in rig.agent.output(), rig.agent.tail()
    assert rig.executions() == 0


# ------------------------------------------------------------------ 8. signed text is held to the same characters


def test_a_correctly_signed_text_whose_only_fault_is_a_control_character_is_malformed(tmp_path):
    """In process. The envelope verifies with the real key, fresh nonce, current time: its one fault is
    the terminal escape in `cmd`. The same envelope without that character is accepted and runs, so the
    refusal cannot come from a broken envelope."""
    from pilot.agent.commands import CommandService
    from tests.support.profiles import compile_text

    keyring = new_keyring(tmp_path / "keyring")
    text = profile_text(keyring).replace(
        "commands:\n",
        "commands:\n  say: {action: process.run, platform: text, policy: {signed: true},\n"
        '        args: {argv: [/bin/echo, "{value}"], value_arg: "{value}"}}\n',
    )
    text = text.replace("allow: [shutdown, backup]", "allow: [shutdown, backup, say]")
    plan = compile_text(text, folder=tmp_path, name="signed.yaml", device_id=DEVICE)
    published: list[tuple[str, str]] = []
    system = Recorder()
    svc = CommandService(plan, lambda t, p, q, r: published.append((t, p)), system, tmp_path / "state")
    signer = Signer(keyring, DEVICE, BASE)
    topic = f"{BASE}/cmd/say/set"

    def answer(value: str) -> dict:
        env = signer.sign("say", value)
        # the envelope is sound: it verifies with the key, now, on this topic
        assert signing.verify(env, signer.keys, DEVICE, topic, now=time.time(), window=60).cmd == value
        svc.handle(topic, json.dumps(env).encode(), False)
        deadline = time.monotonic() + 10
        while svc.guards.running and time.monotonic() < deadline:
            time.sleep(0.01)
        return [json.loads(p) for t, p in published if t == f"{BASE}/cmd/say/result"][-1]

    try:
        refused = answer("clear\x1b")
        assert (refused["status"], refused["reason"]) == ("rejected", "malformed"), refused
        assert system.calls == []
        accepted = answer("clear")
        assert accepted["status"] == "ok", accepted
        assert [call.argv for call in system.calls] == [("/bin/echo", "clear")]
    finally:
        svc.stop(timeout=1)
