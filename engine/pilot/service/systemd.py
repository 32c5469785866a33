"""`pilot service install|uninstall|status`: run Pilot under systemd, as a dedicated user, hardened.

Everything is computed first, as a `Changes` object: the files to write (with their
content) and the commands to run. `--print` shows it and stops; otherwise the files
are written (under `--root DIR` when given) and the commands go through one
`Runner`, the only place here that executes anything: tests hand it a
`RecordingRunner`, so no test ever runs systemctl, useradd or systemd-tmpfiles.

See docs/service.md for what the unit contains and why.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilot import environment

if TYPE_CHECKING:
    from pilot.diagnostics import Diagnostic
    from pilot.plan import Plan
    from pilot.profile.loader import Document

SERVICE = "pilot"
SYSTEM_UNIT = "/etc/systemd/system/pilot.service"
POLKIT_RULE = "/etc/polkit-1/rules.d/50-pilot.rules"
TMPFILES = "/etc/tmpfiles.d/pilot.conf"
CONFIG_DIR = "/etc/pilot"
STATE_DIR = "/var/lib/pilot"
DEFAULT_USER = "pilot"
WATCHDOG_SEC = 60
ADDRESS_FAMILIES = "AF_UNIX AF_INET AF_INET6 AF_NETLINK"

# ProtectHome= and PrivateTmp= hide these from the system service: nothing it runs or reads may live there.
HIDDEN_FROM_SYSTEM = {
    "/home/": "ProtectHome=true",
    "/root/": "ProtectHome=true",
    "/run/user/": "ProtectHome=true",
    "/tmp/": "PrivateTmp=true",
    "/var/tmp/": "PrivateTmp=true",
}


class InstallError(Exception):
    """Install cannot go on; the message says why and what to do."""


# ------------------------------------------------------------------ running commands


@dataclass
class Result:
    returncode: int = 0
    output: str = ""


class Runner:
    """Runs a command for real and returns its exit status and output."""

    def run(self, argv: Sequence[str]) -> Result:
        try:
            proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True)
        except OSError as exc:
            return Result(127, f"{argv[0]}: {exc}")
        return Result(proc.returncode, proc.stdout + proc.stderr)


class RecordingRunner(Runner):
    """Records commands instead of running them (PILOT_SERVICE_RECORD=FILE appends them as JSON lines).

    `results` maps a command (as a tuple) to the Result to answer; anything else succeeds."""

    def __init__(self, path: str | None = None, results: dict[tuple[str, ...], Result] | None = None) -> None:
        self.path = path
        self.results = results or {}
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str]) -> Result:
        self.calls.append(list(argv))
        if self.path:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(list(argv)) + "\n")
        return self.results.get(tuple(argv), Result(0, ""))


def default_runner() -> Runner:
    path = environment.get("PILOT_SERVICE_RECORD")
    return RecordingRunner(path) if path else Runner()


# ------------------------------------------------------------------ what install does


@dataclass(frozen=True)
class FileChange:
    path: str  # absolute, as on the target system (--root is added when writing)
    content: str
    mode: int = 0o644
    source: str | None = None  # the file this is a copy of


@dataclass(frozen=True)
class HostCommand:
    argv: tuple[str, ...]
    note: str = ""
    check: bool = True  # a failure stops install / uninstall


@dataclass
class Changes:
    mode: str  # "system" | "user"
    files: list[FileChange] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)  # files or folders (uninstall)
    commands_before: list[HostCommand] = field(default_factory=list)  # before any file is written
    commands: list[HostCommand] = field(default_factory=list)  # after
    warnings: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)  # install refuses while any is left
    notes: list[str] = field(default_factory=list)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def user_exists(name: str) -> bool:
    import pwd  # not on Windows, where pilot.service.windows still imports this module

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def pilot_command(override: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The absolute command line of the pilot in use, and the environment it needs (PYTHONPATH in a checkout)."""
    if override:
        return [os.path.abspath(override)], {}
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if os.path.basename(argv0) in ("pilot", "pilot.exe") and os.path.isfile(argv0):
        return [os.path.abspath(argv0)], {}
    beside = Path(sys.executable).parent / "pilot"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)], {}
    import pilot

    argv = [sys.executable, "-m", "pilot"]
    package_parent = str(Path(pilot.__file__).resolve().parent.parent)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pilot, os; print(os.path.dirname(os.path.dirname(os.path.realpath(pilot.__file__))))",
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd="/",
    )
    if probe.returncode != 0 or probe.stdout.strip() != package_parent:
        return argv, {"PYTHONPATH": package_parent}  # a source checkout: the interpreter alone cannot find it
    return argv, {}


