"""What the service user must be granted for exactly the actions a profile uses.

polkit is the tool (one rule, the named logind actions, one user): the actions
ask logind over D-Bus, which asks polkit, and the service's NoNewPrivileges=true
rules out sudo, so there is no sudoers alternative to offer. systemd's manage-units action is
never granted whole (it would let the service stop sshd): the rule grants exactly the
(unit, verb) pairs the profile's systemd.* commands name, on polkit's `unit` and `verb` details
(a second check in the same rule).
sysfs writes (CPU frequency, backlight) need group write on the files, via tmpfiles.d.

These files are run or parsed as root, and some of their words come from outside the code: the
profile's name is its file name, the user name comes from the profile or the command line. So no
such word is ever written as it comes. Names must match a small character set (`check_name`,
`check_user`; anything else is refused with the reason), and then every word is written with the
target's own quoting anyway: JavaScript strings are JSON with every non-ASCII character escaped
(U+2028 and U+2029 end a line in JavaScript), comments hold only printable ASCII, and tmpfiles.d
fields are checked against the characters that format takes unquoted.
"""

from __future__ import annotations

import argparse
import json
import re

from pilot.plan import Command, Plan
from pilot.registry import ACTIONS, Entry

MULTI_SESSION = {"power-off", "reboot", "suspend", "hibernate"}
# systemd's polkit action for starting and stopping units: never granted as a whole (it would let the
# service user stop sshd), only per (unit, verb) the profile names, checked on polkit's details.
MANAGE_UNITS = "org.freedesktop.systemd1.manage-units"
UNIT_VERBS = {"systemd.start": "start", "systemd.stop": "stop", "systemd.restart": "restart"}

NAME_RE = re.compile(r"[A-Za-z0-9._-]+\Z")  # profile names, file names written into generated files
# a user name useradd, polkit, sudoers and systemd's User= all take as a name: it starts with a letter
# or `_` (never a digit: systemd reads `User=0` as uid 0, root; never `-`: useradd would see an option)
USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,31}\Z")
POLKIT_ID_RE = re.compile(r"[A-Za-z0-9._-]+\Z")
SYSFS_PATTERN_RE = re.compile(r"/[A-Za-z0-9._/*?:@+-]+\Z")  # a tmpfiles.d path field without quoting


class UnsafeName(ValueError):
    """A name that cannot go into a generated file; the message names it, its origin and the rule."""


def _shown(text: str) -> str:
    """`text` as it may appear in an error message: quoted, non-ASCII and controls escaped, bounded."""
    shown = json.dumps(text, ensure_ascii=True)
    return shown if len(shown) <= 120 else shown[:117] + '..."'


def check_name(name: str, *, what: str = "profile name", origin: str | None = None) -> str:
    """`name` if it is made of A-Z a-z 0-9 . _ - only (and is not `.`, `..` or starts with `-`)."""
    if isinstance(name, str) and NAME_RE.match(name) and name not in (".", "..") and not name.startswith("-"):
        return name
    where = f" (from {_shown(origin)})" if origin else ""
    raise UnsafeName(
        f"{what} {_shown(str(name))}{where} may contain only letters A-Z a-z, digits, `.`, `_` and `-` "
        f"(and may not start with `-`): it is written into polkit, systemd, sudoers and tmpfiles files; "
        f"rename it"
    )


def check_user(name: str) -> str:
    """`name` if it is a safe service user name (a letter or `_`, then letters, digits, `.`, `_`, `-`;
    at most 32 characters), else UnsafeName (a ValueError) saying why."""
    if isinstance(name, str) and USER_RE.match(name):
        return name
    raise UnsafeName(
        f"user name {_shown(str(name))} is not allowed: it must start with a letter or `_` and contain only "
        f"letters, digits, `.`, `_` and `-` (at most 32 characters); an all-digit name would be read as a uid"
    )


def user_arg(text: str) -> str:
    """argparse `type=` for `--user`: check_user, reported as a usage error."""
    try:
        return check_user(text)
    except UnsafeName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def profile_name(plan: Plan) -> str:
    """The plan's profile name, checked: it comes from a file name, which may hold anything."""
    return check_name(plan.profile, origin=plan.sources[0] if plan.sources else None)


def js_string(text: str) -> str:
    """A JavaScript string literal: JSON with every non-ASCII character escaped, so U+2028/U+2029
    (line terminators in JavaScript, not in JSON) and every control are `\\uXXXX`."""
    return json.dumps(text, ensure_ascii=True)


def comment(text: str) -> str:
    """Text for a `//` or `#` comment: printable ASCII only (anything else `\\uXXXX`), so a comment
    can never end early and start a line of code."""
    return "".join(ch if " " <= ch <= "~" else f"\\u{ord(ch):04x}" for ch in text)


def needed(plan: Plan) -> list[tuple[str, str]]:
    """(command id, privilege) for every command whose action needs one and that may run: a command left
    out of `policies.allow` is refused on every path (MQTT, rules, schedules), so it is granted nothing."""
    return [(command.id, entry.privilege) for command, entry in _runnable(plan) if entry.privilege]


def _runnable(plan: Plan) -> list[tuple[Command, Entry]]:
    """(command, its registry entry) for every command of a known action that `policies.allow` lets run."""
    allow = plan.policy.allow
    out = []
    for command in plan.commands:
        entry = ACTIONS.get(command.action)
        if entry is not None and (allow is None or command.id in allow):
            out.append((command, entry))
    return out


