"""The console's sign-in logic (pilot.console.auth): the users file, passwords, sessions, CSRF, the login limiter.

Clocks are injected; sessions live in a real SQLite store in the test's folder. Hashes are made with cheap argon2
parameters except where the default parameters themselves are what is pinned.
"""

from __future__ import annotations

import os
import stat

import pytest
from argon2 import PasswordHasher

from pilot.agent import signing
from pilot.console import auth
from pilot.console.auth import LoginLimiter, PasswordError, Role, Sessions, UsersFile, UsersFileError
from pilot.console.storage import open_storage

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def users(tmp_path) -> UsersFile:
    return UsersFile(tmp_path / "console-users", hasher=FAST)


@pytest.fixture
def store(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'console.db'}")
    yield storage
    storage.close()


def write_private(path, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(data)
    path.chmod(0o600)


# ------------------------------------------------------------------ users and passwords


def test_add_then_verify_returns_the_user_with_its_role(users):
    users.add("alice", "operator", PASSWORD)
    user = users.verify("alice", PASSWORD)
    assert user is not None
    assert (user.name, user.role) == ("alice", Role.OPERATOR)


def test_a_wrong_password_and_an_unknown_user_are_both_none(users):
    users.add("alice", "admin", PASSWORD)
    assert users.verify("alice", PASSWORD + "x") is None
    assert users.verify("bob", PASSWORD) is None
    assert users.verify(None, PASSWORD) is None
    assert users.verify("alice", None) is None


def test_an_unknown_user_is_checked_against_a_dummy_hash_so_it_costs_a_verification(users):
    users.add("alice", "admin", PASSWORD)
    calls = []

    class Counting(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002 - argon2's own parameter name
            calls.append(hash)
            return super().verify(hash, password)

    counting = UsersFile(users.path, hasher=Counting(time_cost=1, memory_cost=8, parallelism=1))
    assert counting.verify("nobody", PASSWORD) is None
    assert counting.verify("Not A Name!", PASSWORD) is None
    assert counting.verify("alice", PASSWORD) is not None
    assert len(calls) == 3
    assert calls[0] == calls[1] != calls[2]  # the dummy hash, never a real user's


def test_the_file_is_written_0600_as_name_role_hash_lines(users):
    users.add("alice", Role.ADMIN, PASSWORD)
    users.add("bob", "viewer", PASSWORD)
    assert stat.S_IMODE(os.stat(users.path).st_mode) == 0o600
    lines = users.path.read_text().splitlines()
    assert [line.split(":", 2)[:2] for line in lines] == [["alice", "admin"], ["bob", "viewer"]]
    assert all(line.split(":", 2)[2].startswith("$argon2id$") for line in lines)


def test_the_default_hasher_is_argon2id_with_argon2_cffi_defaults(tmp_path):
    users = UsersFile(tmp_path / "u")
    users.add("alice", "admin", PASSWORD)
    hashed = users.path.read_text().split(":", 2)[2].strip()
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_a_hash_with_old_parameters_is_replaced_after_a_successful_login(tmp_path):
    cheap = UsersFile(tmp_path / "u", hasher=FAST)
    cheap.add("alice", "admin", PASSWORD)
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    users = UsersFile(tmp_path / "u", hasher=stronger)
    assert users.verify("alice", PASSWORD + "!") is None
    assert "m=8,t=1,p=1" in users.path.read_text()  # a failed login changes nothing
    assert users.verify("alice", PASSWORD) is not None
    assert "$argon2id$v=19$m=16,t=2,p=1$" in users.path.read_text()
    assert users.verify("alice", PASSWORD) is not None


def test_set_password_set_role_remove_and_list(users):
    users.add("bob", "viewer", PASSWORD)
    users.add("alice", "viewer", PASSWORD)
    users.set_password("alice", "another password")
    users.set_role("bob", "admin")
    assert users.verify("alice", PASSWORD) is None
    assert users.verify("alice", "another password") is not None
    assert [(u.name, u.role) for u in users.list()] == [("alice", Role.VIEWER), ("bob", Role.ADMIN)]
    users.remove("alice")
    assert [u.name for u in users.list()] == ["bob"]
    assert users.get("alice") is None


def test_editing_a_user_that_is_not_there_or_adding_one_twice_is_refused(users):
    users.add("alice", "viewer", PASSWORD)
    with pytest.raises(UsersFileError, match="user 'alice' already exists in"):
        users.add("alice", "admin", PASSWORD)
    for edit in (
        lambda: users.set_role("bob", "admin"),
        lambda: users.remove("bob"),
        lambda: users.set_password("bob", PASSWORD),
    ):
        with pytest.raises(UsersFileError, match="no user 'bob' in"):
            edit()


def test_comments_and_blank_lines_survive_an_edit(users):
    users.add("alice", "viewer", PASSWORD)
    text = users.path.read_text()
    write_private(users.path, "# the console's users\n\n" + text + "# end\n")
    users.set_role("alice", "operator")
    lines = users.path.read_text().splitlines()
    assert lines[0] == "# the console's users" and lines[1] == "" and lines[-1] == "# end"
    assert lines[2].startswith("alice:operator:$argon2id$")


def test_a_change_to_the_file_is_seen_without_a_new_object(users, tmp_path):
    users.add("alice", "viewer", PASSWORD)
    assert users.get("alice").role == Role.VIEWER
    other = UsersFile(users.path, hasher=FAST)  # another process: `pilot console user role`
    other.set_role("alice", "admin")
    other.add("carol", "operator", PASSWORD)
    assert users.get("alice").role == Role.ADMIN
    assert users.verify("carol", PASSWORD) is not None


def test_a_missing_file_has_no_users_and_edits_other_than_add_say_how_to_create_it(users):
    assert users.list() == []
    assert users.verify("alice", PASSWORD) is None
    with pytest.raises(UsersFileError, match="does not exist; create it with `pilot console user add NAME"):
        users.remove("alice")


def test_the_temporary_file_is_gone_after_a_write(users):
    users.add("alice", "viewer", PASSWORD)
    users.set_role("alice", "admin")
    assert sorted(p.name for p in users.path.parent.iterdir() if p.name != "console.db") == [
        ".console-users.lock",
        "console-users",
    ]


# ------------------------------------------------------------------ the file as a secret


@pytest.mark.parametrize("mode, word", [(0o640, "readable"), (0o604, "readable"), (0o620, "writable")])
def test_a_users_file_others_can_use_is_refused_naming_file_and_mode(users, mode, word):
    users.add("alice", "admin", PASSWORD)
    users.path.chmod(mode)
    with pytest.raises(UsersFileError) as info:
        users.get("alice")
    assert str(info.value) == (
        f"users file {users.path} is {word} by others (mode {mode:04o}); run: chmod 600 {users.path}"
    )


def test_a_users_file_that_is_a_symbolic_link_is_refused(users, tmp_path):
    real = tmp_path / "real"
    write_private(real, "")
    users.path.symlink_to(real)
    with pytest.raises(UsersFileError, match="is a symbolic link; Pilot does not follow links to a users file"):
        users.list()
    with pytest.raises(UsersFileError, match="symbolic link"):
        users.add("alice", "admin", PASSWORD)
    assert real.read_text() == ""


def test_a_users_file_owned_by_another_user_is_refused(users, monkeypatch):
    users.add("alice", "admin", PASSWORD)
    if os.geteuid() == 0:
        os.chown(users.path, 4242, -1)
        foreign, me = 4242, 0
    else:  # without root the file cannot be given away: the effective uid is made another one instead
        foreign, me = os.geteuid(), os.geteuid() + 1
        monkeypatch.setattr(signing.os, "geteuid", lambda: me)
    fresh = UsersFile(users.path, hasher=FAST)
    with pytest.raises(UsersFileError) as info:
        fresh.list()
    assert str(info.value) == (
        f"users file {users.path} is owned by uid {foreign}, not by the service user (uid {me}) or root; "
        f"run: chown {me} {users.path}"
    )
    # the named owner (the console's service user, for root's `pilot console user`) is accepted
    assert [u.name for u in UsersFile(users.path, hasher=FAST, owner_uid=foreign).list()] == ["alice"]


def test_a_rewrite_as_root_keeps_the_owner_the_console_runs_as(users):
    if os.geteuid() != 0:
        users.add("alice", "admin", PASSWORD)
        assert os.stat(users.path).st_uid == os.geteuid()
        return
    users.add("alice", "admin", PASSWORD)
    os.chown(users.path, 4242, 4343)
    as_root = UsersFile(users.path, hasher=FAST, owner_uid=4242)
    as_root.set_role("alice", "viewer")
    st = os.stat(users.path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4242, 4343, 0o600)
    new = UsersFile(users.path.with_name("new-users"), hasher=FAST, owner_uid=4242)
    new.add("bob", "viewer", PASSWORD)
    assert os.stat(new.path).st_uid == 4242


# ------------------------------------------------------------------ hand-edited lines


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "alice:superuser:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            ":2: role 'superuser' is not one of viewer, operator, admin",
        ),
        ("alice:admin:$argon2id$broken", ":2: the password hash of 'alice' is not an argon2 hash"),
        ("alice:admin:plaintext-password", ":2: the password hash of 'alice' is not an argon2 hash"),
        ("alice:admin", ":2: expected `name:role:argon2-hash`"),
        ("Alice:admin:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", ":2: user name 'Alice' is not allowed"),
    ],
)
def test_a_bad_hand_edited_line_is_a_clear_error_naming_file_and_line(users, line, message):
    write_private(users.path, "# users\n" + line + "\n")
    with pytest.raises(UsersFileError) as info:
        users.list()
    assert str(info.value).startswith(f"{users.path}{message}")


