"""session.lock / session.logout: loginctl argv, argument checks, Windows argv."""

from __future__ import annotations

import pytest

from pilot.actions import ActionError, Call, Unsupported, session
from pilot.registry import ACTIONS


def execs(*argvs: tuple[str, ...]) -> list[Call]:
    return [Call(kind="exec", argv=argv, timeout=30.0) for argv in argvs]


def test_lock_every_session_or_one(make_ctx) -> None:
    ctx = make_ctx(tools=["loginctl"])
    assert session.lock(ctx, "PRESS") == execs(("loginctl", "lock-sessions"))
    assert session.lock(ctx, "PRESS", session="c2") == execs(("loginctl", "lock-session", "c2"))


def test_lock_refuses_an_option_as_session_id(make_ctx) -> None:
    with pytest.raises(ActionError, match="not a valid name"):
        session.lock(make_ctx(tools=["loginctl"]), "PRESS", session="--all")


def test_logout_user_session_and_default_user(make_ctx) -> None:
    ctx = make_ctx(tools=["loginctl"], environ={"USER": "alice"})
    assert session.logout(ctx, "PRESS") == execs(("loginctl", "terminate-user", "alice"))
    assert session.logout(ctx, "PRESS", user="bob") == execs(("loginctl", "terminate-user", "bob"))
    assert session.logout(ctx, "PRESS", session="3") == execs(("loginctl", "terminate-session", "3"))
    only_logname = make_ctx(tools=["loginctl"], environ={"LOGNAME": "carol"})
    assert session.logout(only_logname) == execs(("loginctl", "terminate-user", "carol"))


def test_logout_refusals(make_ctx) -> None:
    with pytest.raises(ActionError, match="runs as root: set `user`"):
        session.logout(make_ctx(tools=["loginctl"], environ={"USER": "root"}))
    with pytest.raises(ActionError, match="no user to log out"):
        session.logout(make_ctx(tools=["loginctl"], environ={}))
    with pytest.raises(ActionError, match="not both"):
        session.logout(make_ctx(tools=["loginctl"]), user="alice", session="2")
    with pytest.raises(ActionError, match="not a valid name"):
        session.logout(make_ctx(tools=["loginctl"]), user="-h")


def test_schema_refuses_user_and_session_together() -> None:
    import jsonschema

    schema = ACTIONS.get("session.logout").params
    jsonschema.validate({"user": "alice"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"user": "alice", "session": "2"}, schema)


def test_without_loginctl_it_is_unsupported(make_ctx) -> None:
    with pytest.raises(Unsupported, match="loginctl .* not installed"):
        session.lock(make_ctx(tools=[]))
    with pytest.raises(Unsupported, match="loginctl .* not installed"):
        session.logout(make_ctx(tools=[], environ={"USER": "alice"}))
    assert "loginctl" in ACTIONS.get("session.lock").available(make_ctx(tools=[]))
    assert ACTIONS.get("session.lock").available(make_ctx(tools=["loginctl"])) is None


def test_windows_lock_and_logout(make_ctx) -> None:
    ctx = make_ctx(platform="windows")
    assert session.lock(ctx) == execs(("rundll32.exe", "user32.dll,LockWorkStation"))
    assert session.logout(ctx) == execs(("shutdown", "/l"))
    with pytest.raises(Unsupported, match="Linux-only"):
        session.lock(ctx, session="2")
    with pytest.raises(Unsupported, match="Linux-only"):
        session.logout(ctx, user="alice")
