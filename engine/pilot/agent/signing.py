"""`pilot-cmd-v1`: HMAC-signed commands with replay protection.

Home Assistant's broker lets every Home Assistant user publish anywhere, so
broker credentials are not authorization for a shutdown. A signed command
carries an envelope whose HMAC covers the device id and the exact topic, so a
command signed for one machine or one command cannot be replayed to another.
Verification order and reasons follow DESIGN.md §6; nothing here echoes the
payload, the expected signature or a parser message.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pilot.agent.state import write_all

log = logging.getLogger("pilot.signing")

SCHEME = "pilot-cmd-v1"
RESULT_SCHEME = "pilot-result-v1"
# patterns are used with fullmatch only: `$` would also accept a trailing newline
KID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{22}")  # 16 random bytes, base64url without padding
SIG_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # 32-byte HMAC-SHA256, base64url without padding
CODE_RE = re.compile(r"[a-z_]{1,32}")  # a result's status and reason codes
# who pressed (a console user): optional, signed; no newline can reach the canonical bytes or a log line
BY_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
ENVELOPE_KEYS = {"v", "kid", "ts", "nonce", "cmd", "sig"}
ENVELOPE_KEYS_BY = ENVELOPE_KEYS | {"by"}
KEY_STATES = ("active", "verify_only", "revoked")
MAX_CMD = 4096
MAX_TS = 2**40
MAX_KEYRING = 1 << 20


class Rejected(Exception):
    """A command refused with one of the fixed reason codes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_b64url(text: str, size: int) -> bool:
    """True when text is the one unpadded base64url spelling of `size` bytes. The last character of
    a 43- or 22-character string carries unused bits; other spellings decode to the same bytes."""
    if len(text) != (size * 4 + 2) // 3 or not text.isascii():
        return False
    try:
        return b64url(b64url_decode(text)) == text
    except ValueError:
        return False


def is_int(value: object) -> bool:
    """A JSON integer: not a bool (True == 1 in Python), not a float such as 1.0."""
    return type(value) is int