# characters no unit file word may hold, quoted or not: controls (a newline ends the directive and
# starts another), DEL, C1 controls, Unicode line/paragraph separators and invisible format characters
UNIT_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]"
)
UNIT_PLAIN = re.compile(r"[A-Za-z0-9_./:@+,=%$-]+\Z")  # after escaping % and $: nothing else systemd treats specially
RW_PATH_RE = re.compile(r"-?/[A-Za-z0-9_./:@+,=-]*\Z")  # a ReadWritePaths= entry (space separated, unquoted)


class UnitValueError(ValueError):
    """A value that cannot be written into a unit file safely."""


def _unit_checked(arg: str, what: str) -> str:
    if not isinstance(arg, str):
        raise UnitValueError(f"{what} is not text")
    bad = UNIT_UNSAFE.search(arg)
    if bad:
        raise UnitValueError(
            f"{what} {json.dumps(arg[:100], ensure_ascii=True)} holds U+{ord(bad.group()):04X}, which a "
            f"systemd unit cannot hold: rename or move it"
        )
    return arg


def systemd_quote(arg: str, what: str = "a word of ExecStart") -> str:
    """One word of an Exec*= line: specifiers (`%`) and variables (`$`) escaped, and unless the word is
    plain, double-quoted with `\\` and `"` escaped. Control characters and line separators are
    refused (UnitValueError): no quoting makes a newline safe in a unit file."""
    text = _unit_checked(arg, what).replace("%", "%%").replace("$", "$$")
    if UNIT_PLAIN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_env(name: str, value: str) -> str:
    """`Environment=` line for one variable. There `$` is literal and `%` a specifier; the assignment is
    double-quoted with `\\` and `"` escaped; control characters are refused."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UnitValueError(f"environment variable name {name!r} is not a plain identifier")
    text = f"{name}={_unit_checked(value, f'the value of {name}')}".replace("%", "%%")
    if UNIT_PLAIN.match(text):
        return f"Environment={text}"
    return 'Environment="' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_comment(text: str) -> str:
    """A `#` comment line's text: printable ASCII only, so it can never end early."""
    from pilot.service.privileges import comment

    return comment(text)


def _service_core(start: str, env: dict | None) -> list[str]:
    """The [Service] lines system and user units share: readiness, reload, restarts, logging."""
    return [
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={start}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",  # a usage error or a refusal to run as root will not heal
        "RestartSec=5",
        "TimeoutStopSec=15",
        f"WatchdogSec={WATCHDOG_SEC}",
        "SyslogIdentifier=pilot",
        *_env_line({"PYTHONUNBUFFERED": "1", **(env or {})}),
    ]


def _env_line(env: dict[str, str]) -> list[str]:
    return [systemd_env(k, v) for k, v in sorted(env.items())]


# ------------------------------------------------------------------ privileges the profile needs


def sysfs_writes(plan: Plan) -> list[str]:
    """The sysfs path patterns the profile's actions write (`root: write PATTERN` privileges)."""
    from pilot.service.privileges import needed

    return sorted({p.split("write ", 1)[1] for _, p in needed(plan) if p.startswith("root: write ")})


