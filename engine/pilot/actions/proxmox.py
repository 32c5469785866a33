"""Power actions on a Proxmox VE guest: start, shutdown (ACPI), stop (hard), reboot, suspend, resume.

Only for the commands of a `children:` set whose source is `proxmox.guests`: the engine adds the
guest it acts on (`target`: node, kind, vmid, from the last poll) and the set whose API connection
performs the request (`via`). The planned call is the exact request,
`POST /nodes/{node}/{qemu|lxc}/{vmid}/status/{action}`, which `--dry-run` shows and the recording
system records; every part of the path is checked here and again by the client before it is sent.
"""

from __future__ import annotations

import re
from typing import Any

from pilot.actions._base import ActionContext, ActionError, Call
from pilot.params import params, prop
from pilot.registry import ACTIONS

POWER = ("start", "shutdown", "stop", "reboot", "suspend", "resume")
_NODE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_SET = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _only_for_children(ctx: ActionContext, **args: Any) -> str | None:
    if "target" not in args:
        return "proxmox.power acts on a guest: use it through `children:` with source proxmox.guests"
    return None


@ACTIONS.register(
    "proxmox.power",
    params=params(
        {"power": prop("string", "What to do to the guest.", enum=list(POWER))},
        required=("power",),
        examples=[{"power": "shutdown"}],
    ),
    platforms=("button",),
    available=_only_for_children,
)
def power(
    ctx: ActionContext, value: Any = None, *, power: str, target: dict | None = None, via: str | None = None
) -> list[Call]:
    """Start, shut down (ACPI), stop (hard), reboot, suspend or resume one Proxmox VE guest."""
    if target is None or via is None:
        raise ActionError("proxmox.power acts on a guest of a `children:` set")
    node, kind, vmid = target.get("node"), target.get("kind"), target.get("vmid")
    if power not in POWER:
        raise ActionError(f"unknown power action {power!r}")
    if not (isinstance(node, str) and _NODE.match(node)) or kind not in ("qemu", "lxc"):
        raise ActionError("the guest's node or kind is not one Proxmox would report")
    if isinstance(vmid, bool) or not isinstance(vmid, int) or not 100 <= vmid <= 999_999_999:
        raise ActionError("the guest's vmid is not one Proxmox would report")
    if not _SET.match(via):
        raise ActionError("not a child set id")
    return [Call("request", method="POST", path=f"/nodes/{node}/{kind}/{vmid}/status/{power}", via=via)]
