"""Who may use the console: the users file, password checks, sessions, CSRF and the login rate limit.

Pure logic with injected clocks and no web framework: the Starlette app (app.py) calls these, and the unit
and mutation tests drive them without a server. What each part defends against:

- the users file (`name:role:argon2-hash` lines) is a secret like the agent's keyring: opened without
  following a link, refused when anyone but its owner may read it, written atomically with mode 0600;
- passwords are argon2id hashes; an unknown user name costs the same verification as a known one, so
  timing does not tell which names exist; a password longer than 1024 characters is refused before hashing;
- a session token is 32 random bytes the browser keeps in an HttpOnly cookie; the store keeps only its
  SHA-256, so a copy of the database signs no one in. The role is re-read from the users file at each
  request: a role change or a removed user takes effect at once, without a restart;
- state-changing requests carry the session's CSRF token in a header and, when the browser sends one, an
  Origin that matches the console's own;
- failed logins lock the client address and the user name out for a while that doubles with each failure.
"""

from __future__ import annotations

import base64
import enum
import errno
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pilot.agent.signing import KeyringError, check_private, close_quietly
from pilot.escaping import bound, escape

if TYPE_CHECKING:
    from pilot.console.storage import SessionRecord, Storage

log = logging.getLogger("pilot.console.auth")

Clock = Callable[[], float]

NAME_RE = re.compile(r"[a-z0-9_.-]{1,32}")  # fullmatch only: `$` would let a trailing newline in
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # characters; longer is refused before hashing (argon2 would hash megabytes)
PASSWORD_UNSAFE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")  # controls, DEL, lone surrogates
MAX_USERS_FILE = 4 << 20
TOKEN_BYTES = 32
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, base64url without padding
COOKIE_NAME = "pilot_session"
IDLE_TIMEOUT = 12 * 3600.0
LIFETIME = 7 * 86400.0
TOUCH_EVERY = 60.0  # a session's last_seen is written at most once a minute, not at every request


def _shown(text: str) -> str:
    """Text from a file or a request as it may appear in a message: quoted, escaped, bounded."""
    return f"'{escape(bound(text, 40))}'"


class AuthError(Exception):
    """A refusal with a one-line message for a person (the CLI prints it as is)."""


class UsersFileError(AuthError):
    """The users file cannot be read, parsed or written; the message names the file (and line)."""


class PasswordError(AuthError):
    """A password the policy refuses (too short, too long, control characters)."""


class Role(enum.IntEnum):
    """viewer < operator < admin: each role may do everything the ones below it may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, text: object) -> Role:
        """The role named `text` (viewer, operator, admin), else ValueError saying which are known."""
        if isinstance(text, str) and text in ROLE_NAMES:
            return cls[text.upper()]
        raise ValueError(f"role {_shown(str(text))} is not one of viewer, operator, admin")


ROLE_NAMES = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    hash: str


def check_name(name: object) -> str:
    """`name` when it is a valid user name (a-z 0-9 _ . -, 1 to 32 characters), else AuthError."""
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return name
    raise AuthError(f"user name {_shown(str(name))} is not allowed: use 1 to 32 of a-z 0-9 _ . -")


def check_password(password: object) -> str:
    """`password` when the policy takes it: text of 8 to 1024 characters without control characters.
    The length is checked first, so a 10 MB password costs nothing."""
    if not isinstance(password, str):
        raise PasswordError("a password is text")
    if len(password) > MAX_PASSWORD:
        raise PasswordError(f"a password has at most {MAX_PASSWORD} characters")
    if len(password) < MIN_PASSWORD:
        raise PasswordError(f"a password has at least {MIN_PASSWORD} characters")
    if PASSWORD_UNSAFE.search(password):
        raise PasswordError("a password may not contain control characters")
    return password


def default_hasher() -> Any:
    """argon2-cffi's PasswordHasher with its default parameters (argon2id)."""
    from argon2 import PasswordHasher

    return PasswordHasher()


# ------------------------------------------------------------------ the users file


@dataclass(frozen=True, slots=True)
class _Parsed:
    lines: tuple[str, ...]  # the file as read, comments and blank lines kept for rewriting
    users: dict[str, tuple[int, User]]  # name -> (index in lines, user)
    signature: tuple[int, int, int, int]  # (dev, inode, size, mtime_ns) of what was read