def encodable(text: str) -> bool:
    """Text that has a UTF-8 form: no lone surrogates (JSON's "\\ud800" escape decodes to one)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ------------------------------------------------------------------ keyring


@dataclass(frozen=True)
class Key:
    kid: str
    secret: bytes
    state: str = "active"
    not_after: float | None = None  # epoch seconds


class KeyringError(Exception):
    pass


def close_quietly(fd: int) -> None:
    """Close a descriptor, ignoring an error: Linux frees it even when close(2) reports one, and what
    mattered was settled before (the fsync succeeded, or the caller already failed). An OSError here
    escaped `admit` (not a Rejected reason) and left a durable nonce out of memory."""
    try:
        os.close(fd)
    except OSError:
        pass


def check_private(path: Path, st: os.stat_result) -> None:
    """Refuse a key file that is not a regular file owned by the service user (or root) and private
    to its owner, as ssh does. `st` is the fstat of the opened file, never a stat of the path."""
    if not stat.S_ISREG(st.st_mode):
        raise KeyringError(f"keyring {path} is not a regular file")
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        raise KeyringError(
            f"keyring {path} is owned by uid {st.st_uid}, not by the service user (uid {euid}) or root; "
            f"run: chown {euid} {path}"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        what = "readable" if mode & 0o044 else "writable" if mode & 0o022 else "executable"
        raise KeyringError(f"keyring {path} is {what} by others (mode {mode:04o}); run: chmod 600 {path}")


def read_private(path: Path) -> str:
    """The text of a private file, opened without following a symbolic link (O_NOFOLLOW) and
    checked on the opened descriptor, so the file checked is the file read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyringError(
                f"keyring {path} is a symbolic link; Pilot does not follow links to a keyring: name the file itself"
            ) from None
        raise KeyringError(f"cannot read keyring {path}: {exc.strerror}") from None
    try:
        check_private(path, os.fstat(fd))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_KEYRING + 1)
        if len(data) > MAX_KEYRING:
            raise KeyringError(f"keyring {path} is larger than {MAX_KEYRING} bytes")
    except OSError as exc:
        raise KeyringError(f"cannot read keyring {path}: {exc.strerror}") from None
    finally:
        close_quietly(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyringError(f"keyring {path} is not UTF-8 text") from None


def load_keyring(path: str | os.PathLike[str]) -> dict[str, Key]:
    """Lines of `kid secret [state] [not_after=UNIX_TIME]`; `#` starts a comment."""
    path = Path(path)
    text = read_private(path)
    keys: dict[str, Key] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2 or not KID_RE.fullmatch(parts[0]):
            raise KeyringError(f"{path}:{number}: expected `kid secret [state] [not_after=TIME]`")
        state, not_after = "active", None
        for extra in parts[2:]:
            if extra in KEY_STATES:
                state = extra
            elif extra.startswith("not_after="):
                try:
                    not_after = float(extra.split("=", 1)[1])
                except ValueError:
                    raise KeyringError(f"{path}:{number}: not_after is not a number") from None
                if not math.isfinite(not_after):
                    raise KeyringError(f"{path}:{number}: not_after is not a number")
            else:
                raise KeyringError(f"{path}:{number}: unknown field {extra!r}")
        try:
            secret = b64url_decode(parts[1])
        except ValueError:
            raise KeyringError(f"{path}:{number}: the secret is not base64url") from None
        if len(secret) < 16:
            raise KeyringError(f"{path}:{number}: the secret is shorter than 16 bytes")
        keys[parts[0]] = Key(parts[0], secret, state, not_after)
    return keys


def new_key_line(kid: str) -> str:
    return f"{kid} {b64url(secrets.token_bytes(32))} active"


# ------------------------------------------------------------------ signing


def canonical(kid: str, device_id: str, topic: str, ts: int, nonce: str, cmd: bytes, by: str | None = None) -> bytes:
    """The signed bytes. With `by` they end in `"\\n" + by` after the command hash; the hash is always
    64 hex characters, so the forms with and without `by` cannot be mistaken for one another, and
    without it the bytes are exactly those of every envelope signed before `by` existed."""
    fields = [SCHEME, kid, device_id, topic, str(ts), nonce, hashlib.sha256(cmd).hexdigest()]
    if by is not None:
        fields.append(by)
    return "\n".join(fields).encode()


def sign(
    key: Key,
    device_id: str,
    topic: str,
    cmd: str,
    *,
    ts: int | None = None,
    nonce: str | None = None,
    by: str | None = None,
) -> dict:
    """An envelope; `by` names who pressed (1 to 64 of `A-Z a-z 0-9 _ . @ -`), signed with the rest."""
    if by is not None and not BY_RE.fullmatch(by):
        raise ValueError("`by` must be 1 to 64 characters of A-Z a-z 0-9 _ . @ -")
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or b64url(secrets.token_bytes(16))
    mac = hmac.new(key.secret, canonical(key.kid, device_id, topic, ts, nonce, cmd.encode(), by), hashlib.sha256)
    env: dict = {"v": 1, "kid": key.kid, "ts": ts, "nonce": nonce, "cmd": cmd}
    if by is not None:
        env["by"] = by
    env["sig"] = b64url(mac.digest())
    return env


@dataclass(frozen=True)
class Verified:
    cmd: str
    nonce: str
    kid: str
    ts: int
    by: str | None = None  # who pressed, as the signer says (covered by the signature)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):  # {"cmd": "OFF", "cmd": "ON"}: which one was signed?
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_envelope(payload: bytes) -> dict:
    """Strict shape check; anything off is `malformed`, with no detail.

    Exactly the six keys, or those and `by`, once each; `v` the integer 1 (not `true`, not `1.0`);
    `ts` an integer (not a bool or float) in (0, 2**40); `kid`, `nonce` and `sig` matched whole (fullmatch: no trailing
    newline), `nonce` and `sig` in their one canonical base64url spelling; `cmd` text of at most
    4096 characters that has a UTF-8 form (no lone surrogates); `by`, when present, 1 to 64 of
    `A-Z a-z 0-9 _ . @ -` matched whole."""
    try:
        env = json.loads(payload.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Rejected("malformed") from None
    if not isinstance(env, dict) or (set(env) != ENVELOPE_KEYS and set(env) != ENVELOPE_KEYS_BY):
        raise Rejected("malformed")
    if "by" in env and not (isinstance(env["by"], str) and BY_RE.fullmatch(env["by"])):
        raise Rejected("malformed")  # `"by": null` too: a second spelling of the envelope without it
    v, kid, ts, nonce, cmd, sig = (env[k] for k in ("v", "kid", "ts", "nonce", "cmd", "sig"))
    if not (
        is_int(v)
        and v == 1
        and isinstance(kid, str)
        and KID_RE.fullmatch(kid)
        and is_int(ts)
        and 0 < ts < MAX_TS
        and isinstance(nonce, str)
        and NONCE_RE.fullmatch(nonce)
        and canonical_b64url(nonce, 16)
        and isinstance(cmd, str)
        and len(cmd) <= MAX_CMD
        and encodable(cmd)
        and isinstance(sig, str)
        and SIG_RE.fullmatch(sig)
        and canonical_b64url(sig, 32)
    ):
        raise Rejected("malformed")
    return env


def verify(env: dict, keys: dict[str, Key], device_id: str, topic: str, *, now: float, window: float) -> Verified:
    key = keys.get(env["kid"])
    if key is None or key.state == "revoked" or (key.not_after is not None and now > key.not_after):
        raise Rejected("unauthorized")
    expected = hmac.new(
        key.secret,
        canonical(env["kid"], device_id, topic, env["ts"], env["nonce"], env["cmd"].encode(), env.get("by")),
        hashlib.sha256,
    ).digest()
    try:
        given = b64url_decode(env["sig"])
    except ValueError:
        raise Rejected("malformed") from None
    if not hmac.compare_digest(expected, given):
        raise Rejected("unauthorized")
    if abs(now - env["ts"]) > window:
        raise Rejected("expired")
    return Verified(env["cmd"], env["nonce"], env["kid"], env["ts"], env.get("by"))


# ------------------------------------------------------------------ results


def canonical_result(
    kid: str, device_id: str, topic: str, nonce: str, status: str, reason: str | None, ts: int
) -> bytes:
    """`pilot-result-v1`: what the agent's answer to a signed command is signed over (docs/mqtt.md).
    `topic` is the command's set topic, the one its envelope was signed for; `reason` is empty when
    the result has none. Every field is a fixed pattern or a topic, none holds a newline."""
    return "\n".join([RESULT_SCHEME, kid, device_id, topic, nonce, status, reason or "", str(ts)]).encode()


def sign_result(key: Key, device_id: str, topic: str, nonce: str, status: str, reason: str | None, ts: int) -> str:
    mac = hmac.new(key.secret, canonical_result(key.kid, device_id, topic, nonce, status, reason, ts), hashlib.sha256)
    return b64url(mac.digest())


def verify_result(body: object, key: Key, device_id: str, topic: str, nonce: str) -> bool:
    """True when `body` (a decoded result) answers the envelope with `nonce` and is signed with `key`."""
    if not isinstance(body, dict):
        return False
    status, reason, ts, sig = body.get("status"), body.get("reason"), body.get("ts"), body.get("sig")
    if not (
        body.get("nonce") == nonce
        and isinstance(status, str)
        and CODE_RE.fullmatch(status)
        and (reason is None or (isinstance(reason, str) and CODE_RE.fullmatch(reason)))
        and is_int(ts)
        and isinstance(sig, str)
        and canonical_b64url(sig, 32)
    ):
        return False
    expected = sign_result(key, device_id, topic, nonce, status, reason, ts)
    return hmac.compare_digest(expected.encode(), sig.encode())


# ------------------------------------------------------------------ nonces


RECORD_RE = re.compile(rb"([A-Za-z0-9_-]{22}) ([0-9]{1,13})\n")  # a nonce and its envelope's ts
WATERMARK_RE = re.compile(rb"watermark ([0-9]{1,13})\n")  # every envelope with ts <= this is too old


class NonceStoreError(Exception):
    pass


def read_nonce_log(data: bytes) -> tuple[dict[str, int], int]:
    """(nonce -> ts, watermark) of a whole log, or NonceStoreError naming the first bad record.

    Every record is one complete line; a line that is not exactly one record (a partial write, two
    records glued together, a stray byte) is an error, never skipped: skipping it would forget a
    nonce whose command may have run."""
    seen: dict[str, int] = {}
    watermark = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        record = RECORD_RE.fullmatch(line)
        if record is not None:
            seen[record[1].decode()] = int(record[2])
            continue
        mark = WATERMARK_RE.fullmatch(line)
        if mark is not None:
            watermark = max(watermark, int(mark[1]))
            continue
        what = "an incomplete record (no newline)" if not line.endswith(b"\n") else "not a nonce record"
        raise NonceStoreError(f"line {number} is {what}")
    return seen, watermark


class NonceStore:
    """Nonces of admitted commands, made durable (append + fsync) before an action runs.

    Durability: each record is one line `<nonce> <ts>\\n`, appended with one write and fsynced. A
    failed or short write is rolled back (the file is truncated to its size before the write); if
    even that fails the store is *dirty* and admits nothing until a full rewrite of the log (from
    memory, which holds every admitted nonce) succeeds. A log that cannot be read at start, or that
    holds a line that is not exactly one record, makes the store *failed*: signed commands are
    answered `unavailable` and the reason is logged, until the file is repaired and Pilot restarted.

    Forgetting is immune to wall-clock jumps: a nonce is kept for at least `2 * window` seconds of
    the *monotonic* clock after its admission (nonces read at start count as admitted then), and
    when one is forgotten the *watermark* is raised to its envelope's ts. Any envelope with
    ts <= watermark is refused `expired`, whatever the wall clock says later, so a forgotten nonce
    can never verify again. The watermark is written with every compaction. The cache is bounded:
    when it is full of nonces that cannot be forgotten yet, a command is refused `busy`."""

    def __init__(
        self,
        path: Path,
        window: float,
        *,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        compact_every: int = 1000,
    ) -> None:
        self.path = path
        self.window = window
        self.capacity = capacity
        self.clock = clock  # monotonic: only elapsed time decides when a nonce may be forgotten
        self.compact_every = compact_every
        self._seen: dict[str, tuple[int, float]] = {}  # nonce -> (ts, admitted at), in admission order
        self.watermark = 0
        self._lock = threading.Lock()
        self._appends = 0
        self.error: str | None = None  # failed: why (set at start; only a restart clears it)
        self.dirty = False  # the file may not match memory: rewrite before the next append
        self._load()

    @property
    def healthy(self) -> bool:
        return self.error is None and not self.dirty

    def _fail(self, reason: str) -> None:
        self.error = reason
        log.error(
            "the nonce store %s %s; signed commands are refused (unavailable) until it is repaired and "
            "Pilot restarted (a nonce in it may belong to a command that already ran: remove the file only "
            "after Pilot has been stopped for longer than the signature window)",
            self.path,
            reason,
        )

    def _load(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._fail(f"cannot be opened ({exc.strerror})")
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self._fail("is not a regular file")
                return
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read()
        except OSError as exc:
            self._fail(f"cannot be read ({exc.strerror})")
            return
        finally:
            close_quietly(fd)
        try:
            seen, self.watermark = read_nonce_log(data)
        except NonceStoreError as exc:
            self._fail(str(exc))
            return
        now = self.clock()
        self._seen = {nonce: (ts, now) for nonce, ts in seen.items()}

    def _prune(self, now: float) -> None:
        """Forget nonces admitted more than 2 * window ago (monotonic), raising the watermark."""
        keep_after = now - 2 * self.window
        while self._seen:
            nonce, (ts, admitted) = next(iter(self._seen.items()))
            if admitted > keep_after:
                break  # admission order: the rest are younger
            del self._seen[nonce]
            self.watermark = max(self.watermark, ts)

    def admit(self, nonce: str, ts: int) -> None:
        """Record the nonce durably or raise Rejected (replayed, expired, busy, unavailable)."""
        with self._lock:
            if self.error is not None:
                raise Rejected("unavailable")
            if nonce in self._seen:
                raise Rejected("replayed")
            now = self.clock()
            self._prune(now)
            if ts <= self.watermark:
                raise Rejected("expired")  # its nonce may have been forgotten: too old to tell a replay
            if len(self._seen) >= self.capacity:
                raise Rejected("busy")
            if self.dirty and not self._rewrite():
                raise Rejected("unavailable")
            if not self._append(f"{nonce} {int(ts)}\n".encode()):
                raise Rejected("unavailable")
            self._seen[nonce] = (int(ts), now)
            self._appends += 1
            if self._appends >= self.compact_every:
                self._rewrite()

    def _append(self, record: bytes) -> bool:
        """One record, all of it fsynced, or none of it: a failed or short write is truncated away."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.error("cannot open the nonce store %s: %s; signed commands answer unavailable", self.path, exc.strerror)
            return False
        try:
            size = os.fstat(fd).st_size
            try:
                write_all(fd, record)
                os.fsync(fd)
                return True
            except OSError as exc:
                log.error(
                    "cannot record a nonce in %s: %s; the command is refused (unavailable)", self.path, exc.strerror
                )
            try:  # roll back whatever part of the record reached the file
                os.ftruncate(fd, size)
                os.fsync(fd)
            except OSError as exc:
                self.dirty = True
                log.error(
                    "cannot roll back a partial nonce record in %s: %s; signed commands are refused until the "
                    "log is rewritten",
                    self.path,
                    exc.strerror,
                )
            return False
        except OSError as exc:
            self.dirty = True
            log.error("cannot record a nonce in %s: %s", self.path, exc.strerror)
            return False
        finally:
            close_quietly(fd)

    def _rewrite(self) -> bool:
        """Replace the log with the watermark and the remembered nonces (tmp, fsync, rename, fsync dir)."""
        self._prune(self.clock())
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = f"watermark {int(self.watermark)}\n" + "".join(f"{n} {t}\n" for n, (t, _) in self._seen.items())
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                write_all(fd, data.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if self.dirty:
                log.error("cannot rewrite the nonce store %s: %s", self.path, exc.strerror)
            return False  # the append-only log stays valid (or the store stays dirty); retried later
        self._appends = 0
        if self.dirty:
            log.warning("the nonce store %s was rewritten; signed commands are accepted again", self.path)
        self.dirty = False
        return True
