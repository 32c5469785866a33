"""The agent's side of a signed profile deploy: `_profile/set` and `_profile/get` (pilot.agent.deploy).

On paho's thread only cheap checks run, in this order: size, retained, shape, keyring, signature,
the SHA-256 binding, one-at-a-time, and last the nonce (spent only for a request that will run).
The work runs on a thread of its own: the candidate text is compiled by the compile worker from a
temporary file in the profile's own folder (so relative paths resolve as they will), its start
needs are checked, the file is replaced atomically (the old one kept as `<profile>.previous`) and
the plan swapped in; when the MQTT settings changed, a new session must connect within the
deadline before it replaces the old one. Any failure restores the old file, plan and session and
answers `rolled_back`. The agent package never imports the compiler: the CLI hands in
`compile_file`.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilot.agent import deploy, policy, signing
from pilot.agent.mqtt import unreadable_files
from pilot.agent.reload import connection_changes
from pilot.agent.state import write_all
from pilot.plan import CompileResult, Plan

if TYPE_CHECKING:
    from pilot.agent.mqtt import Session
    from pilot.agent.runtime import Agent

log = logging.getLogger("pilot.deploy")

CONNECT_DEADLINE = 20.0  # seconds a new MQTT session has to connect before the deploy is rolled back
NONCES = "profile-nonces.log"  # its own log: the signature binds the deploy topics, no other command shares them
MAX_GET_BYTES = 4096  # a get request is a bare envelope
REDACTED = "<redacted>"
# keys whose inline value is a secret: answered as "<redacted>" by `_profile/get` (a `*_file` is a path)
SECRET_KEY = re.compile(r"(?i)(?:password|passwd|secret|token|api[_-]?key|authorization|credential|private[_-]?key)")
KEY_VALUE = re.compile(
    r"""(?P<key>[A-Za-z0-9_.-]+|"[^"\n]*"|'[^'\n]*')(?P<sep>\s*:[ \t]+)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\n]|'')*'?|[^\s,{}\[\]#][^,{}\[\]#\n]*)"""
)


def _secret_key(key: str) -> bool:
    if key.startswith('"') and "\\" in key:
        return True  # an escape may spell a secret's name (`"pass\\u0077ord"`): hidden, unread
    key = key.strip("'\"")
    return bool(SECRET_KEY.search(key)) and not key.lower().endswith(("_file", "-file"))


def _column(own: re.Match[str] | None, key: str, indent: int) -> int:
    """Where a secret's value ends: lines indented past its block key's column continue it (a key in a
    sequence item sits past the `- `); a key inside a flow mapping, past the line's own indentation."""
    return own.start("key") if own is not None and own["key"].strip("'\"") == key else indent


BLOCK_KEY = re.compile(r"""\s*(?:-\s+)?(?P<key>[A-Za-z0-9_.-]+|"[^"\n]*"|'[^'\n]*')\s*:(?:\s|$)""")
# a key whose value is not on its line (it follows, more indented), and an explicit key's `: value` line
EMPTY_VALUE = re.compile(r"""(?P<key>[A-Za-z0-9_.-]+|"[^"\n]*"|'[^'\n]*')\s*:[ \t]*(?:#.*)?$""")
EXPLICIT_VALUE = re.compile(r"""\s*(?:-\s+)*:(?:[ \t]+(?P<value>.*))?$""")