def test_a_name_twice_in_the_file_names_both_lines(users):
    users.add("alice", "admin", PASSWORD)
    line = users.path.read_text()
    write_private(users.path, line + "\n" + line)
    with pytest.raises(UsersFileError, match=r":3: user 'alice' is already on line 1$"):
        users.list()


def test_non_utf8_bytes_in_the_file_name_the_line(users):
    users.add("alice", "admin", PASSWORD)
    write_private(users.path, users.path.read_bytes() + b"b\xffb:viewer:x\n")
    with pytest.raises(UsersFileError) as info:
        users.list()
    assert str(info.value) == f"{users.path}:2: not UTF-8 text"


def test_a_control_character_in_a_hand_edited_name_is_refused_escaped(users):
    write_private(users.path, "al\x1b[31mice:admin:$argon2id$x\n")
    with pytest.raises(UsersFileError) as info:
        users.list()
    assert "\x1b" not in str(info.value)
    assert "al\\x1b[31mice" in str(info.value)


# ------------------------------------------------------------------ hostile names and passwords


@pytest.mark.parametrize(
    "name", ["", "a" * 33, "al:ice", "ali\nce", "alice\n", "ALICE", "al ice", "al/ice", "\x00", "älice", None, 7]
)
def test_names_outside_the_allowed_set_are_refused_before_anything_is_written(users, name):
    with pytest.raises(auth.AuthError, match="is not allowed: use 1 to 32 of a-z 0-9 _ . -"):
        users.add(name, "viewer", PASSWORD)
    assert not users.path.exists()


