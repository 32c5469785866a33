"""`pilot console ...`: run the web console, manage its users file, install it as a service.

Argument parsing and printing only; the console (pilot.console) and its service unit (pilot.service.console)
are imported when a command runs, so `pilot --version` never loads Starlette or argon2. Every refusal is one
plain line on stderr with exit status 1 (2 for a usage error), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pilot.cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, add_scope_flags, err, out, parse_broker, system_scope
from pilot.escaping import escape

ROLES = ("viewer", "operator", "admin")
SERVICE_USER = "pilot-console"


def _fail(text: str) -> int:
    err(f"pilot: error: {escape(text)}")
    return EXIT_INVALID


# ------------------------------------------------------------------ users


def _users(args: argparse.Namespace) -> Any:
    """The users file named by --users (default: /etc/pilot/console-users as root, else
    ~/.config/pilot/console-users). As root, the console's service user may own it."""
    from pilot.console.auth import UsersFile, default_users_path

    owner = None
    if os.geteuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam(SERVICE_USER).pw_uid
        except KeyError:
            owner = None
    path = Path(args.users) if args.users else default_users_path()
    return UsersFile(path, owner_uid=owner)


def _read_password(args: argparse.Namespace) -> str | None:
    """The new password: one line from stdin (--password-stdin), or typed twice without echo."""
    from pilot.console.auth import MAX_PASSWORD, PasswordError, check_password

    try:
        if args.password_stdin:
            line = sys.stdin.buffer.readline(MAX_PASSWORD * 4 + 3)
            try:
                password = line.decode("utf-8")
            except UnicodeDecodeError:
                err("pilot: error: the password on stdin is not UTF-8 text")
                return None
            password = password.removesuffix("\n").removesuffix("\r")
        else:
            import getpass

            password = getpass.getpass("New password: ")
            if getpass.getpass("Repeat it: ") != password:
                err("pilot: error: the two passwords differ; nothing changed")
                return None
        return check_password(password)
    except PasswordError as exc:
        err(f"pilot: error: {exc}; nothing changed")
        return None
    except EOFError:
        err("pilot: error: no password given; nothing changed")
        return None


def cmd_user_add(args: argparse.Namespace) -> int:
    from pilot.console.auth import AuthError, check_name

    try:
        users = _users(args)
        check_name(args.name)
        if users.get(args.name) is not None:
            return _fail(f"user {args.name!r} already exists in {users.path}; `pilot console user passwd` changes it")
        password = _read_password(args)
        if password is None:
            return EXIT_INVALID
        users.add(args.name, args.role, password)
    except AuthError as exc:
        return _fail(str(exc))
    out(f"added {args.name} ({args.role}) to {escape(str(users.path))}")
    return EXIT_OK


def cmd_user_passwd(args: argparse.Namespace) -> int:
    from pilot.console.auth import AuthError, check_name

    try:
        users = _users(args)
        check_name(args.name)
        if users.get(args.name) is None:
            return _fail(f"no user {args.name!r} in {users.path}")
        password = _read_password(args)
        if password is None:
            return EXIT_INVALID
        users.set_password(args.name, password)
    except AuthError as exc:
        return _fail(str(exc))
    out(f"changed the password of {args.name}; the sessions signed in before are over")
    return EXIT_OK


def cmd_user_role(args: argparse.Namespace) -> int:
    from pilot.console.auth import AuthError

    try:
        users = _users(args)
        users.set_role(args.name, args.role)
    except AuthError as exc:
        return _fail(str(exc))
    out(f"{args.name} is now {args.role} (from the next request of each session)")
    return EXIT_OK


def cmd_user_remove(args: argparse.Namespace) -> int:
    from pilot.console.auth import AuthError

    try:
        users = _users(args)
        users.remove(args.name)
    except AuthError as exc:
        return _fail(str(exc))
    out(f"removed {args.name}; their sessions end at their next request")
    return EXIT_OK