def read_write_paths(patterns: list[str], sysfs_root: Path | None = None) -> list[str]:
    """ReadWritePaths= for sysfs patterns: systemd takes no globs, so the folder above the first glob,
    plus the real folders the matches resolve to on this host (backlight entries are symlinks into
    /sys/devices, which a bind mount of /sys/class/backlight does not cover). Each is prefixed with
    `-`: a folder missing at start (no backlight on this machine) is not an error."""
    if sysfs_root is None:
        sysfs_root = Path(environment.get("PILOT_SYSFS_ROOT") or "/sys")
    real_root = os.path.realpath(sysfs_root)
    out: list[str] = []
    for pattern in patterns:
        parts = pattern.split("/")
        first_glob = next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), len(parts) - 1)
        parent = "/".join(parts[:first_glob])
        if parent and parent not in out:
            out.append(parent)
        if not pattern.startswith("/sys/"):
            continue
        for match in sorted(glob.glob(os.path.join(str(sysfs_root), pattern[len("/sys/") :]))):
            real = os.path.dirname(os.path.realpath(match))
            if not real.startswith(real_root + "/"):
                continue
            path = "/sys/" + os.path.relpath(real, real_root)
            if not any(path == p or path.startswith(p + "/") for p in out):
                out.append(path)
    # systemd splits ReadWritePaths= at spaces and expands `%`: a folder with other characters is left out
    return ["-" + p for p in out if RW_PATH_RE.match("-" + p)]


def polkit_rule(plan: Plan, user: str) -> str | None:
    """The rules file for the named polkit actions, or None when no command needs one."""
    from pilot.service.privileges import render_polkit

    return render_polkit(plan, user) or None


def tmpfiles_conf(plan: Plan, user: str) -> str | None:
    """tmpfiles.d lines giving the service user's group write access to exactly the sysfs files it writes."""
    from pilot.service.privileges import tmpfiles_lines

    lines = tmpfiles_lines(plan, user)
    if not lines:
        return None
    return (
        f"# {TMPFILES}: written by `pilot service install` for profile {unit_comment(plan.profile)}\n"
        f"# group write on exactly the sysfs files its commands write; applied at boot and by install\n"
        + "\n".join(lines)
        + "\n"
    )


# ------------------------------------------------------------------ the profile and what it extends


def profile_copies(doc: Document, profile: Path, config_dir: str = CONFIG_DIR) -> list[tuple[Path, str]]:
    """(source, destination) for the profile and every file it extends that is not a shipped pack.

    Files beside the profile (or in folders below it) are copied with the same relative path, so
    `extends: ./common.yaml` resolves the same way from /etc/pilot. Anything else is refused."""
    from pilot.resources import profiles_dir

    profile = profile.resolve()
    home = profile.parent
    shipped = Path(profiles_dir()).resolve()
    out = [(profile, f"{config_dir}/{profile.name}")]
    for source in list(doc.sources)[1:]:
        real = Path(source).resolve()
        if real == profile or real.is_relative_to(shipped):
            continue
        if real.is_relative_to(home):
            out.append((real, f"{config_dir}/{real.relative_to(home).as_posix()}"))
            continue
        raise InstallError(
            f"{profile} extends {real}, which is neither a shipped pack nor in the profile's folder "
            f"({home}); install copies the profile and what it extends to {config_dir}/, so move "
            f"{real.name} beside the profile (or into a folder below it) and extend it from there"
        )
    _check_copies_compose_alike(doc, out, config_dir)
    return out