class UsersFile:
    """The console's users: one `name:role:argon2-hash` per line, `#` comments allowed.

    Read again whenever the file's inode, size or mtime changes, so `pilot console user add` takes effect
    in a running console. `owner_uid` names one more owner the file may have besides the effective user
    and root: root's `pilot console user …` reads a file the console's service user owns."""

    def __init__(self, path: str | os.PathLike[str], *, hasher: Any = None, owner_uid: int | None = None) -> None:
        self.path = Path(path)
        self.hasher = hasher if hasher is not None else default_hasher()
        self.owner_uid = owner_uid
        self._parsed: _Parsed | None = None
        self._dummy: str | None = None
        self._lock = threading.Lock()

    # reading ----------------------------------------------------------

    def _signature(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UsersFileError(f"cannot read users file {self.path}: {exc.strerror}") from None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _current(self, *, missing_ok: bool = False) -> _Parsed:
        with self._lock:
            sig = self._signature()
            if sig is None:
                if missing_ok:
                    return _Parsed((), {}, (0, 0, 0, 0))
                raise UsersFileError(
                    f"users file {self.path} does not exist; create it with `pilot console user add NAME --role admin`"
                )
            if self._parsed is None or self._parsed.signature != sig:
                self._parsed = self._read()
            return self._parsed

    def _check(self, st: os.stat_result) -> None:
        if self.owner_uid is not None and st.st_uid == self.owner_uid and stat.S_ISREG(st.st_mode):
            fields = list(st[:10])
            fields[4] = os.geteuid()  # the named owner counts as the effective user; the mode rule stays
            st = os.stat_result(fields)
        try:
            check_private(self.path, st)
        except KeyringError as exc:
            raise UsersFileError(_users_file_words(str(exc), self.path)) from None

    def _read(self) -> _Parsed:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UsersFileError(
                    f"users file {self.path} is a symbolic link; Pilot does not follow links to a users file: "
                    "name the file itself"
                ) from None
            raise UsersFileError(f"cannot read users file {self.path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            self._check(st)
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(MAX_USERS_FILE + 1)
        except OSError as exc:
            raise UsersFileError(f"cannot read users file {self.path}: {exc.strerror}") from None
        finally:
            close_quietly(fd)
        if len(data) > MAX_USERS_FILE:
            raise UsersFileError(f"users file {self.path} is larger than {MAX_USERS_FILE} bytes")
        return self._parse(data, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))

    def _parse(self, data: bytes, signature: tuple[int, int, int, int]) -> _Parsed:
        from argon2 import extract_parameters
        from argon2.exceptions import InvalidHashError

        lines: list[str] = []
        users: dict[str, tuple[int, User]] = {}
        raw_lines = data.split(b"\n")
        if raw_lines and raw_lines[-1] == b"":
            raw_lines.pop()
        for index, raw in enumerate(raw_lines):
            where = f"{self.path}:{index + 1}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UsersFileError(f"{where}: not UTF-8 text") from None
            line = line.removesuffix("\r")
            lines.append(line)
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split(":", 2)
            if len(parts) != 3:
                raise UsersFileError(f"{where}: expected `name:role:argon2-hash`")
            name, role_text, hashed = parts
            if not NAME_RE.fullmatch(name):
                raise UsersFileError(f"{where}: user name {_shown(name)} is not allowed: use 1 to 32 of a-z 0-9 _ . -")
            try:
                role = Role.parse(role_text)
            except ValueError as exc:
                raise UsersFileError(f"{where}: {exc}") from None
            try:
                if not hashed.startswith("$argon2"):
                    raise InvalidHashError
                extract_parameters(hashed)
            except (InvalidHashError, ValueError):
                raise UsersFileError(
                    f"{where}: the password hash of {name!r} is not an argon2 hash; "
                    f"set it again with `pilot console user passwd {name}`"
                ) from None
            if name in users:
                raise UsersFileError(f"{where}: user {name!r} is already on line {users[name][0] + 1}")
            users[name] = (index, User(name, role, hashed))
        return _Parsed(tuple(lines), users, signature)

    def get(self, name: str) -> User | None:
        """The user called `name` as the file says now (read again if it changed), or None."""
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            return None
        entry = self._current(missing_ok=True).users.get(name)
        return entry[1] if entry else None

    def list(self) -> list[User]:
        return sorted((u for _, u in self._current(missing_ok=True).users.values()), key=lambda u: u.name)

    # checking a password -----------------------------------------------

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_urlsafe(24))
        return self._dummy

    def verify(self, name: object, password: object) -> User | None:
        """The user when `password` is theirs, else None. An unknown or malformed name is checked against
        a dummy hash made with the same parameters, so the answer takes as long as for a real user; a
        password the policy could never have set is refused before any hashing (that says nothing about
        the name). A hash made with older parameters is replaced after a successful check."""
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            check_password(password)
        except PasswordError:
            return None
        assert isinstance(password, str)
        dummy = self._dummy_hash()  # made before the lookup: the first call costs the same for anyone
        user = self.get(name) if isinstance(name, str) else None
        try:
            self.hasher.verify(user.hash if user else dummy, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None:
            return None
        if self.hasher.check_needs_rehash(user.hash):
            try:
                self.set_password(user.name, password)
                user = self.get(user.name) or user
            except (AuthError, OSError) as exc:  # a read-only /etc: the old hash keeps working
                log.warning("could not store a new hash for %s: %s", user.name, escape(str(exc)))
        return user

    # writing -----------------------------------------------------------

    def add(self, name: str, role: Role | str, password: str) -> User:
        check_name(name)
        role = role if isinstance(role, Role) else Role.parse(role)
        hashed = self.hasher.hash(check_password(password))

        def change(lines: list[str], users: dict[str, tuple[int, User]]) -> None:
            if name in users:
                raise UsersFileError(f"user {name!r} already exists in {self.path}")
            lines.append(f"{name}:{role.label}:{hashed}")

        self._edit(change, create=True)
        return User(name, role, hashed)

    def set_password(self, name: str, password: str) -> None:
        check_name(name)
        hashed = self.hasher.hash(check_password(password))
        self._replace(name, lambda user: User(user.name, user.role, hashed))

    def set_role(self, name: str, role: Role | str) -> None:
        check_name(name)
        new_role = role if isinstance(role, Role) else Role.parse(role)
        self._replace(name, lambda user: User(user.name, new_role, user.hash))

    def remove(self, name: str) -> None:
        check_name(name)

        def change(lines: list[str], users: dict[str, tuple[int, User]]) -> None:
            if name not in users:
                raise UsersFileError(f"no user {name!r} in {self.path}")
            del lines[users[name][0]]

        self._edit(change)

    def _replace(self, name: str, update: Callable[[User], User]) -> None:
        def change(lines: list[str], users: dict[str, tuple[int, User]]) -> None:
            if name not in users:
                raise UsersFileError(f"no user {name!r} in {self.path}")
            index, user = users[name]
            new = update(user)
            lines[index] = f"{new.name}:{new.role.label}:{new.hash}"

        self._edit(change)

    def _edit(self, change: Callable[[list[str], dict[str, tuple[int, User]]], None], *, create: bool = False) -> None:
        """Read, change and write the file under an exclusive lock (a sibling `.NAME.lock`), so two edits at
        once (the CLI, and the console storing a new hash) cannot lose each other's line."""
        import fcntl

        lock_path = self.path.with_name(f".{self.path.name}.lock")
        try:
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise UsersFileError(f"cannot write users file {self.path}: {exc.strerror} ({lock_path})") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            with self._lock:
                self._parsed = None
            parsed = self._current(missing_ok=create)
            lines = list(parsed.lines)
            change(lines, dict(parsed.users))
            self._write(lines)
            with self._lock:
                self._parsed = None
        finally:
            close_quietly(lock_fd)

    def _write(self, lines: list[str]) -> None:
        """Write the whole file to a temporary sibling (0600, never through a link), then rename it over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            old = os.lstat(self.path)
        except FileNotFoundError:
            old = None
        except OSError as exc:
            raise UsersFileError(f"cannot write users file {self.path}: {exc.strerror}") from None
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        content = "".join(line + "\n" for line in lines).encode("utf-8")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise UsersFileError(f"cannot write users file {self.path}: {exc.strerror}") from None
        try:
            try:
                os.fchmod(fd, 0o600)
                if os.geteuid() == 0:  # keep the owner the console runs as (or give a new file to it)
                    if old is not None:
                        os.fchown(fd, old.st_uid, old.st_gid)
                    elif self.owner_uid is not None:
                        os.fchown(fd, self.owner_uid, -1)
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                close_quietly(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise UsersFileError(f"cannot write users file {self.path}: {exc.strerror}") from None


def _users_file_words(message: str, path: Path) -> str:
    """A keyring check's message about this file, with `keyring` read as `users file` (the path kept)."""
    text = str(path)
    return text.join(part.replace("keyring", "users file") for part in message.split(text))


# ------------------------------------------------------------------ sessions


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    user: str
    role: Role  # as the users file says now, not as it was at sign-in
    csrf: str
    created: float
    expires: float  # the absolute end, whatever the activity
    last_seen: float


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    """What the store keeps of a session token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class Sessions:
    """Signed-in browsers. The token is the cookie; the store holds its hash, the user, the CSRF token
    and the times. A session ends after `idle` seconds without a request or `lifetime` seconds after
    sign-in, whichever comes first; when `users` is given, a session whose user left the file ends too."""

    def __init__(
        self,
        store: Storage,
        clock: Clock,
        *,
        users: UsersFile | None = None,
        idle: float = IDLE_TIMEOUT,
        lifetime: float = LIFETIME,
        touch_every: float = TOUCH_EVERY,
    ) -> None:
        if idle <= 0 or lifetime <= 0:
            raise ValueError("session idle timeout and lifetime are positive")
        self.store = store
        self.clock = clock
        self.users = users
        self.idle = idle
        self.lifetime = lifetime
        self.touch_every = touch_every
        # name -> (the password hash last seen, when it was first seen changed). A session made before its
        # user's hash changed (`user passwd`, or remove and add again) is over: a password changed because
        # it leaked ends the sessions signed in with it. Hashes read at start count as unchanged.
        self._credentials: dict[str, tuple[str, float]] = {}
        if users is not None:
            self._credentials = {u.name: (u.hash, float("-inf")) for u in users.list()}
        self._credentials_lock = threading.Lock()

    def _changed_at(self, user: User, now: float) -> float:
        with self._credentials_lock:
            seen = self._credentials.get(user.name)
            if seen is None or seen[0] != user.hash:
                seen = self._credentials[user.name] = (user.hash, now)
            return seen[1]

    def create(self, user: User) -> tuple[str, str]:
        """A new session for `user`: (token for the cookie, CSRF token for the page)."""
        from pilot.console.storage import SessionRecord

        token = _b64url(secrets.token_bytes(TOKEN_BYTES))
        csrf = _b64url(secrets.token_bytes(TOKEN_BYTES))
        now = self.clock()
        if self.users is not None:
            self._changed_at(user, now)
        record: SessionRecord = SessionRecord(
            token_hash=token_hash(token),
            user=user.name,
            role=user.role.label,
            csrf=csrf,
            created=now,
            expires=now + self.lifetime,
            last_seen=now,
        )
        self.store.put_session(record)
        return token, csrf

    def lookup(self, token: object) -> Session | None:
        """The live session for a cookie value, or None (unknown, malformed, expired, or its user gone)."""
        if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
            return None
        key = token_hash(token)
        record: SessionRecord | None = self.store.get_session(key)
        if record is None:
            return None
        now = self.clock()
        if now >= record.expires or now >= record.last_seen + self.idle:
            self.store.delete_session(key)
            return None
        if self.users is not None:
            user = self.users.get(record.user)
            if user is None:
                self.store.delete_user_sessions(record.user)
                return None
            if record.created < self._changed_at(user, now):
                self.store.delete_session(key)
                return None
            role = user.role
        else:
            try:
                role = Role.parse(record.role)
            except ValueError:
                self.store.delete_session(key)
                return None
        last_seen = record.last_seen
        if now - last_seen >= self.touch_every:
            self.store.touch_session(key, now)
            last_seen = now
        return Session(key, record.user, role, record.csrf, record.created, record.expires, last_seen)

    def revoke(self, token: object) -> None:
        if isinstance(token, str) and TOKEN_RE.fullmatch(token):
            self.store.delete_session(token_hash(token))

    def purge(self) -> None:
        """Delete the sessions past their absolute end (idle ones go when next looked up)."""
        self.store.purge_sessions(self.clock())


# ------------------------------------------------------------------ CSRF and origin


def check_csrf(session: Session | None, header_value: object) -> bool:
    """True when the request's X-CSRF-Token header is the session's CSRF token (constant-time compare)."""
    if session is None or not isinstance(header_value, str) or not header_value:
        return False
    if len(header_value) > 256:
        return False
    return hmac.compare_digest(
        header_value.encode("utf-8", "surrogateescape"), session.csrf.encode("utf-8", "surrogateescape")
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme]


def same_origin(origin_or_referer: str | None, host: str | None, scheme: str) -> bool:
    """For a state-changing request: True when the browser's Origin (or, without one, its Referer) names
    this console (`scheme://host`), or when it sent neither (the CSRF token still has to match).
    `Origin: null`, other schemes and anything unparsable are refused."""
    if origin_or_referer is None or origin_or_referer == "":
        return True
    if not host or len(origin_or_referer) > 2048 or len(host) > 512:
        return False
    theirs = _origin_of(origin_or_referer)
    ours = _origin_of(f"{scheme}://{host}")
    return theirs is not None and theirs == ours


# ------------------------------------------------------------------ login rate limit


@dataclass(slots=True)
class _Failures:
    count: int
    last: float
    locked_until: float


class LoginLimiter:
    """Failed logins per client address and per user name: after `threshold` failures the key is locked
    for `base` seconds, doubling with each further failure up to `cap`. A success resets the user name's
    count (not the address's: one's own account must not reset a guessing address). A key forgotten after
    `cap` seconds without failures past its lock. Each table holds at most `max_keys` keys, oldest dropped.

    Attempts go through `begin` and `end`: at most `max_inflight` run at once per address and per name, so a
    burst sent all at once is judged one attempt after another instead of all passing the check before the
    first failure is counted. A name's lock does not hold back an address that has signed in as that name
    before (remembered for `trust_for` seconds): a stranger's failures cannot lock a user out of their own
    machine, while a guesser's address is still locked by its own failures."""

    def __init__(
        self,
        clock: Clock,
        *,
        threshold: int = 5,
        base: float = 30.0,
        cap: float = 900.0,
        max_keys: int = 10_000,
        max_inflight: int = 2,
        trust_for: float = 30 * 86400.0,
    ) -> None:
        self.clock = clock
        self.max_inflight = max_inflight
        self.trust_for = trust_for
        self._inflight: dict[str, int] = {}
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.threshold = threshold
        self.base = base
        self.cap = cap
        self.max_keys = max_keys
        self._addrs: OrderedDict[str, _Failures] = OrderedDict()
        self._names: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _name_key(name: object) -> str:
        # names that cannot exist share one key: hostile names cost no memory and lock out no real user
        return name if isinstance(name, str) and NAME_RE.fullmatch(name) else "\x00invalid"

    @staticmethod
    def _addr_key(addr: object) -> str:
        return addr[:64] if isinstance(addr, str) and addr else "\x00unknown"

    def _live(self, table: OrderedDict[str, _Failures], key: str, now: float) -> _Failures | None:
        entry = table.get(key)
        if entry is not None and now >= max(entry.locked_until, entry.last) + self.cap:
            del table[key]
            return None
        return entry

    def check(self, addr: object, name: object) -> float | None:
        """Seconds to wait before this address may try this name again, or None when it may now."""
        now = self.clock()
        with self._lock:
            return self._wait(addr, name, now)

    def _wait(self, addr: object, name: object, now: float) -> float | None:
        tables = [(self._addrs, self._addr_key(addr))]
        trusted_at = self._trusted.get((self._addr_key(addr), self._name_key(name)))
        if trusted_at is None or now - trusted_at > self.trust_for:
            tables.append((self._names, self._name_key(name)))
        waits = [
            entry.locked_until - now
            for table, key in tables
            if (entry := self._live(table, key, now)) is not None and entry.locked_until > now
        ]
        return max(waits) if waits else None

    def begin(self, addr: object, name: object) -> float | None:
        """Start an attempt: None when it may go on (then `end` must follow), else seconds to wait."""
        now = self.clock()
        keys = ("a" + self._addr_key(addr), "n" + self._name_key(name))
        with self._lock:
            wait = self._wait(addr, name, now)
            if wait is not None:
                return wait
            if any(self._inflight.get(k, 0) >= self.max_inflight for k in keys):
                return 1.0  # another attempt for this address or name is being checked right now
            for k in keys:
                self._inflight[k] = self._inflight.get(k, 0) + 1
        return None

    def end(self, addr: object, name: object, ok: bool) -> None:
        """Finish an attempt that `begin` let through, counting it."""
        keys = ("a" + self._addr_key(addr), "n" + self._name_key(name))
        with self._lock:
            for k in keys:
                left = self._inflight.get(k, 0) - 1
                if left > 0:
                    self._inflight[k] = left
                else:
                    self._inflight.pop(k, None)
        if ok:
            self.succeeded(addr, name)
        else:
            self.failed(addr, name)

    def failed(self, addr: object, name: object) -> None:
        now = self.clock()
        with self._lock:
            for table, key in ((self._addrs, self._addr_key(addr)), (self._names, self._name_key(name))):
                entry = self._live(table, key, now)
                if entry is None:
                    entry = table[key] = _Failures(0, now, 0.0)
                entry.count += 1
                entry.last = now
                if entry.count >= self.threshold:
                    lock = min(self.cap, self.base * 2 ** min(entry.count - self.threshold, 30))
                    entry.locked_until = now + lock
                table.move_to_end(key)
                while len(table) > self.max_keys:
                    table.popitem(last=False)

    def succeeded(self, addr: object, name: object) -> None:
        with self._lock:
            self._names.pop(self._name_key(name), None)
            pair = (self._addr_key(addr), self._name_key(name))
            self._trusted[pair] = self.clock()
            self._trusted.move_to_end(pair)
            while len(self._trusted) > self.max_keys:
                self._trusted.popitem(last=False)

    def __len__(self) -> int:
        return len(self._addrs) + len(self._names)


# ------------------------------------------------------------------ one-time sign-in links


LINK_LIFETIME = 120.0  # seconds a sign-in link stays good
MAX_LINKS = 8  # links not yet used; the oldest is dropped first


class SignInLinks:
    """One-time sign-in links for a console this machine's user starts for themselves (`pilot console
    --open`): the launcher mints a link, hands it to the browser, and the first visit turns it into a
    session. A link is good once, for LINK_LIFETIME seconds, and only in the process that minted it (it is
    never written anywhere); the table keeps only SHA-256 hashes, looked up by hash, so a guess costs no
    more than a miss and timing tells nothing."""

    def __init__(self, clock: Clock, lifetime: float = LINK_LIFETIME) -> None:
        self.clock, self.lifetime = clock, lifetime
        self._links: OrderedDict[str, tuple[str, float]] = OrderedDict()  # hash -> (user, expires)
        self._lock = threading.Lock()

    def mint(self, user: str) -> str:
        token = _b64url(secrets.token_bytes(TOKEN_BYTES))
        with self._lock:
            self._links[token_hash(token)] = (check_name(user), self.clock() + self.lifetime)
            while len(self._links) > MAX_LINKS:
                self._links.popitem(last=False)
        return token

    def redeem(self, token: object) -> str | None:
        """The user a link signs in, once; None for an unknown, used, malformed or expired link."""
        if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
            return None
        with self._lock:
            found = self._links.pop(token_hash(token), None)
        if found is None or self.clock() >= found[1]:
            return None
        return found[0]


# ------------------------------------------------------------------ the cookie


def session_cookie(token: str, *, secure: bool, max_age: float | None = LIFETIME) -> str:
    """A Set-Cookie header value carrying the session token: HttpOnly (no script reads it), SameSite=Strict
    (no other site sends it), Path=/, and Secure when the console is served over TLS (directly or behind a
    proxy that says so)."""
    if not TOKEN_RE.fullmatch(token):
        raise ValueError("not a session token")
    parts = [f"{COOKIE_NAME}={token}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def expired_cookie(*, secure: bool) -> str:
    """A Set-Cookie header value that makes the browser forget the session cookie (sign-out)."""
    parts = [f"{COOKIE_NAME}=", "Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=0"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def default_users_path(is_root: bool | None = None, home: str | None = None) -> Path:
    """/etc/pilot/console-users for root, else ~/.config/pilot/console-users (as pilot.console.config)."""
    if is_root is None:
        is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if is_root:
        return Path("/etc/pilot/console-users")
    return Path(home or Path.home()) / ".config" / "pilot" / "console-users"