def unit_grants(plan: Plan) -> list[tuple[str, str, str]]:
    """(command id, unit, verb) for every command that may run and needs systemd's manage-units, each
    unit checked against the unit-name pattern; a command that needs it for no named unit is refused."""
    from pilot.probes.systemd import check_unit

    out = []
    for command, entry in _runnable(plan):
        if entry.privilege != MANAGE_UNITS:
            continue
        verb = UNIT_VERBS.get(command.action)
        if verb is None:
            raise UnsafeName(
                f"command {_shown(command.id)} uses {_shown(command.action)}, which needs {MANAGE_UNITS} for no "
                "named unit; Pilot grants that only per unit (systemd.start, systemd.stop, systemd.restart)"
            )
        try:
            unit = check_unit(command.args.get("unit"))
        except ValueError as exc:
            raise UnsafeName(f"command {_shown(command.id)}: {exc}") from None
        out.append((command.id, unit, verb))
    return out


def polkit_ids(privileges: list[str]) -> list[str]:
    ids: list[str] = []
    for privilege in privileges:
        if not privilege.startswith("org.") or privilege == MANAGE_UNITS:  # granted per unit, never whole
            continue
        if not POLKIT_ID_RE.match(privilege):
            raise UnsafeName(f"polkit action id {_shown(privilege)} is not a plain dotted name")
        ids.append(privilege)
        tail = privilege.rsplit(".", 1)[-1]
        if privilege.startswith("org.freedesktop.login1.") and tail in MULTI_SESSION:
            ids.append(f"{privilege}-multiple-sessions")  # others logged in must not block the action
    return sorted(set(ids))


def render_polkit(plan: Plan, user: str = "pilot") -> str:
    """Only the polkit rules file (empty when no command needs a polkit action).

    Its code is fixed text; what varies is either a JavaScript string literal (`js_string`) or a
    comment (`comment`), and the names are checked before that, so no input can add code."""
    user = check_user(user)
    name = profile_name(plan)
    pairs = needed(plan)
    ids = polkit_ids([p for _, p in pairs])
    units = unit_grants(plan)
    if not ids and not units:
        return ""
    used_by = ", ".join(f"{cid} ({priv})" for cid, priv in pairs if priv.startswith("org.") and priv != MANAGE_UNITS)
    used_by = ", ".join(filter(None, [used_by, *(f"{cid} ({verb} {unit})" for cid, unit, verb in units)]))
    lines = [
        "// /etc/polkit-1/rules.d/50-pilot.rules: generated by `pilot privileges` for profile " + comment(name),
        f"// grants {comment(user)} exactly what these commands need: {comment(used_by)}",
    ]
    lines.append("polkit.addRule(function(action, subject) {")  # one rule, one function: each part below
    if ids:
        quoted = ",\n        ".join(js_string(i) for i in ids)
        lines += [
            f"    if (subject.user == {js_string(user)} && [",
            f"        {quoted}",
            "    ].indexOf(action.id) >= 0) {",
            "        return polkit.Result.YES;",
            "    }",
        ]
    if units:
        granted = ",\n            ".join(
            f"[{js_string(unit)}, {js_string(verb)}]" for unit, verb in sorted({(u, v) for _, u, v in units})
        )
        lines += [
            "    // systemd units: only these verbs on these units (polkit's `unit` and `verb` details)",
            f"    if (subject.user == {js_string(user)} && action.id == {js_string(MANAGE_UNITS)}) {{",
            '        var unit = action.lookup("unit"), verb = action.lookup("verb");',
            "        var granted = [",
            f"            {granted}",
            "        ];",
            "        for (var i = 0; i < granted.length; i++) {",
            "            if (granted[i][0] === unit && granted[i][1] === verb) {",
            "                return polkit.Result.YES;",
            "            }",
            "        }",
            "    }",
        ]
    lines.append("});")
    return "\n".join(lines) + "\n"


def sysfs_patterns(plan: Plan) -> list[str]:
    """The sysfs path patterns the profile's actions write (`root: write PATTERN` privileges), each
    checked to be a plain path that a tmpfiles.d line or a unit can hold without quoting."""
    files = sorted({p.split("write ", 1)[1] for _, p in needed(plan) if p.startswith("root: write ")})
    for path in files:
        if not SYSFS_PATTERN_RE.match(path):
            raise UnsafeName(f"sysfs path {_shown(path)} has characters a tmpfiles.d line cannot hold")
    return files


def tmpfiles_lines(plan: Plan, user: str = "pilot") -> list[str]:
    """tmpfiles.d lines: group write for the service user on exactly the sysfs files it writes."""
    user = check_user(user)
    return [f"z {path} 0664 root {user} -" for path in sysfs_patterns(plan)]


def render(plan: Plan, user: str = "pilot") -> str:
    user = check_user(user)
    name = profile_name(plan)
    pairs = needed(plan)
    if not pairs:
        return f"# profile {comment(name)}: no command needs a privilege; nothing to grant\n"
    rule = render_polkit(plan, user)
    lines = rule.rstrip("\n").split("\n") if rule else [f"# profile {comment(name)}: no polkit action needed"]
    if any(p.startswith("org.freedesktop.") for _, p in pairs):
        lines += [
            "",
            "# Without polkit: these actions ask logind, systemd or power-profiles-daemon over D-Bus, and those ask",
            "# polkit; Pilot has no sudo path (the service runs with NoNewPrivileges=true, which blocks sudo).",
            "# On a system without polkit, run the service as root: `service: {user: root, allow_root: true}`.",
        ]
    files = tmpfiles_lines(plan, user)
    if files:
        lines += ["", "# sysfs writes: /etc/tmpfiles.d/pilot.conf (applied at boot; `systemd-tmpfiles --create`)"]
        lines += files
    return "\n".join(lines) + "\n"