def _check_copies_compose_alike(doc: Document, copies: list[tuple[Path, str]], config_dir: str) -> None:
    """Compose the copies in a scratch folder laid out like config_dir: the same files must be found."""
    import tempfile

    from pilot.profile import loader

    with tempfile.TemporaryDirectory(prefix="pilot-install-") as scratch:
        back: dict[str, str] = {}
        for source, dest in copies:
            target = Path(scratch) / os.path.relpath(dest, config_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            back[os.path.realpath(target)] = os.path.realpath(source)
        composed, _ = loader.compose(Path(scratch) / os.path.relpath(copies[0][1], config_dir))
        found = {back.get(os.path.realpath(s), os.path.realpath(s)) for s in (composed.sources if composed else [])}
    expected = {os.path.realpath(s) for s in doc.sources}
    if found != expected:
        differ = ", ".join(sorted(found ^ expected)) or "(nothing)"
        raise InstallError(
            f"copied to {config_dir}/, the profile would extend different files ({differ}); "
            "extend shipped packs by name (`base/linux`, `pack:NAME/PROFILE`) and your own files "
            "by a path relative to the profile"
        )


def _referenced_files(plan: Plan) -> list[tuple[str, str]]:
    out = [("mqtt.password_file", plan.mqtt.password_file), ("policies.hmac.keyring", plan.policy.keyring)]
    if plan.mqtt.tls is not None:
        out += [
            ("mqtt.tls.ca_file", plan.mqtt.tls.ca_file),
            ("mqtt.tls.cert_file", plan.mqtt.tls.cert_file),
            ("mqtt.tls.key_file", plan.mqtt.tls.key_file),
        ]
    return [(k, v) for k, v in out if v]


def protect_home(plan: Plan) -> str:
    """`true`, or `read-only` when a sensor reads a path under /home: behind ProtectHome=true, /home is an empty
    mount, so disk.used_percent of /home would report that mount instead of the disk."""
    for sensor in plan.sensors:
        path = sensor.args.get("path") if isinstance(sensor.args, dict) else None
        if isinstance(path, str) and _hidden(path) == "ProtectHome=true":
            return "read-only"
    return "true"


def create_user(user: str, home: str | Path, note: str) -> HostCommand:
    """The command that creates a service's own system user (no login, a group of its own)."""
    argv = ("useradd", "--system", "--user-group", "--home-dir", str(home), "--shell", "/usr/sbin/nologin", user)
    return HostCommand(argv, note=note)


def hidden_from_service(runs_from: list[tuple[str, str]], env: dict[str, str], advice: str) -> list[str]:
    """Why the service could not reach what it runs from (the command, Pilot's package folder, ...): one
    blocker each, ending with `advice`."""
    paths = list(runs_from)
    if "PYTHONPATH" in env:
        paths.append(("Pilot's package folder", env["PYTHONPATH"]))
    return [
        f"{what} {path} is hidden from the service by {why}; {advice}" for what, path in paths if (why := _hidden(path))
    ]


def _hidden(path: str) -> str | None:
    return next((why for prefix, why in HIDDEN_FROM_SYSTEM.items() if (path + "/").startswith(prefix)), None)


# ------------------------------------------------------------------ units


def render_system_unit(
    exec_argv: list[str],
    profile: str,
    user: str,
    *,
    rw_paths: Sequence[str] = (),
    env: dict[str, str] | None = None,
    source: str = "",
    home: str = "true",
) -> str:
    start = " ".join(systemd_quote(a) for a in [*exec_argv, "run", profile, "--state-dir", STATE_DIR])
    from pilot.service.privileges import check_user

    user = check_user(user)
    for path in rw_paths:
        if not RW_PATH_RE.match(path):
            raise UnitValueError(f"ReadWritePaths entry {json.dumps(path, ensure_ascii=True)} is not a plain path")
    lines = [
        f"# {SYSTEM_UNIT}: written by `pilot service install`{f' from {unit_comment(source)}' if source else ''}.",
        "# Reinstall to regenerate it; keep local changes in a drop-in (`systemctl edit pilot`).",
        "# What each line is for: docs/service.md in the Pilot sources.",
        "[Unit]",
        "Description=Pilot: this computer as a Home Assistant device over MQTT",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        f"User={user}",
        *_service_core(start, env),
        "StateDirectory=pilot",
        "StateDirectoryMode=0700",
        "ConfigurationDirectory=pilot",
        "UMask=0077",
        "# Hardening: see docs/service.md for each line.",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        *(["# read-only, not true: a sensor reads a path under /home"] if home != "true" else []),
        f"ProtectHome={home}",
        "PrivateTmp=true",
        "ProtectKernelTunables=true",
        "ProtectKernelModules=true",
        "ProtectKernelLogs=true",
        "ProtectControlGroups=true",
        "ProtectHostname=true",
    ]
    if rw_paths:
        lines += [
            "# the sysfs files this profile's commands write (systemd takes no globs: their folders)",
            "ReadWritePaths=" + " ".join(rw_paths),
        ]
    lines += [
        f"RestrictAddressFamilies={ADDRESS_FAMILIES}",
        "RestrictNamespaces=true",
        "RestrictRealtime=true",
        "RestrictSUIDSGID=true",
        "LockPersonality=true",
        "SystemCallArchitectures=native",
    ]
    if user != "root":
        lines += ["CapabilityBoundingSet=", "RemoveIPC=true"]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def render_user_unit(exec_argv: list[str], profile: str, *, env: dict[str, str] | None = None, path: str = "") -> str:
    start = " ".join(systemd_quote(a) for a in [*exec_argv, "run", profile])
    return "\n".join(
        [
            f"# {unit_comment(path) or '~/.config/systemd/user/pilot.service'}: written by "
            "`pilot service install --user`.",
            "# Reinstall to regenerate it; keep local changes in a drop-in (`systemctl --user edit pilot`).",
            "[Unit]",
            "Description=Pilot: this computer as a Home Assistant device over MQTT (user service)",
            "",
            "[Service]",
            *_service_core(start, env),
            "# User managers cannot set up mount namespaces without user namespaces: only what works unprivileged.",
            "NoNewPrivileges=true",
            f"RestrictAddressFamilies={ADDRESS_FAMILIES}",
            "LockPersonality=true",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
    )


def user_unit_path(home: str | None = None) -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home or os.path.expanduser("~"), ".config")
    return os.path.join(base, "systemd", "user", "pilot.service")


# ------------------------------------------------------------------ install


def load_profile(profile: str) -> tuple[Document | None, Plan | None, list[Diagnostic]]:
    """(document, plan, diagnostics); document and plan are None when the profile has errors."""
    from pilot.profile.pipeline import compile_file

    doc, result = compile_file(profile)
    return doc, result.plan, list(result.diagnostics)


def plan_install(profile: str, doc: Document, plan: Plan, **kwargs: Any) -> Changes:
    """What `pilot service install` would do (see `_plan_install`). A name or path that cannot be
    written into a unit, a polkit rule or a tmpfiles.d line safely stops it with an InstallError that
    says which and why; nothing is ever written with such a name escaped into something else."""
    from pilot.service.privileges import UnsafeName

    try:
        return _plan_install(profile, doc, plan, **kwargs)
    except (UnsafeName, UnitValueError) as exc:
        raise InstallError(str(exc)) from None


def _plan_install(
    profile: str,
    doc: Document,
    plan: Plan,
    *,
    system: bool,
    exec_override: str | None = None,
    sysfs_root: Path | None = None,
    exists: Callable[[str], bool] | None = None,
) -> Changes:
    exists = exists or user_exists
    exec_argv, env = pilot_command(exec_override)
    allow_root = plan.service.allow_root
    if not system:
        changes = Changes("user")
        path = user_unit_path()
        changes.files.append(
            FileChange(path, render_user_unit(exec_argv, str(Path(profile).resolve()), env=env, path=path))
        )
        changes.commands += [
            HostCommand(("systemctl", "--user", "daemon-reload")),
            HostCommand(("systemctl", "--user", "enable", "--now", SERVICE)),
        ]
        if is_root() and not allow_root:
            changes.blockers.append(
                "a user service of root would run Pilot as root, which `pilot run` refuses "
                "without `service: {allow_root: true}`; install the system service instead"
            )
        from pilot.service.privileges import needed

        if needed(plan):
            changes.notes.append(
                "the profile's commands need privileges a user service does not grant itself; "
                "`pilot privileges PROFILE --user $USER` prints the polkit rule"
            )
        changes.notes.append("a user service stops when you log out, unless `loginctl enable-linger $USER`")
        return changes

    from pilot.service.privileges import check_name, check_user, profile_name

    user = check_user(plan.service.user)
    profile_name(plan)
    changes = Changes("system")
    copies = profile_copies(doc, Path(profile))
    for source, dest in copies:  # each becomes a path under /etc/pilot, and the first one goes into ExecStart
        for part in dest[len(CONFIG_DIR) + 1 :].split("/"):
            check_name(part, what="file name", origin=str(source))
    installed_profile = copies[0][1]
    if user == "root" and not allow_root:
        changes.blockers.append(
            "`service.user` is root but `service.allow_root` is not true: `pilot run` would refuse to start"
        )
    if user != "root" and not exists(user):
        changes.commands_before.append(create_user(user, STATE_DIR, f"the service user {user} does not exist yet"))
    changes.blockers += hidden_from_service(
        [("the pilot command", exec_argv[0])],
        env,
        "install Pilot where the service can run it (for example `pipx install --global`, or a venv under /opt) "
        "or pass --exec PATH",
    )
    for key, path in _referenced_files(plan):
        if not os.path.isabs(path):
            changes.warnings.append(
                f"{key} {path!r} is relative: the service runs in /, so it is read as /{path}; "
                f"give an absolute path (for example under {CONFIG_DIR}/)"
            )
        elif _hidden(path):
            changes.warnings.append(
                f"{key} {path} is hidden from the service by {_hidden(path)}; move it under "
                f"{CONFIG_DIR}/ (readable by {user})"
            )
    rw = read_write_paths(sysfs_writes(plan), sysfs_root)
    changes.files.append(
        FileChange(
            SYSTEM_UNIT,
            render_system_unit(
                exec_argv,
                installed_profile,
                user,
                rw_paths=rw,
                env=env,
                source=str(Path(profile).resolve()),
                home=protect_home(plan),
            ),
        )
    )
    for source, dest in copies:
        changes.files.append(FileChange(dest, source.read_text(encoding="utf-8"), source=str(source)))
    rule = polkit_rule(plan, user) if user != "root" else None
    if rule:
        changes.files.append(FileChange(POLKIT_RULE, rule))
    tmpfiles = tmpfiles_conf(plan, user) if user != "root" else None
    if tmpfiles:
        changes.files.append(FileChange(TMPFILES, tmpfiles))
        changes.commands.append(
            HostCommand(
                ("systemd-tmpfiles", "--create", TMPFILES),
                note="group write on the sysfs files now, not only after the next boot",
            )
        )
    changes.commands += [
        HostCommand(("systemctl", "daemon-reload")),
        HostCommand(("systemctl", "enable", "--now", SERVICE)),
    ]
    return changes


def installed_profile(unit_text: str) -> str | None:
    """The profile an installed unit runs: the word after `run` in its ExecStart= line."""
    for line in unit_text.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line[len("ExecStart=") :])
            if "run" in words[:-1]:
                return words[words.index("run") + 1]
    return None


