"""Session actions: lock the screen, log a user out (logind's `loginctl` on Linux).

`loginctl lock-sessions` asks every session's screen locker to lock (the desktop must
have one listening to logind's Lock signal, as GNOME, KDE, xss-lock and swayidle do).
Windows dispatches to `_windows.py` (argv only, untested on real Windows); there the agent
must run in the user's interactive session.
"""

from __future__ import annotations

from typing import Any

from pilot.actions import _windows
from pilot.actions._base import ActionContext, ActionError, Call, Unsupported
from pilot.actions._common import SAFE_NAME, check_name, exec_call, is_windows
from pilot.params import params, prop
from pilot.registry import ACTIONS

_SESSION = prop(
    "string", "logind session id (see `loginctl list-sessions`); leave out for every session.", pattern=SAFE_NAME
)


def _available(ctx: ActionContext, **_: Any) -> str | None:
    if is_windows(ctx):
        return None
    if ctx.platform != "linux":
        return f"session actions are not supported on {ctx.platform or 'this system'}"
    if not ctx.which("loginctl"):
        return "loginctl (systemd-logind) is not installed"
    return None


def _require(ctx: ActionContext) -> None:
    reason = _available(ctx)
    if reason:
        raise Unsupported(reason)


@ACTIONS.register(
    "session.lock",
    params=params({"session": _SESSION}, examples=[{"session": "2"}]),
    privilege="org.freedesktop.login1.lock-sessions",
    platforms=("button",),
    available=_available,
)
def lock(ctx: ActionContext, value: Any = None, *, session: str | None = None) -> list[Call]:
    """Lock the screen of every session, or of one session."""
    _require(ctx)
    if is_windows(ctx):
        if session is not None:
            raise Unsupported("`session` is Linux-only; Windows locks the agent's own session")
        return [exec_call(_windows.lock())]
    if session is None:
        return [exec_call(("loginctl", "lock-sessions"))]
    return [exec_call(("loginctl", "lock-session", check_name(session, "session")))]


@ACTIONS.register(
    "session.logout",
    params=params(
        {
            "user": prop(
                "string",
                "User to log out (all of their sessions); default: the user the agent runs as, unless that is root.",
                pattern=SAFE_NAME,
            ),
            "session": prop("string", "logind session id to end instead of a whole user.", pattern=SAFE_NAME),
        },
        examples=[{"user": "alice"}, {"session": "2"}],
        **{"not": {"required": ["user", "session"]}},
    ),
    privilege="org.freedesktop.login1.manage",
    platforms=("button",),
    available=_available,
)
def logout(ctx: ActionContext, value: Any = None, *, user: str | None = None, session: str | None = None) -> list[Call]:
    """Log a user out by ending their sessions (running programs are killed, unsaved work is lost).

    With neither `user` nor `session`, the agent's own user ($USER) is logged out; when the
    agent runs as root that would end root's sessions, so an explicit `user` is required.
    """
    _require(ctx)
    if user is not None and session is not None:
        raise ActionError("give `user` or `session`, not both")
    if is_windows(ctx):
        if user is not None or session is not None:
            raise Unsupported("`user` and `session` are Linux-only; Windows logs out the agent's own session")
        return [exec_call(_windows.logout())]
    if session is not None:
        return [exec_call(("loginctl", "terminate-session", check_name(session, "session")))]
    if user is None:
        user = ctx.environ.get("USER") or ctx.environ.get("LOGNAME")
        if not user:
            raise ActionError("no user to log out: set `user` (or `session`) in args")
        if user == "root":
            raise ActionError("the agent runs as root: set `user` to the user to log out")
    return [exec_call(("loginctl", "terminate-user", check_name(user, "user")))]
