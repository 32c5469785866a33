"""systemd.start / systemd.stop / systemd.restart: one named unit, as the profile names it.

The unit name is fixed in the profile and checked against a strict pattern (the probe's), so
it is one argv element that cannot read as an option; no command value reaches it. The
service user needs polkit's `org.freedesktop.systemd1.manage-units`, and `pilot privileges`
grants it for exactly these units and verbs (the rule checks polkit's `unit` and `verb`
details), never for every unit. `--no-ask-password`: never wait for a password prompt.
"""

from __future__ import annotations

from typing import Any

from pilot.actions._base import ActionContext, ActionError, Call, Unsupported
from pilot.actions._common import exec_call
from pilot.params import params
from pilot.probes.systemd import UNIT, check_unit
from pilot.registry import ACTIONS

MANAGE_UNITS = "org.freedesktop.systemd1.manage-units"
VERBS = ("start", "stop", "restart")


def _available(ctx: ActionContext, unit: Any = None, **_: Any) -> str | None:
    if ctx.platform != "linux":
        return f"systemd actions are not supported on {ctx.platform or 'this system'}"
    if not ctx.which("systemctl"):
        return "systemctl is not installed"
    if unit is not None:
        try:
            check_unit(unit)
        except ValueError as exc:
            return str(exc)
    return None


def _plan(ctx: ActionContext, verb: str, unit: Any) -> list[Call]:
    reason = _available(ctx)
    if reason:
        raise Unsupported(reason)
    try:
        name = check_unit(unit)
    except ValueError as exc:
        raise ActionError(str(exc)) from None
    return [exec_call(("systemctl", "--no-ask-password", verb, "--", name), timeout=90)]


def _register(verb: str, summary: str) -> None:
    def action(ctx: ActionContext, value: Any = None, *, unit: str) -> list[Call]:
        return _plan(ctx, verb, unit)

    action.__doc__ = (
        f"{summary}\n\nRuns `systemctl --no-ask-password {verb} -- UNIT` for the unit named in the profile; "
        "`pilot privileges` grants the service user exactly this verb on exactly this unit through polkit."
    )
    action.__name__ = verb
    ACTIONS.register(
        f"systemd.{verb}",
        params=params({"unit": UNIT}, required=("unit",), examples=[{"unit": "backup.service"}]),
        privilege=MANAGE_UNITS,
        platforms=("button",),
        available=_available,
    )(action)


_register("start", "Start a systemd unit named in the profile.")
_register("stop", "Stop a systemd unit named in the profile.")
_register("restart", "Restart a systemd unit named in the profile (start it if it is stopped).")