def plan_uninstall(*, system: bool, purge: bool) -> Changes:
    if not system:
        changes = Changes("user")
        changes.commands_before.append(HostCommand(("systemctl", "--user", "disable", "--now", SERVICE), check=False))
        changes.removals.append(user_unit_path())
        changes.commands.append(HostCommand(("systemctl", "--user", "daemon-reload")))
        if purge:
            from pilot.agent.state import default_state_dir

            changes.removals.append(str(default_state_dir()))
        return changes
    changes = Changes("system")
    changes.commands_before.append(HostCommand(("systemctl", "disable", "--now", SERVICE), check=False))
    changes.removals += [SYSTEM_UNIT, POLKIT_RULE, TMPFILES]
    if purge:
        changes.removals += [CONFIG_DIR, STATE_DIR]
    changes.commands.append(HostCommand(("systemctl", "daemon-reload")))
    return changes


# ------------------------------------------------------------------ showing and applying


def rooted(root: Path | None, path: str) -> Path:
    return Path(path) if root is None else Path(root) / path.lstrip("/")


def render_changes(changes: Changes, root: Path | None = None, *, service: str = SERVICE) -> str:
    """Every command and file, in the order install / uninstall would run and write them (`service`: the
    unit they install, `pilot` or the console's)."""

    def commands(title: str, items: list[HostCommand]) -> list[str]:
        if not items:
            return []
        return (
            [f"==> {title} <=="]
            + [f"$ {shlex.join(c.argv)}" + (f"    # {c.note}" if c.note else "") for c in items]
            + [""]
        )

    out = commands("run first", changes.commands_before)
    for change in changes.files:
        note = f" (copy of {change.source})" if change.source else ""
        out += [f"==> {rooted(root, change.path)} (mode {change.mode:04o}){note} <==", change.content.rstrip("\n"), ""]
    out += [f"==> remove {rooted(root, path)} <==" for path in changes.removals]
    out += [""] if changes.removals else []
    after = list(changes.commands)
    if any(c.argv[-3:] == ("enable", "--now", service) for c in after):
        user = ("--user",) if changes.mode == "user" else ()
        after.append(
            HostCommand(
                ("systemctl", *user, "restart", service), note="only if it was running before: apply the new files"
            )
        )
    out += commands("run", after)
    return "\n".join(out).rstrip("\n") + "\n"


