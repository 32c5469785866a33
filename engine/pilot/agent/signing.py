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
KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")  # 16 random bytes, base64url without padding
SIG_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32-byte HMAC-SHA256, base64url without padding
ENVELOPE_KEYS = {"v", "kid", "ts", "nonce", "cmd", "sig"}
KEY_STATES = ("active", "verify_only", "revoked")


class Rejected(Exception):
    """A command refused with one of the fixed reason codes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ------------------------------------------------------------------ keyring


@dataclass(frozen=True)
class Key:
    kid: str
    secret: bytes
    state: str = "active"
    not_after: float | None = None  # epoch seconds


class KeyringError(Exception):
    pass


def check_private(path: Path) -> None:
    """Refuse a key file that anyone but its owner can read, as ssh does."""
    st = os.stat(path)
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyringError(f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}")


def load_keyring(path: str | os.PathLike[str]) -> dict[str, Key]:
    """Lines of `kid secret [state] [not_after=UNIX_TIME]`; `#` starts a comment."""
    path = Path(path)
    try:
        check_private(path)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyringError(f"cannot read keyring {path}: {exc.strerror}") from None
    keys: dict[str, Key] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 2 or not KID_RE.match(parts[0]):
            raise KeyringError(f"{path}:{number}: expected `kid secret [state] [not_after=TIME]`")
        state, not_after = "active", None
        for extra in parts[2:]:
            if extra in KEY_STATES:
                state = extra
            elif extra.startswith("not_after="):
                not_after = float(extra.split("=", 1)[1])
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


def canonical(kid: str, device_id: str, topic: str, ts: int, nonce: str, cmd: bytes) -> bytes:
    return "\n".join([SCHEME, kid, device_id, topic, str(ts), nonce, hashlib.sha256(cmd).hexdigest()]).encode()


def sign(key: Key, device_id: str, topic: str, cmd: str, *, ts: int | None = None, nonce: str | None = None) -> dict:
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or b64url(secrets.token_bytes(16))
    mac = hmac.new(key.secret, canonical(key.kid, device_id, topic, ts, nonce, cmd.encode()), hashlib.sha256)
    return {"v": 1, "kid": key.kid, "ts": ts, "nonce": nonce, "cmd": cmd, "sig": b64url(mac.digest())}


@dataclass(frozen=True)
class Verified:
    cmd: str
    nonce: str
    kid: str
    ts: int


def parse_envelope(payload: bytes) -> dict:
    """Strict shape check; anything off is `malformed`, with no detail."""
    try:
        env = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Rejected("malformed") from None
    if not isinstance(env, dict) or set(env) != ENVELOPE_KEYS or env["v"] != 1:
        raise Rejected("malformed")
    if not (
        isinstance(env["kid"], str)
        and KID_RE.match(env["kid"])
        and isinstance(env["ts"], int)
        and not isinstance(env["ts"], bool)
        and 0 < env["ts"] < 2**40
        and isinstance(env["nonce"], str)
        and NONCE_RE.match(env["nonce"])
        and isinstance(env["cmd"], str)
        and len(env["cmd"]) <= 4096
        and isinstance(env["sig"], str)
        and SIG_RE.match(env["sig"])
    ):
        raise Rejected("malformed")
    return env


def verify(env: dict, keys: dict[str, Key], device_id: str, topic: str, *, now: float, window: float) -> Verified:
    key = keys.get(env["kid"])
    if key is None or key.state == "revoked" or (key.not_after is not None and now > key.not_after):
        raise Rejected("unauthorized")
    expected = hmac.new(
        key.secret,
        canonical(env["kid"], device_id, topic, env["ts"], env["nonce"], env["cmd"].encode()),
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
    return Verified(env["cmd"], env["nonce"], env["kid"], env["ts"])


# ------------------------------------------------------------------ nonces


class NonceStore:
    """Nonces seen within the window, made durable (append + fsync) before an action runs.

    The cache holds only nonces that could still verify (|now - ts| <= window), so it is
    bounded by the window; when it is full of live nonces a command is refused `busy`,
    never admitted by evicting one. A file that cannot be read or written fails closed."""

    def __init__(
        self, path: Path, window: float, *, capacity: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.window = window
        self.capacity = capacity
        self.clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._appends = 0
        self.healthy = True
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, ValueError):  # unreadable or not text: fail closed, never crash
            self.healthy = False
            log.error("the nonce store %s cannot be read; signed commands are refused (unavailable)", self.path)
            return
        horizon = self.clock() - self.window
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and NONCE_RE.match(parts[0]):
                try:
                    ts = float(parts[1])
                except ValueError:
                    continue
                if not math.isfinite(ts):
                    continue
                if ts >= horizon - self.window:
                    self._seen[parts[0]] = ts

    def _prune(self, now: float) -> None:
        horizon = now - 2 * self.window  # ts may be up to `window` in the future of the signer
        for nonce in [n for n, ts in self._seen.items() if ts < horizon]:
            del self._seen[nonce]

    def admit(self, nonce: str, ts: float) -> None:
        """Record the nonce durably or raise Rejected (replayed, busy, unavailable)."""
        with self._lock:
            if not self.healthy:
                raise Rejected("unavailable")
            if nonce in self._seen:
                raise Rejected("replayed")
            now = self.clock()
            if len(self._seen) >= self.capacity:
                self._prune(now)
                if len(self._seen) >= self.capacity:
                    raise Rejected("busy")
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    write_all(fd, f"{nonce} {int(ts)}\n".encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                raise Rejected("unavailable") from None
            self._seen[nonce] = ts
            self._appends += 1
            if self._appends >= 1000:
                self._compact(now)

    def _compact(self, now: float) -> None:
        """Rewrite the log with live nonces only (atomic replace), so it never grows without bound."""
        self._prune(now)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                write_all(fd, "".join(f"{n} {int(t)}\n" for n, t in self._seen.items()).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._appends = 0
        except OSError:
            pass  # the append-only log stays valid; compaction is retried later