@pytest.mark.parametrize(
    "password, message",
    [
        ("short", "at least 8"),
        ("x" * 1025, "at most 1024"),
        ("line\nbreak-in-it", "control characters"),
        ("nul\x00in-the-middle", "control characters"),
        ("del\x7fin-the-middle", "control characters"),
        ("lone\ud800surrogate", "control characters"),
        (b"bytes-password", "is text"),
    ],
)
def test_passwords_the_policy_refuses(users, password, message):
    with pytest.raises(PasswordError, match=message):
        users.add("alice", "viewer", password)
    assert users.verify("alice", password) is None


def test_the_longest_password_is_taken_and_unicode_is_fine(users):
    users.add("alice", "viewer", "é" * 1024)
    assert users.verify("alice", "é" * 1024) is not None
    assert users.verify("alice", "é" * 1023 + "e") is None


def test_a_10_mb_password_is_refused_without_hashing(users):
    users.add("alice", "viewer", PASSWORD)
    hashed = []

    class Refusing(PasswordHasher):
        def hash(self, password, **kw):
            hashed.append(len(password))
            return super().hash(password, **kw)

        def verify(self, hash, password):  # noqa: A002
            hashed.append(len(password))
            return super().verify(hash, password)

    hostile = UsersFile(users.path, hasher=Refusing(time_cost=1, memory_cost=8, parallelism=1))
    huge = "x" * (10 * 1024 * 1024)
    assert hostile.verify("alice", huge) is None
    with pytest.raises(PasswordError, match="at most 1024"):
        hostile.set_password("alice", huge)
    assert hashed == []


