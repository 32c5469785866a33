"""`pilot init`: from nothing to a written, validated profile, by questions or by flags.

It asks for the broker (host, TLS and its CA file, port, user and password), tests the connection
for real and explains a failure exactly (pilot.agent.brokercheck), lets the user retry or edit,
builds on the shipped pack `pilot detect` matches, asks which commands to offer (lock screen, power
commands behind a confirming second press and a cooldown, signed commands with a new 0600 keyring),
writes a commented profile that the real validator has accepted, and offers `pilot service install`.

Everything typed is checked before it is used: no control characters, bounded lengths, host names
and ports as the network knows them, no `..` in paths. An answer that fails is asked again (at most
MAX_TRIES times); in --non-interactive mode it stops the command with exit 2. Nothing is written
until every answer is in and the profile validates; an existing profile, password file or keyring is
never replaced without asking (or --force).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilot.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, err, out

MAX_TRIES = 5
MAX_TEXT = 128
MAX_PASSWORD = 1024
MAX_PATH = 1024
HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
COMMAND_CHOICES = ("lock", "power", "none")


class Aborted(Exception):
    """The user stopped, or gave up on an answer; nothing has been written."""


class Invalid(ValueError):
    """An answer that cannot be used; the message says why and what is allowed."""


# ------------------------------------------------------------------ checking answers


def _shown(text: str, limit: int = 40) -> str:
    shown = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text[:limit])
    return repr(shown + ("…" if len(text) > limit else ""))


def check_text(value: str, what: str, limit: int = MAX_TEXT, *, empty: bool = False) -> str:
    if any(not ch.isprintable() for ch in value):
        raise Invalid(f"the {what} {_shown(value)} contains control characters; type plain text")
    if len(value) > limit:
        raise Invalid(f"the {what} is {len(value)} characters long; at most {limit} are allowed")
    if not value and not empty:
        raise Invalid(f"a {what} is needed")
    return value


def check_host(value: str) -> str:
    value = check_text(value.strip(), "broker host", 253)
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if not all(HOST_LABEL.match(label) for label in labels):
        raise Invalid(
            f"{_shown(value)} is not a host name or IP address: use letters, digits, `-` and `.` "
            "(like homeassistant.local or 192.168.1.10), without a port or `mqtt://`"
        )
    return value


def check_port(value: str) -> int:
    value = check_text(value.strip(), "port", 5)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise Invalid(f"the port must be a number from 1 to 65535, not {_shown(value)}")
    return int(value)


def check_password(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise Invalid("the password may not contain line breaks or NUL (it is kept as one line of a file)")
    if any(not ch.isprintable() for ch in value):
        raise Invalid("the password contains control characters; type it plainly")
    if len(value) > MAX_PASSWORD:
        raise Invalid(f"the password is {len(value)} characters long; at most {MAX_PASSWORD} are allowed")
    if not value:
        raise Invalid("the password is empty; type the broker password for this user")
    return value


def check_path(value: str, what: str, *, must_exist: bool = False, suffixes: tuple[str, ...] = ()) -> Path:
    value = check_text(value.strip(), what, MAX_PATH)
    if ".." in Path(value).parts:
        raise Invalid(f"the {what} {_shown(value)} contains `..`; give the folder plainly (an absolute path)")
    path = Path(os.path.expanduser(value))
    path = path if path.is_absolute() else Path.cwd() / path
    if suffixes and path.suffix not in suffixes:
        raise Invalid(f"the {what} must end in {' or '.join(suffixes)}")
    if must_exist:
        if not path.is_file():
            raise Invalid(f"the {what} {path} does not exist (or is not a file)")
        if not os.access(path, os.R_OK):
            raise Invalid(f"the {what} {path} cannot be read by this user")
    return path


def check_name(value: str) -> str:
    return check_text(value.strip(), "device name", 64)


# ------------------------------------------------------------------ asking


class Prompter:
    """Questions on the terminal; each answer is checked and asked again when it fails."""

    def ask(self, question: str, check: Any = None, default: str | None = None, hint: str | None = None) -> Any:
        """`default` replaces an empty answer; `hint` is shown instead of it (y/N for a question whose
        check takes an empty answer itself)."""
        shown = hint or default
        suffix = f" [{shown}]" if shown else ""
        for _ in range(MAX_TRIES):
            try:
                answer = input(f"{question}{suffix}: ")
            except EOFError:
                raise Aborted("no more input") from None
            if not answer and default is not None:
                answer = default
            try:
                return check(answer) if check else answer
            except Invalid as exc:
                out(f"  ! {exc}")
        raise Aborted(f"no usable answer after {MAX_TRIES} tries")

    def secret(self, question: str, check: Any) -> str:
        for _ in range(MAX_TRIES):
            try:
                import getpass  # only when a secret is asked for: `pilot run` never loads it

                answer = getpass.getpass(f"{question}: ")
            except EOFError:
                raise Aborted("no more input") from None
            try:
                return check(answer)
            except Invalid as exc:
                out(f"  ! {exc}")
        raise Aborted(f"no usable answer after {MAX_TRIES} tries")

    def choose(self, question: str, choices: dict[str, str], default: str) -> str:
        def check(answer: str) -> str:
            word = answer.strip().lower()[:1]
            if word in choices:
                return word
            raise Invalid("answer " + ", ".join(f"{k} ({v})" for k, v in choices.items()))

        shown = ", ".join(f"[{k}]{v[1:] if v[:1] == k else ' ' + v}" for k, v in choices.items())
        return self.ask(f"{question} {shown}", check, default)


def _yes_check(default: bool):
    def check(answer: str) -> bool:
        word = answer.strip().lower()
        if not word:
            return default
        if word in ("y", "yes"):
            return True
        if word in ("n", "no"):
            return False
        raise Invalid("answer y or n")

    return check


# ------------------------------------------------------------------ the answers


@dataclass
class Answers:
    output: Path
    host: str = ""
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None  # typed now: written to password_file
    password_file: Path | None = None
    write_password: bool = False
    extends: str | None = None
    pack_description: str = ""
    name: str = ""
    lock: bool = True
    power: bool = False
    signed: bool = False
    keyring: Path | None = None
    inherited: list[str] = field(default_factory=list)  # commands the base declares
    keep_inherited: bool = True
    overwrite: set[Path] = field(default_factory=set)  # existing files the user agreed to replace


def default_folder() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pilot"


def detect_pack() -> tuple[list[tuple[str, str]], str | None]:
    """([(extends name, description)] of every pack with a default profile, the best match for this host)."""
    from pilot import facts as host
    from pilot.profile import packs

    choices = []
    for pack in sorted(packs.discover(), key=lambda p: p.name):
        if pack.default_profile is not None:
            choices.append((f"{pack.name}/{pack.default_profile.stem}", pack.description))
    best = next((p for p in packs.matching(host.host_facts()) if p.default_profile is not None), None)
    return choices, (f"{best.name}/{best.default_profile.stem}" if best else None)


def inherited_commands(extends: str | None) -> list[str]:
    """The command ids the base profile declares (compiled in a scratch folder)."""
    if not extends:
        return []
    from pilot.profile.pipeline import compile_file

    with tempfile.TemporaryDirectory(prefix="pilot-init-") as folder:
        probe = Path(folder) / "probe.yaml"
        probe.write_text(f"pilot: 1\nextends: [{extends}]\n", encoding="utf-8")
        _, result = compile_file(probe)
    return [c.id for c in result.plan.commands] if result.plan else []


# ------------------------------------------------------------------ the profile


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's)."""
    import json

    return json.dumps(text, ensure_ascii=True)