def redact(text: str) -> tuple[str, list[str]]:
    """The profile text with every inline value of a secret-looking key (password, token, secret,
    api_key...) replaced by "<redacted>", and the path of each (`commands.backup.args.env.API_TOKEN`;
    inside a flow mapping the path is the block keys around it and the secret's own key).
    Line based, so comments and layout survive and no YAML parser is loaded into the agent."""
    out, paths = [], []
    stack: list[tuple[int, str]] = []  # (indent, key) of the block mappings around the current line
    hidden_below: int | None = None  # the indent of a redacted block scalar (`token: |`): its lines go too
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if hidden_below is not None:
            if not stripped or indent > hidden_below:
                out.append(" " * indent + REDACTED if stripped else line)
                continue
            hidden_below = None
        if not stripped or stripped.startswith("#"):
            out.append(line)
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        own = BLOCK_KEY.match(line)
        own_key = own["key"].strip("'\"") if own is not None else None
        code = line  # a comment's `key: value` is redacted too: over-redacting costs nothing
        pieces, last = [], 0
        explicit = EXPLICIT_VALUE.match(code)  # `? key` then `: value`: the key is not on this line
        if explicit is not None and own is None:
            paths.append(".".join([k for _, k in stack] + ["?"]))
            hidden_below = indent  # what follows, more indented, is the same value
            if explicit["value"] and explicit["value"].strip() != REDACTED:
                pieces.append(code[: explicit.start("value")] + REDACTED)
                last = len(code)
        for match in KEY_VALUE.finditer(code) if explicit is None or own is not None else ():
            key = match["key"].strip("'\"")
            if not _secret_key(match["key"]) or match["value"].strip() == REDACTED:
                continue
            parents = [k for _, k in stack] + ([own_key] if own_key is not None and own_key != key else [])
            paths.append(".".join([*parents, key]))
            hidden_below = _column(own, key, indent)  # lines indented past it continue it (plain, quoted, `|`)
            pieces.append(code[last : match.start("value")] + REDACTED)
            last = match.end("value")
        empty = EMPTY_VALUE.search(code)
        if empty is not None and _secret_key(empty["key"]):  # `password:` with the value below
            key = empty["key"].strip("'\"")
            parents = [k for _, k in stack] + ([own_key] if own_key is not None and own_key != key else [])
            paths.append(".".join([*parents, key]))
            hidden_below = _column(own, key, indent)
        out.append("".join(pieces) + code[last:])
        if own_key is not None:
            stack.append((indent, own_key))
    return "\n".join(out), paths


@dataclass(frozen=True)
class Auth:
    """A verified request: its answer echoes the nonce and is signed with the key for `topic`."""

    nonce: str
    key: signing.Key
    topic: str
    by: str | None
    result_topic: str
    device: str  # the id the request was signed for: its answer is signed for it too, even after a rename


