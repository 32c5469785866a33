"""notify.desktop: show a desktop notification with libnotify's `notify-send`.

notify-send talks to the notification daemon on the user's session bus, so the agent must
run in (or be given the environment of) a graphical session: it passes DISPLAY,
WAYLAND_DISPLAY, XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS through and nothing else.
The title and message follow a `--` so text starting with '-' is never read as an option.
"""

from __future__ import annotations

from typing import Any

from pilot.actions._base import ActionContext, ActionError, Call, Unsupported
from pilot.actions._common import SESSION_ENV, env_from, exec_call, value_text
from pilot.params import params, prop
from pilot.registry import ACTIONS

URGENCIES = ("low", "normal", "critical")
MAX_TEXT = 4096


def _available(ctx: ActionContext, **_: Any) -> str | None:
    if ctx.platform != "linux":
        return f"desktop notifications are not supported on {ctx.platform or 'this system'}"
    if not ctx.which("notify-send"):
        return "notify-send is not installed (libnotify-bin / libnotify)"
    if not any(ctx.environ.get(k) for k in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY")):
        return "no desktop session here (no DBUS_SESSION_BUS_ADDRESS, DISPLAY or WAYLAND_DISPLAY)"
    return None


@ACTIONS.register(
    "notify.desktop",
    params=params(
        {
            "title": prop(
                "string", "Notification title (summary); default: Pilot.", minLength=1, maxLength=256, default="Pilot"
            ),
            "message": prop(
                "string",
                "Message text; `{value}` in it is replaced by the command's value. "
                "Leave out to show the value itself (a text command).",
                maxLength=MAX_TEXT,
                **{"x-template": ["value"]},  # the placeholders it fills in: `pilot validate` checks them
            ),
            "urgency": prop("string", "Urgency: low, normal or critical.", enum=list(URGENCIES), default="normal"),
            "icon": prop("string", "Icon name from the icon theme, or an absolute path to an image.", minLength=1),
        },
        examples=[{"title": "Backup", "message": "Backup finished", "urgency": "low"}],
    ),
    privilege=None,
    platforms=("button", "text"),
    available=_available,
)
def desktop(
    ctx: ActionContext,
    value: Any = None,
    *,
    title: str = "Pilot",
    message: str | None = None,
    urgency: str = "normal",
    icon: str | None = None,
) -> list[Call]:
    """Show a desktop notification on this machine's screen."""
    reason = _available(ctx)
    if reason:
        raise Unsupported(reason)
    if urgency not in URGENCIES:
        raise ActionError(f"urgency must be low, normal or critical, not {str(urgency)[:20]!r}")
    text = None if value in (None, "PRESS") else value_text(value)
    if message is not None:
        body = message.replace("{value}", text or "")
    elif text:
        body = text
    else:
        raise ActionError("notify.desktop needs `message` in args, or a text value to show")
    if not body.strip():
        raise ActionError("the notification message is empty")
    argv = ["notify-send", f"--urgency={urgency}", "--app-name=Pilot"]
    if icon:
        argv.append(f"--icon={icon}")
    argv += ["--", (title or "Pilot")[:256], body[:MAX_TEXT]]
    return [exec_call(argv, timeout=10.0, env=env_from(ctx, SESSION_ENV))]