def cmd_user_list(args: argparse.Namespace) -> int:
    from pilot.console.auth import AuthError

    try:
        users = _users(args)
        listed = users.list()
    except AuthError as exc:
        return _fail(str(exc))
    if not listed:
        err(f"no users in {escape(str(users.path))} (`pilot console user add NAME --role admin` adds one)")
        return EXIT_OK
    width = max(len(u.name) for u in listed)
    for user in listed:
        out(f"{user.name:<{width}}  {user.role.label}")
    return EXIT_OK


# ------------------------------------------------------------------ run


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[v6]:PORT` for --listen (a port is required)."""
    host, port = parse_broker(text)
    if port is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, port


def cmd_run(args: argparse.Namespace) -> int:
    try:
        from pilot.console import server
    except ImportError as exc:
        return _fail(f"the console needs its extra: pip install 'pilot-agent[console]' ({exc.name} is missing)")
    return int(server.main(args) or 0)


def cmd_demo(args: argparse.Namespace) -> int:
    """`./dev console`: a trial broker when none listens, this machine's agent in dry run, and the console
    with a demo operator whose password is printed once. Ctrl-C stops all three."""
    import secrets
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    try:
        from pilot.console import auth, server
    except ImportError as exc:
        return _fail(f"the console needs its extra: pip install 'pilot-agent[console]' ({exc.name} is missing)")
    from pilot.agent import broker as trial

    base = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="pilot-console-demo-"))
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    host, port = "127.0.0.1", 1883
    embedded = None
    if not trial.listening(host, port):
        port = trial.free_port()
        try:
            embedded = trial.start(port)
        except RuntimeError as exc:
            return _fail(f"cannot start a trial broker: {exc}")
        out(f"started a private trial broker ({embedded.kind}) on {host}:{port}")
    else:
        out(f"using the broker already listening on {host}:{port}")
    users = base / "console-users"
    password = secrets.token_urlsafe(12)
    if users.exists():
        users.unlink()
    auth.UsersFile(users).add("demo", "operator", password)
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pilot",
            "run",
            "--dry-run",
            "--broker",
            f"{host}:{port}",
            "--state-dir",
            str(base / "agent"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(base / "agent.log", "ab"),
    )
    listen = args.listen or ("127.0.0.1", 8470)
    out(f"this machine's agent runs in dry run (log: {base / 'agent.log'})")
    out(f"open http://{listen[0]}:{listen[1]}/ and sign in as `demo` with the password {password}")
    try:
        return server.main(
            argparse.Namespace(
                config=None,
                broker=(host, port),
                listen=listen,
                db=None,
                users=str(users),
                tls_cert=None,
                tls_key=None,
                anonymous_read=None,
                keyring=None,
                kid=None,
                state_dir=str(base / "console"),
            )
        )
    finally:
        agent.terminate()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
        if embedded is not None:
            embedded.stop()


# ------------------------------------------------------------------ this machine's settings


LOCAL_PORT = 8471  # `pilot console --open`; 8470 stays free for a fleet console on the same machine


def local_profile(given: str | None) -> Path | None:
    """The profile `pilot console --open` edits: the one given, else this machine's (the user's own,
    then the packaged service's), else None."""
    from pilot.cli.wizard import default_folder

    if given:
        return Path(given).expanduser()
    for candidate in (default_folder() / "pilot.yaml", Path("/etc/pilot/pilot.yaml")):
        if candidate.is_file() and os.access(candidate, os.R_OK):
            return candidate
    return None


def local_user() -> str:
    """The console user name for the person at this machine: their login name when it is a valid user
    name, else `local`."""
    import getpass

    from pilot.console.auth import NAME_RE

    try:
        name = getpass.getuser().lower()
    except (KeyError, OSError):
        return "local"
    return name if NAME_RE.fullmatch(name) else "local"


def local_settings(profile: Path | None, state_dir: Path, port: int) -> tuple[dict[str, Any], list[str]]:
    """(settings for load_config, notes for the user): the broker the profile names (its host and port;
    a broker with TLS or credentials needs a settings file), the profile's folder for the editor, and
    everything else private to this user under `state_dir`."""
    over: dict[str, Any] = {
        "http.host": "127.0.0.1",
        "http.port": port,
        "state_dir": state_dir / "console",
        "auth.users_file": state_dir / "console-users",
    }
    notes: list[str] = []
    if profile is None:
        notes.append("no profile found for this machine: `pilot init` writes one; the editor opens packs meanwhile")
        return over, notes
    over["editor.profiles_dir"] = profile.parent
    from pilot.profile.pipeline import compile_file

    _doc, result = compile_file(profile)
    if result.plan is None:
        notes.append(f"{profile} does not validate yet: the editor shows where")
    elif result.plan.mqtt.host:
        over["broker.host"], over["broker.port"] = result.plan.mqtt.host, result.plan.mqtt.port or 1883
        if result.plan.mqtt.tls or result.plan.mqtt.username:
            notes.append("the profile's broker needs TLS or a user name: give the console its own with --config")
    return over, notes


def cmd_open(args: argparse.Namespace) -> int:
    """`pilot console --open` (the desktop's "Pilot settings"): a console for this machine only, bound to
    127.0.0.1, signed in through a one-time link handed to the browser, editing this machine's profile."""
    import secrets

    try:
        from pilot.console import auth, server
    except ImportError as exc:
        return _fail(f"the console needs its extra: pip install 'pilot-agent[console]' ({exc.name} is missing)")
    from pilot.agent import broker as trial
    from pilot.console.config import ConfigError, load_config

    state = Path(args.state_dir).expanduser() if args.state_dir else local_state_dir()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = LOCAL_PORT if not trial.listening("127.0.0.1", LOCAL_PORT) else trial.free_port()
    profile = local_profile(args.profile)
    over, notes = local_settings(profile, state, port)
    for note in notes:
        err(f"pilot: {escape(note)}")
    try:
        config = load_config(args.config, **over)
    except ConfigError as exc:
        return _fail(str(exc))
    name = local_user()
    users = auth.UsersFile(config.auth.users_file)
    try:
        # a password no one knows: this user signs in only through the links this command mints
        known = users.get(name)
        if known is None:
            users.add(name, "admin", secrets.token_urlsafe(24))
        elif known.role.label != "admin":
            users.set_role(name, "admin")
    except auth.AuthError as exc:
        return _fail(str(exc))
    start = f"/editor?file={profile.name}" if profile is not None else "/editor"

    def opened(console: Any, url: str) -> None:
        from urllib.parse import quote

        console.links = auth.SignInLinks(console.clock)  # only this console, only this process, takes them
        link = f"{url}auth/link?t={console.links.mint(name)}&next={quote(start, safe='')}"
        out(f"Pilot settings: {url} (signed in as {name} through a one-time link; Ctrl-C stops it)")
        if not args.no_browser:
            server.open_browser(console, link)
        else:
            out(f"sign in once with: {link}")

    return server.serve(config, on_listening=opened)


def local_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "pilot-console"


# ------------------------------------------------------------------ service


def cmd_service_install(args: argparse.Namespace) -> int:
    from pilot.service import console as unit
    from pilot.service.systemd import InstallError, default_runner, is_root

    if os.name == "nt":
        return _fail("the console service is a systemd unit; on Windows run `pilot console run` under your own service")
    system = system_scope(args)
    root = Path(args.root).resolve() if args.root else None
    try:
        changes = unit.plan_install(
            system=system,
            config=args.config,
            exec_override=args.exec_path,
            user=args.service_user,
            root=root,
        )
    except (InstallError, OSError) as exc:
        return _fail(str(exc))
    for text in changes.warnings:
        err(f"pilot: warning: {text}")
    for text in changes.notes:
        err(f"pilot: note: {text}")
    if args.print:
        sys.stdout.write(unit.render_changes(changes, root))
        for text in changes.blockers:
            err(f"pilot: error: install would refuse: {text}")
        return EXIT_INVALID if changes.blockers else EXIT_OK
    if changes.blockers:
        for text in changes.blockers:
            err(f"pilot: error: {text}")
        err("pilot: nothing installed")
        return EXIT_INVALID
    if system and root is None and not is_root():
        return _fail("installing the system service needs root (sudo), or --user for a user service")
    code = unit.apply(changes, default_runner(), root=root, run_commands=root is None)
    if code == 0 and root is None:
        journal = "journalctl -u pilot-console -f" if system else "journalctl --user -u pilot-console -f"
        out(f"The console is installed and started. Follow it with `{journal}`.")
    return code


def cmd_service_uninstall(args: argparse.Namespace) -> int:
    from pilot.service import console as unit
    from pilot.service.systemd import default_runner, is_root

    system = system_scope(args)
    root = Path(args.root).resolve() if args.root else None
    changes = unit.plan_uninstall(system=system, purge=args.purge)
    if args.print:
        sys.stdout.write(unit.render_changes(changes, root))
        return EXIT_OK
    if system and root is None and not is_root():
        return _fail("removing the system service needs root (sudo), or --user for a user service")
    return unit.apply(changes, default_runner(), root=root, run_commands=root is None)


def cmd_service_status(args: argparse.Namespace) -> int:
    from pilot.service import console as unit
    from pilot.service.systemd import default_runner

    code, text = unit.status(system=system_scope(args), runner=default_runner())
    sys.stdout.write(text)
    return code


# ------------------------------------------------------------------ the parser


def _users_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--users",
        metavar="FILE",
        help="the users file (default: /etc/pilot/console-users as root, else ~/.config/pilot/console-users)",
    )


def _help(p: argparse.ArgumentParser) -> Any:
    def show(args: argparse.Namespace) -> int:
        if getattr(args, "open_local", False):
            return cmd_open(args)
        p.print_help()
        return EXIT_USAGE

    return show


def _open_flags(p: argparse.ArgumentParser, switch: str | None = None) -> None:
    """`pilot console open` and its spelling `pilot console --open` (what the desktop entry runs)."""
    if switch:
        p.add_argument(switch, dest="open_local", action="store_true", help="same as `pilot console open`")
    p.add_argument("--profile", metavar="FILE", help="the profile to edit (default: this machine's)")
    p.add_argument("--config", metavar="FILE", help="console settings (a broker with TLS or credentials)")
    p.add_argument("--state-dir", metavar="DIR", help="default ~/.local/state/pilot-console")
    p.add_argument("--no-browser", action="store_true", help="print the one-time sign-in link instead of opening it")


def register(sub: Any) -> None:
    p = sub.add_parser("console", help="the web console for a fleet of Pilot devices: run it, its users, its service")
    p.set_defaults(func=_help(p))
    _open_flags(p, "--open")
    actions = p.add_subparsers(dest="console_command", metavar="ACTION", parser_class=type(p))

    o = actions.add_parser("open", help="this machine's settings in the browser: a private console on 127.0.0.1")
    _open_flags(o)
    o.set_defaults(func=cmd_open)

    r = actions.add_parser("run", help="serve the console (needs the `console` extra)")
    r.add_argument("--config", metavar="FILE", help="the console's YAML settings; the flags below override it")
    r.add_argument("--broker", metavar="HOST[:PORT]", type=parse_broker, help="the MQTT broker (default 127.0.0.1)")
    r.add_argument("--listen", metavar="HOST:PORT", type=parse_listen, help="where to serve (default 127.0.0.1:8470)")
    r.add_argument("--db", metavar="URL", help="sqlite:///PATH or postgresql://... (default: sqlite in the state dir)")
    _users_arg(r)
    r.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM, chain included)")
    r.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    r.add_argument(
        "--anonymous-read", action="store_true", default=None, help="visitors who are not signed in read as viewers"
    )
    r.add_argument("--keyring", metavar="FILE", help="the keyring whose key signs the console's commands")
    r.add_argument("--kid", metavar="ID", help="the key id the console signs with (default: console)")
    r.add_argument("--state-dir", metavar="DIR", help="history and sessions (default /var/lib/pilot-console as root)")
    r.add_argument("--open", dest="open_browser", action="store_true", help="open the browser on it once it listens")
    r.set_defaults(func=cmd_run)

    m = actions.add_parser("demo", help="try it: a trial broker, this machine's agent in dry run, and the console")
    m.add_argument("--listen", metavar="HOST:PORT", type=parse_listen, help="where to serve (default 127.0.0.1:8470)")
    m.add_argument("--state-dir", metavar="DIR", help="where the demo keeps its files (default: a new temporary one)")
    m.set_defaults(func=cmd_demo)

    u = actions.add_parser("user", help="add, change, remove or list the console's users")
    u.set_defaults(func=_help(u))
    users = u.add_subparsers(dest="user_command", metavar="ACTION", parser_class=type(p))

    a = users.add_parser("add", help="add a user (the password is asked twice, or read from stdin)")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--role", choices=ROLES, required=True, help="viewer reads; operator also presses; admin all")
    a.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    _users_arg(a)
    a.set_defaults(func=cmd_user_add)

    w = users.add_parser("passwd", help="set a user's password (ends the sessions signed in with the old one)")
    w.add_argument("name", metavar="NAME")
    w.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    _users_arg(w)
    w.set_defaults(func=cmd_user_passwd)

    o = users.add_parser("role", help="change a user's role")
    o.add_argument("name", metavar="NAME")
    o.add_argument("role", metavar="ROLE", choices=ROLES)
    _users_arg(o)
    o.set_defaults(func=cmd_user_role)

    d = users.add_parser("remove", help="remove a user (their sessions end)")
    d.add_argument("name", metavar="NAME")
    _users_arg(d)
    d.set_defaults(func=cmd_user_remove)

    li = users.add_parser("list", help="the users and their roles")
    _users_arg(li)
    li.set_defaults(func=cmd_user_list)

    s = actions.add_parser("service", help="install, remove or inspect the console as a systemd service")
    s.set_defaults(func=_help(s))
    service = s.add_subparsers(dest="service_command", metavar="ACTION", parser_class=type(p))

    i = service.add_parser("install", help="write the unit, create the console's user, enable and start")
    add_scope_flags(i)
    i.add_argument("--config", metavar="FILE", help="the settings the unit runs with (default /etc/pilot/console.yaml)")
    i.add_argument("--service-user", metavar="NAME", default=SERVICE_USER, help=f"default {SERVICE_USER}")
    i.add_argument("--print", action="store_true", help="print every file and command; change nothing")
    i.add_argument("--root", metavar="DIR", help="write every file under DIR and run no command (tests, packaging)")
    i.add_argument("--exec", dest="exec_path", metavar="PATH", help="the pilot executable the unit runs")
    i.set_defaults(func=cmd_service_install)

    n = service.add_parser("uninstall", help="stop and disable the console, remove its unit")
    add_scope_flags(n)
    n.add_argument("--print", action="store_true", help="print what would be removed and run; change nothing")
    n.add_argument("--root", metavar="DIR", help="remove files under DIR and run no command")
    n.add_argument("--purge", action="store_true", help="also remove /var/lib/pilot-console (history, sessions)")
    n.set_defaults(func=cmd_service_uninstall)

    t = service.add_parser("status", help="`systemctl status pilot-console`")
    add_scope_flags(t)
    t.set_defaults(func=cmd_service_status)