def test_role_parse_takes_only_the_three_lowercase_names():
    assert [Role.parse(n) for n in ("viewer", "operator", "admin")] == [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    for bad in ("Admin", "root", "", " admin", None, 3):
        with pytest.raises(ValueError, match="is not one of viewer, operator, admin"):
            Role.parse(bad)


# ------------------------------------------------------------------ sessions


def test_a_session_is_32_random_bytes_and_the_store_keeps_only_its_hash(users, store):
    import base64
    import hashlib

    clock = Clock()
    users.add("alice", "operator", PASSWORD)
    sessions = Sessions(store, clock, users=users)
    token, csrf = sessions.create(users.get("alice"))
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert len(base64.urlsafe_b64decode(csrf + "=")) == 32
    assert token != csrf
    assert store.get_session(token) is None
    record = store.get_session(hashlib.sha256(token.encode()).hexdigest())
    assert (record.user, record.role, record.csrf) == ("alice", "operator", csrf)
    assert (record.created, record.expires, record.last_seen) == (clock.now, clock.now + 7 * 86400, clock.now)
    session = sessions.lookup(token)
    assert (session.user, session.role, session.csrf) == ("alice", Role.OPERATOR, csrf)
    assert sessions.create(users.get("alice"))[0] != token


def test_a_session_ends_after_12_idle_hours(users, store):
    clock = Clock()
    users.add("alice", "viewer", PASSWORD)
    sessions = Sessions(store, clock, users=users)
    token, _ = sessions.create(users.get("alice"))
    clock.now += 12 * 3600 - 1
    assert sessions.lookup(token) is not None  # and that request counts as activity
    clock.now += 12 * 3600 - 1
    assert sessions.lookup(token) is not None
    clock.now += 12 * 3600
    assert sessions.lookup(token) is None
    assert store.get_session(auth.token_hash(token)) is None  # deleted, not only refused


def test_a_session_ends_7_days_after_sign_in_however_active(users, store):
    clock = Clock()
    start = clock.now
    users.add("alice", "viewer", PASSWORD)
    sessions = Sessions(store, clock, users=users)
    token, _ = sessions.create(users.get("alice"))
    while clock.now + 3600 < start + 7 * 86400:
        clock.now += 3600
        assert sessions.lookup(token) is not None
    clock.now = start + 7 * 86400
    assert sessions.lookup(token) is None


def test_idle_and_lifetime_are_configurable(users, store):
    clock = Clock()
    users.add("alice", "viewer", PASSWORD)
    sessions = Sessions(store, clock, users=users, idle=100, lifetime=250)
    token, _ = sessions.create(users.get("alice"))
    clock.now += 99
    assert sessions.lookup(token) is not None
    clock.now += 99
    assert sessions.lookup(token) is not None
    clock.now += 60
    assert sessions.lookup(token) is None
    with pytest.raises(ValueError):
        Sessions(store, clock, idle=0)


def test_last_seen_is_written_at_most_once_a_minute(users, store):
    clock = Clock()
    start = clock.now
    users.add("alice", "viewer", PASSWORD)
    sessions = Sessions(store, clock, users=users)
    token, _ = sessions.create(users.get("alice"))
    key = auth.token_hash(token)
    for step in (10, 20, 59):
        clock.now = start + step
        assert sessions.lookup(token).last_seen == start
        assert store.get_session(key).last_seen == start
    clock.now = start + 60
    assert sessions.lookup(token).last_seen == start + 60
    assert store.get_session(key).last_seen == start + 60
    clock.now = start + 100
    sessions.lookup(token)
    assert store.get_session(key).last_seen == start + 60


def test_revoke_ends_one_session_and_not_the_others(users, store):
    users.add("alice", "viewer", PASSWORD)
    sessions = Sessions(store, Clock(), users=users)
    first, _ = sessions.create(users.get("alice"))
    second, _ = sessions.create(users.get("alice"))
    sessions.revoke(first)
    assert sessions.lookup(first) is None
    assert sessions.lookup(second) is not None
    sessions.revoke("not a token")  # nothing to do, no error


def test_a_role_change_applies_at_the_next_request(users, store):
    users.add("alice", "admin", PASSWORD)
    sessions = Sessions(store, Clock(), users=users)
    token, _ = sessions.create(users.get("alice"))
    assert sessions.lookup(token).role == Role.ADMIN
    UsersFile(users.path, hasher=FAST).set_role("alice", "viewer")
    assert sessions.lookup(token).role == Role.VIEWER


def test_a_removed_user_is_signed_out_everywhere(users, store):
    users.add("alice", "admin", PASSWORD)
    sessions = Sessions(store, Clock(), users=users)
    first, _ = sessions.create(users.get("alice"))
    second, _ = sessions.create(users.get("alice"))
    UsersFile(users.path, hasher=FAST).remove("alice")
    assert sessions.lookup(first) is None
    assert store.get_session(auth.token_hash(second)) is None


def test_a_new_password_ends_the_sessions_signed_in_before_it(users, store):
    clock = Clock()
    users.add("alice", "admin", PASSWORD)
    sessions = Sessions(store, clock, users=users)
    old, _ = sessions.create(users.get("alice"))
    clock.now += 5
    UsersFile(users.path, hasher=FAST).set_password("alice", "a brand new one")
    clock.now += 5
    new, _ = sessions.create(users.verify("alice", "a brand new one"))
    assert sessions.lookup(old) is None
    assert sessions.lookup(new) is not None


def test_removing_and_adding_a_user_again_does_not_revive_old_sessions(users, store):
    clock = Clock()
    users.add("alice", "admin", PASSWORD)
    sessions = Sessions(store, clock, users=users)
    token, _ = sessions.create(users.get("alice"))
    clock.now += 1
    editor = UsersFile(users.path, hasher=FAST)
    editor.remove("alice")
    editor.add("alice", "admin", PASSWORD)  # no request in between: the store still has the session
    assert sessions.lookup(token) is None


@pytest.mark.parametrize(
    "token", [None, "", "x", "A" * 42, "A" * 44, "A" * 42 + "=", "A" * 42 + "\n", "é" * 43, 12345, b"A" * 43]
)
def test_malformed_cookies_are_no_session(users, store, token):
    sessions = Sessions(store, Clock(), users=users)
    assert sessions.lookup(token) is None


def test_purge_removes_sessions_past_their_end(users, store):
    clock = Clock()
    users.add("alice", "viewer", PASSWORD)
    sessions = Sessions(store, clock, users=users, lifetime=100)
    token, _ = sessions.create(users.get("alice"))
    clock.now += 101
    sessions.purge()
    assert store.get_session(auth.token_hash(token)) is None


# ------------------------------------------------------------------ CSRF and origin


def _session(csrf: str = "c" * 43) -> auth.Session:
    return auth.Session("h" * 64, "alice", Role.OPERATOR, csrf, 0.0, 1e9, 0.0)


def test_csrf_matches_only_the_sessions_own_token():
    session = _session()
    assert auth.check_csrf(session, "c" * 43)
    for forged in (None, "", "c" * 42, "c" * 42 + "d", "C" * 43, "c" * 43 + " ", "ç" * 43, "x" * 100_000, 7):
        assert not auth.check_csrf(session, forged), forged
    assert not auth.check_csrf(None, "c" * 43)


@pytest.mark.parametrize(
    "origin, host, scheme, same",
    [
        (None, "console.lan:8470", "http", True),
        ("", "console.lan:8470", "http", True),
        ("http://console.lan:8470", "console.lan:8470", "http", True),
        ("HTTP://Console.LAN:8470", "console.lan:8470", "http", True),
        ("https://console.lan", "console.lan", "https", True),
        ("https://console.lan:443", "console.lan", "https", True),
        ("https://console.lan/fleet?x=1", "console.lan", "https", True),  # a Referer
        ("http://console.lan", "console.lan", "https", False),
        ("https://evil.example", "console.lan", "https", False),
        ("https://console.lan.evil.example", "console.lan", "https", False),
        ("https://console.lan:8443", "console.lan", "https", False),
        ("null", "console.lan", "https", False),
        ("file:///etc/passwd", "console.lan", "https", False),
        ("https://console.lan:99999", "console.lan", "https", False),
        ("https://user@console.lan", "console.lan", "https", True),
        ("https://console.lan", "", "https", False),
        ("https://" + "a" * 5000, "a" * 5000, "https", False),
    ],
)
def test_same_origin(origin, host, scheme, same):
    assert auth.same_origin(origin, host, scheme) is same


# ------------------------------------------------------------------ the login limiter


def test_five_failures_lock_for_30_seconds_then_double_up_to_15_minutes():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(4):
        limiter.failed("10.0.0.1", "alice")
        assert limiter.check("10.0.0.1", "alice") is None
    expected = [30, 60, 120, 240, 480, 900, 900]
    for lock in expected:
        limiter.failed("10.0.0.1", "alice")
        assert limiter.check("10.0.0.1", "alice") == lock
        clock.now += lock - 1
        assert limiter.check("10.0.0.1", "alice") == 1
        clock.now += 1
        assert limiter.check("10.0.0.1", "alice") is None


def test_the_name_is_locked_from_every_address_and_the_address_for_every_name():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for i in range(5):
        limiter.failed(f"10.0.0.{i}", "alice")
    assert limiter.check("192.168.1.1", "alice") == 30
    assert limiter.check("10.0.0.9", "bob") is None
    for name in ("a", "b", "c", "d", "e"):
        limiter.failed("10.9.9.9", name)
    assert limiter.check("10.9.9.9", "zed") == 30


def test_a_success_resets_the_names_count_but_not_the_addresss():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(4):
        limiter.failed("10.0.0.1", "alice")
    limiter.succeeded("10.0.0.1", "alice")
    limiter.failed("10.0.0.2", "alice")
    assert limiter.check("10.0.0.2", "alice") is None  # the name starts over
    limiter.failed("10.0.0.1", "mallory")
    assert limiter.check("10.0.0.1", "anyone") == 30  # the address's fifth failure


def test_counts_are_forgotten_after_a_quiet_quarter_hour():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(4):
        limiter.failed("10.0.0.1", "alice")
    clock.now += 900
    limiter.failed("10.0.0.1", "alice")
    assert limiter.check("10.0.0.1", "alice") is None


def test_the_limiter_tracks_at_most_max_keys_per_table_oldest_dropped():
    clock = Clock()
    limiter = LoginLimiter(clock, max_keys=100, threshold=1)
    limiter.failed("10.0.0.0", "alice")
    for i in range(1, 1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", f"user{i}")
    assert len(limiter) == 200
    assert limiter.check("10.0.0.0", "nobody") is None  # the oldest address was dropped
    assert limiter.check("10.0.3.231", "nobody") == 30  # the newest is still locked


def test_hostile_names_share_one_key_and_addresses_are_cut():
    clock = Clock()
    limiter = LoginLimiter(clock, threshold=3)
    for i in range(3):
        limiter.failed(f"10.0.0.{i}", "x" * 1_000_000 + str(i))
    assert len(limiter) == 4  # three addresses, one key for every name that cannot exist
    assert limiter.check("10.1.1.1", "\n\x00 not a name") == 30
    assert limiter.check("10.1.1.1", "alice") is None
    limiter.failed("a" * 100_000, "alice")
    assert max(len(k) for k in limiter._addrs) == 64


# ------------------------------------------------------------------ the cookie


def test_the_session_cookie_is_httponly_strict_and_secure_over_tls():
    token = "t" * 43
    assert auth.session_cookie(token, secure=False, max_age=600) == (
        f"pilot_session={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=600"
    )
    assert auth.session_cookie(token, secure=True).endswith("; Max-Age=604800; Secure")
    assert auth.expired_cookie(secure=True) == "pilot_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
    with pytest.raises(ValueError):
        auth.session_cookie("x; Domain=evil", secure=False)


def test_the_default_users_file_is_in_etc_for_root_and_in_the_home_folder_otherwise(tmp_path):
    assert str(auth.default_users_path(is_root=True)) == "/etc/pilot/console-users"
    assert auth.default_users_path(is_root=False, home=str(tmp_path)) == tmp_path / ".config/pilot/console-users"