def render_profile(a: Answers) -> str:
    lines = [
        f"# Pilot profile, written by `pilot init` on {time.strftime('%Y-%m-%d')} for {socket.gethostname()}.",
        "#",
        f"#   pilot check {a.output}     is everything in place? (files, broker login, privileges)",
        f"#   pilot run {a.output}       run the agent in this terminal (--dry-run: commands only reported)",
        f"#   pilot plan {a.output}      every entity it announces and every command it accepts",
        "#",
        "# The full reference is docs/reference.md (or `man pilot`); edit freely, then `pilot validate` it.",
        "pilot: 1",
        "",
    ]
    if a.extends:
        lines += [
            "# Start from the shipped pack that matches this machine (`pilot detect` shows why):",
            f"# {a.pack_description}",
            "# Its sensors and commands are inherited; one defined below with the same id replaces it.",
            f"extends: [{a.extends}]",
            "",
        ]
    lines += [
        "# How this computer appears in Home Assistant (Settings > Devices > MQTT).",
        "device:",
        f"  name: {_q(a.name)}",
        "",
        "# The MQTT broker Home Assistant uses (with Home Assistant OS, usually its Mosquitto add-on).",
        "mqtt:",
        f"  host: {_q(a.host)}",
        f"  port: {a.port}",
    ]
    if a.username:
        lines += [
            f"  username: {_q(a.username)}",
            f"  password_file: {_q(str(a.password_file))}   # the password is its first line; keep it chmod 600",
        ]
    if a.tls and a.ca_file:
        lines += [
            "  tls:                             # encrypted, and the broker's certificate is checked",
            f"    ca_file: {_q(str(a.ca_file))}   # the CA that signed the broker's certificate",
        ]
    elif a.tls:
        lines += ["  tls: {}                          # encrypted; the system's CA store vouches for the broker"]
    else:
        lines += ["  # tls: {ca_file: /path/ca.pem}    # turn on when the broker has a TLS port (usually 8883)"]
    if not a.extends:
        lines += [
            "",
            "# What this computer reports (`pilot probes` lists every probe and its value here).",
            "sensors:",
            "  cpu_usage: {name: CPU usage, probe: cpu.percent, every: 10s, precision: 0}",
            "  memory_usage: {name: Memory usage, probe: memory.used_percent, every: 30s, precision: 0}",
        ]
    commands: list[str] = []
    if a.lock:
        commands += [
            "  lock:",
            "    name: Lock screen",
            "    action: session.lock             # loginctl lock-sessions",
            "    icon: mdi:lock",
            "    policy: {cooldown: 5s}",
        ]
    if a.power:
        commands += [
            "  # Power commands: a press arms them, a second press within 20 s runs them;",
            "  # then they rest for 5 minutes, so a stuck automation cannot loop a reboot.",
            "  reboot:",
            "    name: Restart",
            "    action: power.reboot",
            "    device_class: restart",
            "    policy: {confirm: 20s, cooldown: 5m}",
            "  shutdown:",
            "    name: Shut down",
            "    action: power.shutdown",
            "    icon: mdi:power",
            "    policy: {confirm: 20s, cooldown: 5m}",
        ]
    if commands:
        lines += [
            "",
            "# What Home Assistant may ask this computer to do. `pilot actions` lists every action and",
            "# whether it works here; `pilot privileges` prints the polkit rule the service user needs.",
            "commands:",
            *commands,
        ]
    allowed = [c for c in ("lock", "reboot", "shutdown") if (c == "lock" and a.lock) or (c != "lock" and a.power)]
    if a.keep_inherited:
        allowed += [c for c in a.inherited if c not in allowed and c not in ("lock", "reboot", "shutdown")]
    policies: list[str] = []
    dropped = [c for c in a.inherited if c not in allowed]
    if dropped:
        policies += [
            f"  # The base profile declares {', '.join(dropped)}; only the commands listed here may run.",
            f"  allow: [{', '.join(allowed)}]",
        ]
    if a.signed:
        policies += [
            "  # Every command must carry a pilot-cmd-v1 signature made with a key from the keyring",
            "  # (0600). Home Assistant cannot sign, so these commands are not Home Assistant buttons:",
            f"  # send them with `pilot send {a.output} COMMAND` (docs/security.md).",
            "  require_signed: true",
            f"  hmac: {{keyring: {_q(str(a.keyring))}, window: 60s}}",
        ]
    if policies:
        lines += ["", "policies:", *policies]
    return "\n".join(lines) + "\n"