@dataclass
class Outcome:
    status: str
    reason: str | None = None
    profile_hash: str | None = None
    errors: list[str] | None = None
    detail: str | None = None

    @property
    def state(self) -> str:
        return {"ok": "applied", "rolled_back": "rolled_back"}.get(self.status, "rejected")


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: a temporary file in the same folder, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            signing.close_quietly(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        signing.close_quietly(dir_fd)


def _spawn(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="pilot-deploy", daemon=True).start()


class Deployer:
    """Answers `_profile/set` and `_profile/get` for one agent whose profile is the file `profile`
    (None: the agent runs a shipped pack, which no deploy may overwrite; requests answer
    `unavailable`). Clocks, the worker spawn and the wait for a new session are injected so that
    unit tests run every path without a thread or a sleep."""

    def __init__(
        self,
        agent: Agent,
        compile_file: Callable[[str], CompileResult],
        profile: str | os.PathLike[str] | None,
        *,
        connect_deadline: float = CONNECT_DEADLINE,
        lock: threading.Lock | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] = _spawn,
        wait_connected: Callable[[Session, float], bool] = lambda session, timeout: session.wait_connected(timeout),
    ) -> None:
        self.agent, self.compile_file = agent, compile_file
        self.profile = Path(profile).absolute() if profile is not None else None
        self.connect_deadline = connect_deadline
        self.lock = lock or threading.Lock()  # shared with the Reloader: never a reload in the middle of a deploy
        self.wall, self.mono, self.spawn, self.wait_connected = wall, mono, spawn, wait_connected
        self.junk = policy.RateLimit(1, 1.0, mono)  # answers to requests that proved no key: one a second
        self._running: str | None = None  # the nonce of the deploy being applied
        self._state_lock = threading.Lock()
        self._keys_for: tuple[Plan, dict[str, signing.Key], str | None] | None = None
        self._nonces: signing.NonceStore | None = None
        self.deploys = 0  # applied since start

    # ------------------------------------------------------------ keys and nonces
    def keys(self) -> tuple[dict[str, signing.Key], str | None]:
        """The keyring of the running plan (read once per plan): (keys, None) or ({}, why not)."""
        plan = self.agent.plan
        cached = self._keys_for
        if cached is not None and cached[0] is plan:
            return cached[1], cached[2]
        keys: dict[str, signing.Key] = {}
        error = None
        if not plan.policy.keyring:
            error = "the profile names no keyring (policies.hmac.keyring)"
        elif self.profile is None:
            error = "the agent runs a shipped pack, not a profile file"
        else:
            try:
                keys = signing.load_keyring(plan.policy.keyring)
            except (signing.KeyringError, ValueError) as exc:
                error = str(exc)
                log.error("profile deploys are refused until the keyring is fixed: %s", exc)
        self._keys_for = (plan, keys, error)
        return keys, error

    @property
    def available(self) -> bool:
        keys, error = self.keys()
        return error is None and bool(keys)

    def nonces(self) -> signing.NonceStore:
        window = self.agent.plan.policy.window
        if self._nonces is None:
            self._nonces = signing.NonceStore(self.agent.options.state_dir.path / NONCES, window, clock=self.mono)
        self._nonces.window = window
        return self._nonces

    # ------------------------------------------------------------ answers
    def _answer(self, topic: str, body: dict, auth: Auth | None, session: Session | None = None) -> None:
        ts = int(self.wall())
        body = {key: value for key, value in body.items() if value is not None}
        body["ts"] = ts
        if auth is not None:
            body["nonce"] = auth.nonce
            body["sig"] = signing.sign_result(
                auth.key, auth.device, auth.topic, auth.nonce, body["status"], body.get("reason"), ts
            )
        (session or self.agent.session).publish_result(topic, json.dumps(body, separators=(",", ":")), 1, False)

    def _junk(self, topic: str, op: str, reason: str) -> None:
        """An answer to a request that proved no key: unsigned, no nonce, at most one a second."""
        if self.junk.allow():
            self._answer(topic, {"status": "rejected", "reason": reason, "op": op}, None)
        else:
            self.agent.health.inbound_dropped += 1

    def _audit(self, op: str, status: str, reason: str | None, auth: Auth, sha256: str | None = None) -> None:
        event: dict[str, Any] = {"event_type": status, "command": f"_profile/{op}", "origin": "mqtt"}
        if reason:
            event["reason"] = reason
        event["kid"] = auth.key.kid
        if auth.by is not None:
            event["by"] = auth.by
        if sha256:
            event["sha256"] = sha256
        self.agent.session.publish_result(
            f"{self.agent.plan.topics.base}/audit", json.dumps(event, separators=(",", ":")), 0, False
        )

    # ------------------------------------------------------------ paho's thread
    def _authenticate(self, topic: str, envelope: dict, result: str, op: str) -> Auth | None:
        """The verified request, or None after answering why (unsigned and rate limited: no key proven)."""
        keys, error = self.keys()
        if error is not None or not keys:
            self._junk(result, op, "unavailable")
            return None
        plan = self.agent.plan
        try:
            verified = signing.verify(envelope, keys, plan.device.id, topic, now=self.wall(), window=plan.policy.window)
        except signing.Rejected as exc:
            self._junk(result, op, exc.reason)
            return None
        return Auth(verified.nonce, keys[verified.kid], topic, verified.by, result, plan.device.id)

    def _admit(self, auth: Auth, ts: int, op: str) -> bool:
        try:
            self.nonces().admit(auth.nonce, ts)
        except signing.Rejected as exc:
            self._answer(auth.result_topic, {"status": "rejected", "reason": exc.reason, "op": op}, auth)
            self._audit(op, "rejected", exc.reason, auth)
            return False
        return True

    def on_set(self, payload: bytes, retained: bool) -> None:
        """A message on `<base>/cmd/_profile/set`."""
        base = self.agent.plan.topics.base
        topic, result = deploy.set_topic(base), deploy.result_topic(base)
        if len(payload) > deploy.MAX_DEPLOY_BYTES:
            return self._junk(result, "set", "too_large")
        if retained:  # a retained deploy would apply again on every reconnect
            return self._junk(result, "set", "retained")
        try:
            request = deploy.parse_deploy(payload)
        except signing.Rejected as exc:
            return self._junk(result, "set", exc.reason)
        auth = self._authenticate(topic, request.envelope, result, "set")
        if auth is None:
            return None
        if not deploy.binds(request.envelope, request.text):
            # not signed back: anyone can pair a captured envelope with another text, and a signed
            # `bad_hash` with its nonce would answer the real sender before its own deploy does
            return self._junk(result, "set", "bad_hash")
        with self._state_lock:
            if self._running is not None:
                if self._running == auth.nonce:
                    return self._junk(result, "set", "replayed")  # the running deploy, sent again
                self._answer(result, {"status": "busy", "op": "set"}, auth)  # nonce unspent: send it again later
                return None
            if not self._admit(auth, request.envelope["ts"], "set"):
                return None
            self._running = auth.nonce
        self.spawn(lambda: self._work(request.text, auth))
        return None

    def on_get(self, payload: bytes, retained: bool) -> None:
        """A message on `<base>/cmd/_profile/get`: answered with the running file, secrets redacted."""
        base = self.agent.plan.topics.base
        topic, result = deploy.get_topic(base), deploy.result_topic(base)
        if len(payload) > MAX_GET_BYTES:
            return self._junk(result, "get", "too_large")
        if retained:
            return self._junk(result, "get", "retained")
        try:
            envelope = signing.parse_envelope(payload)
        except signing.Rejected as exc:
            return self._junk(result, "get", exc.reason)
        auth = self._authenticate(topic, envelope, result, "get")
        if auth is None:
            return None
        if envelope["cmd"] != deploy.GET_CMD:
            self._answer(result, {"status": "rejected", "reason": "malformed", "op": "get"}, auth)
            return None
        if not self._admit(auth, envelope["ts"], "get"):
            return None
        self.spawn(lambda: self._get(auth))
        return None

    # ------------------------------------------------------------ the worker
    def _get(self, auth: Auth) -> None:
        assert self.profile is not None  # `available` said so
        try:
            data = self._read(self.profile)
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            detail = "the profile file is not UTF-8" if isinstance(exc, UnicodeDecodeError) else exc.strerror
            self._answer(
                auth.result_topic,
                {
                    "status": "failed",
                    "reason": "unavailable",
                    "op": "get",
                    "detail": f"cannot read the profile file: {detail}",
                },
                auth,
            )
            self._audit("get", "failed", "unavailable", auth)
            return
        shown, redacted = redact(text)
        body = {
            "status": "ok",
            "op": "get",
            "profile": shown,
            "sha256": deploy.text_sha256(text),
            "name": self.profile.name,
            "redacted": redacted,
        }
        self._answer(auth.result_topic, body, auth)
        self._audit("get", "ok", None, auth)

    @staticmethod
    def _read(path: Path) -> bytes:
        with open(path, "rb") as handle:
            data = handle.read(deploy.MAX_DEPLOY_BYTES + 1)
        if len(data) > deploy.MAX_DEPLOY_BYTES:
            raise OSError(errno.EFBIG, f"larger than {deploy.MAX_DEPLOY_BYTES} bytes")
        return data

    def _work(self, text: str, auth: Auth) -> None:
        digest = deploy.text_sha256(text)
        try:
            with self.lock:
                outcome, old_session = self.apply(text)
        except Exception:  # never take the agent down: the running profile stays
            log.exception("the deploy failed; the running profile stays")
            outcome, old_session = (
                Outcome("failed", "unavailable", detail="an unexpected error; see the agent's log"),
                None,
            )
        finally:
            with self._state_lock:
                self._running = None
        body = {
            "status": outcome.status,
            "reason": outcome.reason,
            "op": "set",
            "profile_hash": outcome.profile_hash,
            "errors": outcome.errors,
            "detail": outcome.detail,
        }
        state = {
            "state": outcome.state,
            "reason": outcome.reason,
            "profile_hash": outcome.profile_hash,
            "sha256": digest,
            "kid": auth.key.kid,
            "by": auth.by,
            "ts": int(self.wall()),
        }
        state_text = json.dumps(state, separators=(",", ":"))
        # the state and the audit first: whoever hears the answer finds the device's state already told
        if old_session is not None:  # the old broker's listeners (the sender) hear it before it closes
            old_base = auth.result_topic.rsplit("/cmd/", 1)[0]  # the topics the request came on, before a rename
            old_session.publish_result(deploy.state_topic(old_base), state_text, 1, True)
            self._answer(auth.result_topic, body, auth, old_session)
            old_session.stop()
        self.agent.session.publish_result(deploy.state_topic(self.agent.plan.topics.base), state_text, 1, True)
        self._audit("set", outcome.status, outcome.reason, auth, digest)
        self._answer(auth.result_topic, body, auth)
        log.info(
            "profile deploy by kid %s%s: %s%s",
            auth.key.kid,
            f" ({auth.by})" if auth.by else "",
            outcome.status,
            f" ({outcome.reason})" if outcome.reason else "",
        )

    def apply(self, text: str) -> tuple[Outcome, Session | None]:
        """Validate, write, swap; on failure everything as it was. Returns the outcome and, after a
        switch to another session, the old one (still connected: the caller answers on it, then stops it)."""
        if self.profile is None:
            return Outcome("rejected", "unavailable"), None
        profile = self.profile
        old_plan = self.agent.plan
        candidate = profile.with_name(f".{profile.stem}.deploy-{secrets.token_hex(4)}{profile.suffix or '.yaml'}")
        try:
            write_atomic(candidate, text.encode("utf-8"))
            try:
                result = self.compile_file(str(candidate))
            finally:
                os.unlink(candidate)
        except (RuntimeError, OSError) as exc:
            log.error("deploy: cannot validate the new profile: %s", exc)
            return Outcome("failed", "unavailable", detail=f"cannot validate the new profile: {exc}"[:300]), None
        if result.plan is None:
            errors = [self._rename(d, candidate).text() for d in result.diagnostics if d.severity == "error"]
            errors = errors or [self._rename(d, candidate).text() for d in result.diagnostics]
            log.error("deploy refused, keeping the running profile:\n%s", "\n".join(errors[: deploy.MAX_ERRORS]))
            return Outcome("rejected", "invalid_profile", errors=errors[: deploy.MAX_ERRORS]), None
        why = self.start_problem(result.plan)
        if why:
            log.error("deploy rolled back: %s", why)
            return Outcome("rolled_back", "start_failed", detail=why), None
        try:
            old_bytes = self._read(profile)
            previous = profile.with_name(profile.name + ".previous")
            previous_bytes = self._read(previous) if previous.exists() else None
            mode = os.stat(profile).st_mode & 0o7777
            write_atomic(previous, old_bytes, mode)
            write_atomic(profile, text.encode("utf-8"), mode)
        except OSError as exc:
            log.error("deploy: cannot write the profile file: %s", exc)
            return Outcome("failed", "unavailable", detail=f"cannot write the profile file: {exc.strerror}"), None

        def restore() -> None:
            write_atomic(profile, old_bytes, mode)
            if previous_bytes is None:
                previous.unlink(missing_ok=True)
            else:
                write_atomic(previous, previous_bytes, mode)

        try:
            final = self.compile_file(str(profile))  # named as a restart would name it
        except (RuntimeError, OSError) as exc:
            final = CompileResult(None, ())
            log.error("deploy: cannot compile the written profile: %s", exc)
        if final.plan is None:
            restore()
            return Outcome("rolled_back", "start_failed", detail="the written profile did not compile again"), None
        new_plan = final.plan
        changed = connection_changes(old_plan, new_plan)
        if self.agent.options.pinned:  # --broker on the command line decides the host and port
            changed = [c for c in changed if c not in ("mqtt.host", "mqtt.port")]
        if not changed:
            return self._start(old_plan, new_plan, restore), None
        return self._switch(old_plan, new_plan, changed, restore)

    def _switch(
        self, old_plan: Plan, new_plan: Plan, changed: list[str], restore: Callable[[], None]
    ) -> tuple[Outcome, Session | None]:
        """A new MQTT session for changed connection settings, promoted only once it connected.
        Same broker and client id: the old session must leave first (the broker would drop one of
        two sessions with one id), and comes back fresh on a rollback."""
        agent = self.agent
        options = agent.options
        host, port = options.host, options.port
        if not options.pinned and new_plan.mqtt.host:
            host, port = new_plan.mqtt.host, new_plan.mqtt.port or 1883
        old = agent.session
        same = (host, port, new_plan.mqtt.client_id) == (options.host, options.port, old.settings.client_id)
        log.info("deploy: %s changed; trying a new MQTT session to %s:%d", ", ".join(changed), host, port)
        try:
            candidate = agent.new_session(new_plan, host, port)
        except (OSError, ValueError) as exc:
            restore()
            return Outcome("rolled_back", "start_failed", detail=f"the new MQTT settings cannot be used: {exc}"), None
        agent.switching = True  # the supervisor must not take the moment between two sessions for a dead thread
        try:
            return self._try_session(old_plan, new_plan, old, candidate, (host, port), same, restore)
        finally:
            agent.switching = False

    def _try_session(
        self,
        old_plan: Plan,
        new_plan: Plan,
        old: Session,
        candidate: Session,
        where: tuple[str, int],
        same: bool,
        restore: Callable[[], None],
    ) -> tuple[Outcome, Session | None]:
        agent, options = self.agent, self.agent.options
        before = (options.host, options.port)

        def back() -> None:  # the old file, session and plan
            candidate.stop()
            restore()
            options.host, options.port = before
            if same:
                agent.session = agent.new_session(old_plan, *before)
                agent.session.start()  # announces the old plan again on connect
            else:
                agent.session = old

        if same:
            old.stop()
        candidate.start()
        if not self.wait_connected(candidate, self.connect_deadline):
            why = candidate.stats.last_error or "no answer"
            back()
            detail = f"the new MQTT settings reached no broker within {self.connect_deadline:g} s ({why})"[:300]
            log.error("deploy rolled back: %s", detail)
            return Outcome("rolled_back", "broker_unreachable", detail=detail), None
        agent.session = candidate
        options.host, options.port = where
        outcome = self._start(old_plan, new_plan, back)
        return outcome, (old if outcome.status == "ok" and not same else None)

    def _start(self, old_plan: Plan, new_plan: Plan, back: Callable[[], None]) -> Outcome:
        """The new plan started; if it fails, `back` undoes the file (and session) and the old plan returns."""
        try:
            self.agent.reload(new_plan)
        except Exception as exc:
            log.exception("deploy: the new plan failed to start; rolling back")
            back()
            self._reload_quietly(old_plan)
            return Outcome("rolled_back", "start_failed", detail=f"the new plan failed to start: {exc}"[:300])
        self.deploys += 1
        return Outcome("ok", profile_hash=new_plan.profile_hash)

    def _reload_quietly(self, plan: Plan) -> None:
        try:
            self.agent.reload(plan)
        except Exception:
            log.exception("deploy: could not restore the previous plan")

    def start_problem(self, plan: Plan) -> str | None:
        """What would stop the new plan from starting or from taking the next deploy: a file its
        connection needs that cannot be read, or a keyring that cannot be loaded (a deploy that
        loses the keyring could never be corrected by another one)."""
        missing = unreadable_files(plan.mqtt)
        if missing:
            return f"the new profile needs a file that cannot be read: {missing[0]}"[:300]
        if not plan.policy.keyring:
            return "the new profile names no keyring (policies.hmac.keyring): no later deploy could reach the device"
        try:
            if not signing.load_keyring(plan.policy.keyring):
                return "the new profile's keyring holds no key"
        except (signing.KeyringError, ValueError) as exc:
            return f"the new profile's keyring cannot be used: {exc}"[:300]
        return None

    def _rename(self, diagnostic: Any, candidate: Path) -> Any:
        """A diagnostic of the candidate file, named after the device's own profile file."""
        assert self.profile is not None
        if diagnostic.file in (str(candidate), candidate.name, os.path.abspath(candidate)):
            return dataclasses.replace(diagnostic, file=self.profile.name)
        return diagnostic

    # ------------------------------------------------------------ capabilities
    def describe(self) -> dict[str, Any] | None:
        """`profile_file` in capabilities: the running file's SHA-256 and name, and whether deploys work."""
        if self.profile is None:
            return None
        try:
            digest: str | None = hashlib.sha256(self._read(self.profile)).hexdigest()
        except OSError:
            digest = None
        return {"sha256": digest, "name": self.profile.name, "deploy": self.available}