def _write(path: Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.pilot-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def apply(
    changes: Changes,
    runner: Runner,
    *,
    root: Path | None = None,
    run_commands: bool = True,
    say: Callable[[str], None] = print,
    service: str = SERVICE,
) -> int:
    """Write the files and run the commands; 0 when everything succeeded. A `service` that was running is
    restarted so the new files apply."""

    def run(command: HostCommand) -> bool:
        if not run_commands:
            say(f"not run (--root): {shlex.join(command.argv)}")
            return True
        result = runner.run(command.argv)
        if result.returncode != 0:
            detail = result.output.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
            if command.check:
                say(f"pilot: error: `{shlex.join(command.argv)}` failed: {detail[0]}")
                return False
            say(f"(ignored) `{shlex.join(command.argv)}`: {detail[0]}")
        return True

    was_active = False
    if run_commands and changes.files and changes.mode in ("system", "user"):
        user = ["--user"] if changes.mode == "user" else []
        was_active = runner.run(["systemctl", *user, "is-active", "--quiet", service]).returncode == 0
    for command in changes.commands_before:
        if not run(command):
            return 1
    for change in changes.files:
        target = rooted(root, change.path)
        if change.source and target.exists() and os.path.samefile(target, change.source):
            continue  # reinstalling from the installed copy itself
        _write(target, change.content, change.mode)
        say(f"wrote {target}")
    for path in changes.removals:
        target = rooted(root, path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            say(f"removed {target}/")
        elif target.exists() or target.is_symlink():
            target.unlink()
            say(f"removed {target}")
    for command in changes.commands:
        if not run(command):
            return 1
    if was_active:
        user = ("--user",) if changes.mode == "user" else ()
        if not run(HostCommand(("systemctl", *user, "restart", service), note="apply the new files")):
            return 1
    return 0


def status(*, system: bool, runner: Runner, state_dir: Path | None = None) -> tuple[int, str]:
    """`systemctl status pilot`, and what the state directory says about the last run."""
    argv = ["systemctl", *([] if system else ["--user"]), "status", SERVICE, "--no-pager"]
    result = runner.run(argv)
    lines = [result.output.rstrip("\n")] if result.output.strip() else []
    if state_dir is None:
        from pilot.agent.state import default_state_dir

        state_dir = default_state_dir(system=system)
    lines.append(state_summary(Path(state_dir)))
    return result.returncode, "\n".join(lines) + "\n"


def state_summary(state_dir: Path) -> str:
    import time

    try:
        cached = json.loads((state_dir / "plan-cache.json").read_text(encoding="utf-8"))
        plan = cached["result"]["plan"]
        head = (
            f"Pilot state in {state_dir}: profile {cached['profile']} (Pilot {cached['version']}), "
            f"device {plan['device']['id']}, availability topic {plan['topics']['availability']}"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return f"Pilot state in {state_dir}: nothing readable (not started yet, or no permission)"
    try:
        announced = os.stat(state_dir / "discovery.json").st_mtime
        head += f"; last discovery change {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(announced))}"
    except OSError:
        head += "; nothing announced yet"
    return head + " (the agent's live status is the `Status:` line above)"