def validate_text(text: str) -> list[str]:
    """The real validator's errors for the profile text (empty when valid)."""
    from pilot.diagnostics import ERROR
    from pilot.profile.pipeline import compile_file

    with tempfile.TemporaryDirectory(prefix="pilot-init-") as folder:
        path = Path(folder) / "profile.yaml"
        path.write_text(text, encoding="utf-8")
        _, result = compile_file(path)
    return [d.text() for d in result.diagnostics if d.severity == ERROR]


# ------------------------------------------------------------------ writing


def _write_private(path: Path, text: str, replace: bool) -> None:
    """A 0600 file, never through a symbolic link; an existing file only when `replace`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    if replace and path.exists():
        path.unlink()
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _write_profile(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_all(a: Answers, text: str) -> list[str]:
    """Write the password file, the keyring and the profile; what was written, one line each."""
    from pilot.agent import signing

    done = []
    if a.write_password and a.password_file is not None and a.password is not None:
        _write_private(a.password_file, a.password + "\n", a.password_file in a.overwrite)
        done.append(f"{a.password_file} (the broker password, mode 0600)")
    if a.signed and a.keyring is not None and not a.keyring.exists():
        line = signing.new_key_line(time.strftime("k%Y%m%d"))
        _write_private(a.keyring, line + "\n", False)
        done.append(f"{a.keyring} (a new signing key, mode 0600; give the sender the same line)")
    _write_profile(a.output, text)
    done.append(f"{a.output} (the profile)")
    return done


# ------------------------------------------------------------------ the two ways in


def _existing(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def interactive(args: argparse.Namespace, p: Prompter) -> Answers:
    from pilot.agent.brokercheck import TlsOptions, check_broker

    out("Pilot set-up: a few questions, then a profile that makes this computer a Home Assistant device.")
    out("Press Enter to take the [default]; Ctrl-D stops without writing anything.\n")
    while True:
        output = (
            check_path(args.output, "profile path", suffixes=(".yaml", ".yml"))
            if args.output
            else p.ask(
                "Profile file",
                lambda v: check_path(v, "profile path", suffixes=(".yaml", ".yml")),
                str(default_folder() / "pilot.yaml"),
            )
        )
        if not _existing(output) or args.force:
            break
        if p.ask(f"{output} exists. Replace it?", _yes_check(False), hint="y/N"):
            break
        if args.output:
            raise Aborted(f"{output} exists and was kept")
    a = Answers(output=output)
    if args.output and _existing(output):
        a.overwrite.add(output)

    def broker_questions() -> None:
        if args.broker and not a.host:
            a.host, a.port = check_host(args.broker[0]), args.broker[1]
            out(f"Broker: {a.host}:{a.port} (from --broker)")
        else:
            a.host = p.ask(
                "Broker host name or IP address (the Home Assistant host for its add-on)", check_host, a.host or None
            )
            a.tls = p.ask(
                "Does the broker use TLS (an encrypted port, usually 8883)?",
                _yes_check(a.tls),
                hint="Y/n" if a.tls else "y/N",
            )
            if a.tls:
                ca = p.ask(
                    "CA file that signed the broker's certificate (empty: the system's CA store)",
                    lambda v: check_path(v, "CA file", must_exist=True) if v.strip() else None,
                    str(a.ca_file) if a.ca_file else None,
                )
                a.ca_file = ca
            a.port = p.ask("Port", check_port, str(a.port if a.port not in (1883, 8883) else (8883 if a.tls else 1883)))
        user = p.ask(
            "User name (empty: connect without one)",
            lambda v: check_text(v.strip(), "user name", empty=True),
            a.username or None,
        )
        a.username = user or None
        a.password = p.secret("Password (not shown)", check_password) if a.username else None

    broker_questions()
    while True:
        out(f"\nTesting {a.host}:{a.port}{' with TLS' if a.tls else ''}{' as ' + a.username if a.username else ''}…")
        tls = TlsOptions(ca_file=str(a.ca_file) if a.ca_file else None) if a.tls else None
        result = check_broker(a.host, a.port, username=a.username, password=a.password, tls=tls, timeout=args.timeout)
        if result.ok:
            version = result.details.get("version")
            who = " and logged in" if a.username else ""
            out(f"  ok: connected{who}{' (' + version + ')' if version else ''}\n")
            break
        out(f"  failed: {result.summary}")
        if result.advice:
            out(f"  {result.advice}")
        choice = p.choose(
            "What now?", {"r": "retry", "e": "edit the broker settings", "c": "continue anyway", "q": "quit"}, "e"
        )
        if choice == "q":
            raise Aborted("stopped at the broker test")
        if choice == "c":
            break
        if choice == "e":
            args.broker = None
            broker_questions()

    folder = output.parent
    if a.username:
        a.password_file = folder / "mqtt.pass"
        a.write_password = True
        if _existing(a.password_file):
            if not p.ask(
                f"{a.password_file} exists. Replace it with the password you typed?", _yes_check(False), hint="y/N"
            ):
                raise Aborted(f"{a.password_file} exists and was kept")
            a.overwrite.add(a.password_file)

    choices, best = detect_pack()
    description = dict(choices)
    if args.pack:
        a.extends = None if args.pack == "none" else args.pack
    elif best:
        out(f"This computer matches the pack {best}: {description[best]}")
        if not p.ask(f"Build on {best}?", _yes_check(True), hint="Y/n"):
            best = None
        a.extends = best
    if a.extends is None and not args.pack:
        for number, (name, text) in enumerate(choices, 1):
            out(f"  {number}. {name}: {text}")
        out("  0. none: start from two sensors (CPU and memory)")

        def pick(v: str) -> str | None:
            v = v.strip()
            if v.isdigit() and 0 <= int(v) <= len(choices):
                return choices[int(v) - 1][0] if int(v) else None
            raise Invalid(f"answer a number from 0 to {len(choices)}")

        a.extends = p.ask("Which pack?", pick, "0")
    a.pack_description = description.get(a.extends or "", "")
    a.inherited = inherited_commands(a.extends)

    a.name = (
        check_name(args.name) if args.name else p.ask("Device name in Home Assistant", check_name, socket.gethostname())
    )
    out("\nCommands Home Assistant may send to this computer:")
    a.lock = p.ask("  Lock the screen?", _yes_check(True), hint="Y/n")
    a.power = p.ask(
        "  Restart and shut down (each needs a second press within 20 s, then rests 5 min)?",
        _yes_check(False),
        hint="y/N",
    )
    others = [c for c in a.inherited if c not in ("lock", "reboot", "shutdown")]
    if others:
        a.keep_inherited = p.ask(
            f"  Keep the pack's other commands ({', '.join(others)})?", _yes_check(True), hint="Y/n"
        )
    if a.lock or a.power or (others and a.keep_inherited):
        a.signed = p.ask(
            "  Require a signature on every command (sent with `pilot send`; Home Assistant buttons cannot sign)?",
            _yes_check(False),
            hint="y/N",
        )
    if a.signed:
        a.keyring = p.ask("  Keyring file", lambda v: check_path(v, "keyring path"), str(folder / "keyring"))
        if _existing(a.keyring):
            out(f"  {a.keyring} exists: its keys are kept and used")
    return a


def from_flags(args: argparse.Namespace) -> Answers:
    from pilot.agent.brokercheck import TlsOptions, check_broker, check_settings

    if not args.broker:
        raise Invalid("--non-interactive needs --broker HOST[:PORT]")
    output = check_path(args.output or str(default_folder() / "pilot.yaml"), "profile path", suffixes=(".yaml", ".yml"))
    if _existing(output) and not args.force:
        raise Aborted(f"{output} exists; give --force to replace it")
    a = Answers(output=output)
    if _existing(output):
        a.overwrite.add(output)
    a.host, a.port = check_host(args.broker[0]), args.broker[1]
    a.tls = bool(args.tls or args.tls_ca)
    a.ca_file = check_path(args.tls_ca, "CA file", must_exist=True) if args.tls_ca else None
    if args.username is not None:
        a.username = check_text(args.username, "user name")
        if not args.password_file:
            raise Invalid("--username needs --password-file (a file whose first line is the password)")
        a.password_file = check_path(args.password_file, "password file", must_exist=True)
    elif args.password_file:
        raise Invalid("--password-file needs --username")
    commands = [c.strip() for c in (args.commands or "lock").split(",") if c.strip()]
    unknown = [c for c in commands if c not in COMMAND_CHOICES]
    if unknown:
        raise Invalid(f"--commands takes {', '.join(COMMAND_CHOICES)} (comma separated), not {_shown(unknown[0])}")
    a.lock, a.power = "lock" in commands, "power" in commands
    a.signed = bool(args.signed)
    if a.signed:
        a.keyring = check_path(args.keyring or str(output.parent / "keyring"), "keyring path")
    a.name = check_name(args.name) if args.name else socket.gethostname()
    choices, best = detect_pack()
    if args.pack:
        if args.pack != "none" and args.pack not in dict(choices):
            raise Invalid(f"--pack: no pack {_shown(args.pack)}; one of: none, {', '.join(n for n, _ in choices)}")
        a.extends = None if args.pack == "none" else args.pack
    else:
        a.extends = best
    a.pack_description = dict(choices).get(a.extends or "", "")
    a.inherited = inherited_commands(a.extends)
    a.keep_inherited = True
    if not args.skip_test:
        tls = TlsOptions(ca_file=str(a.ca_file) if a.ca_file else None) if a.tls else None
        if a.username:
            from pilot.plan import Mqtt, Tls

            mqtt = Mqtt(
                username=a.username, password_file=str(a.password_file), tls=Tls(ca_file=tls.ca_file) if tls else None
            )
            result = check_settings(mqtt, a.host, a.port, timeout=args.timeout)
        else:
            result = check_broker(a.host, a.port, tls=tls, timeout=args.timeout)
        if not result.ok:
            raise Aborted(f"the broker test failed: {result.text()}")
        out(f"Broker {a.host}:{a.port}: connected" + (f" and logged in as {a.username}" if a.username else ""))
    return a


# ------------------------------------------------------------------ the command


def service_command(profile: Path) -> tuple[list[str], bool]:
    """(the `pilot service install` command line, whether it is the system service)."""
    system = os.geteuid() == 0 if hasattr(os, "geteuid") else False
    argv = ["pilot", "service", "install"] + ([] if system else ["--user"]) + [str(profile)]
    return argv, system


def cmd_init(args: argparse.Namespace) -> int:
    interactive_mode = not args.non_interactive
    if interactive_mode and not sys.stdin.isatty():
        err("pilot: error: `pilot init` asks questions: run it in a terminal, or give --non-interactive with --broker")
        return EXIT_USAGE
    p = Prompter()
    try:
        a = interactive(args, p) if interactive_mode else from_flags(args)
        text = render_profile(a)
        errors = validate_text(text)
        if errors:  # a bug in this command, not in the answers: say so and write nothing
            err("pilot: error: the profile `pilot init` made is not valid (please report this):")
            err("\n".join(errors))
            err("pilot: nothing written")
            return EXIT_INVALID
        if interactive_mode:
            out(f"\nReady to write {a.output}" + (f" and {a.password_file}" if a.write_password else "") + ".")
            if not p.ask("Write them?", _yes_check(True), hint="Y/n"):
                raise Aborted("not written")
        written = write_all(a, text)
    except Invalid as exc:
        err(f"pilot: error: {exc}")
        err("pilot: nothing written")
        return EXIT_USAGE
    except Aborted as exc:
        err(f"pilot: {exc}; nothing written")
        return EXIT_INVALID
    except KeyboardInterrupt:
        err("\npilot: interrupted; nothing written")
        return 130
    out("Wrote:")
    for line in written:
        out(f"  {line}")
    out(f"The profile is valid. Next: `pilot check {a.output}`, then `pilot run {a.output}`.")
    argv, system = service_command(a.output)
    out(f"\nTo start Pilot at boot, install it as a service:\n  {' '.join(argv)}")
    install = bool(args.install_service)
    if interactive_mode and not install:
        try:
            install = p.ask("Install the service now?", _yes_check(False), hint="y/N")
        except Aborted:
            install = False
    if install:
        import shutil

        if system and os.geteuid() != 0:
            err("pilot: the system service needs root: run the command above with sudo")
            return EXIT_INVALID
        if not shutil.which("systemctl"):
            err("pilot: no systemctl here: run the command above where systemd runs")
            return EXIT_INVALID
        from pilot.cli.service import cmd_install

        return cmd_install(
            argparse.Namespace(
                profile=str(a.output), system=system, user=not system, print=False, root=None, exec_path=None
            )
        )
    return EXIT_OK


def register(sub: Any) -> None:
    from pilot.cli.common import parse_broker

    p = sub.add_parser("init", help="set up: ask for the broker, test it, and write a commented, valid profile")
    p.add_argument("--output", metavar="PATH", help="where to write the profile (default ~/.config/pilot/pilot.yaml)")
    p.add_argument("--broker", metavar="HOST:PORT", type=parse_broker, help="the MQTT broker")
    p.add_argument("--username", help="the broker user name")
    p.add_argument("--password-file", metavar="FILE", help="a file whose first line is the broker password (0600)")
    p.add_argument("--tls", action="store_true", help="connect with TLS, trusting the system's CA store")
    p.add_argument("--tls-ca", metavar="FILE", help="connect with TLS, trusting this CA file")
    p.add_argument("--commands", metavar="LIST", help="lock, power or none, comma separated (default: lock)")
    p.add_argument("--signed", action="store_true", help="require signed commands; creates a 0600 keyring")
    p.add_argument("--keyring", metavar="FILE", help="with --signed: the keyring (default: next to the profile)")
    p.add_argument("--name", help="the device name in Home Assistant (default: the host name)")
    p.add_argument("--pack", help="the pack to build on, like linux-desktop/desktop, or none (default: detected)")
    p.add_argument("--force", action="store_true", help="replace an existing profile")
    p.add_argument("--skip-test", action="store_true", help="do not test the broker connection")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds allowed for the broker test (default 5)")
    p.add_argument("--install-service", action="store_true", help="run `pilot service install` when done")
    p.add_argument("--non-interactive", action="store_true", help="ask nothing: take every answer from the flags")
    p.set_defaults(func=cmd_init)
