"""What every subcommand shares: exit codes, printing, and the one way to load a plan.

The command line sits on top: it may import the compiler, the agent and the
service layer; nothing imports it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilot.escaping import escape

if TYPE_CHECKING:  # `pilot --version` and argument errors never build the plan's dataclasses
    import threading

    from pilot.agent.signing import Key
    from pilot.plan import CompileResult, Plan

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def err(text: str) -> None:
    print(text, file=sys.stderr)


def state_path(arg: str | None) -> Path:
    from pilot.agent.state import default_state_dir

    return Path(arg) if arg else default_state_dir()


def parse_broker(text: str) -> tuple[str, int | None]:
    """`host`, `host:port` or `[v6]:port` -> (host, port or None: the profile's port, else 1883);
    argparse reports a bad one as a usage error."""
    if text.startswith("[") and text.endswith("]"):  # [v6] without a port
        text = text[1:-1]
    host, sep, port = text.rpartition(":")
    if not sep or (not host.startswith("[") and ":" in host):  # no port, or a bare IPv6 address
        if not text.strip("[]"):
            raise argparse.ArgumentTypeError(f"{text!r} is not HOST or HOST:PORT")
        return text.strip("[]"), None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST or HOST:PORT (a port is 1-65535)")
    return host, int(port)


def compile_for_run(profile: str | None, state_dir: Path) -> CompileResult:
    """The profile (None: the shipped pack that matches this machine) compiled in a child process."""
    from pilot.compile_child import compile_profile

    return compile_profile(profile, cache_dir=state_dir)


def load_plan(profile: str | None, state_dir: Path) -> tuple[Plan | None, int]:
    """(the compiled plan, 0), or (None, exit code) after printing why: every diagnostic with its
    file:line:column (1), or a missing file or no matching pack (2)."""
    if profile is not None and not Path(profile).is_file():
        err(f"pilot: error: {escape(profile)}: no such file")
        return None, EXIT_USAGE
    try:
        result = compile_for_run(profile, state_dir)
    except (RuntimeError, OSError) as exc:
        err(f"pilot: error: {exc}")
        return None, EXIT_INVALID
    if result.plan is None:
        if any(d.code == "no_pack" for d in result.diagnostics):
            err(f"pilot: error: {result.diagnostics[0].message}")
            return None, EXIT_USAGE
        err("\n".join(d.text() for d in result.diagnostics))
        err(f"pilot: {escape(profile or 'the matching pack')} is not valid")
        return None, EXIT_INVALID
    return result.plan, EXIT_OK


def add_scope_flags(p: argparse.ArgumentParser) -> None:
    """--system / --user for the `service` commands of the agent and of the console."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--system", action="store_true", help="the system service (default when run as root)")
    group.add_argument("--user", action="store_true", help="a user service (default when not root)")


def system_scope(args: argparse.Namespace) -> bool:
    """Whether --system / --user (or, without either, running as root) chose the system service."""
    from pilot.service.systemd import is_root

    if args.system:
        return True
    if args.user:
        return False
    return is_root()


# ------------------------------------------------------------------ signed senders (`pilot send`, `pilot deploy`)


def by_name(text: str) -> str:
    """--by NAME: who sends, signed into the envelope."""
    from pilot.agent.signing import BY_RE

    if not BY_RE.fullmatch(text):
        raise argparse.ArgumentTypeError("NAME must be 1 to 64 characters of A-Z a-z 0-9 _ . @ -")
    return text


def add_sender_options(p: argparse.ArgumentParser, *, timeout: float, by: str) -> None:
    """The options of a command that signs, publishes and waits for signed answers."""
    p.add_argument("--keyring", help="default: the profile's policies.hmac.keyring")
    p.add_argument("--kid", help="the key id to sign with (default: the last active key)")
    p.add_argument("--broker", metavar="HOST:PORT", type=parse_broker, help="default: the profile's broker")
    p.add_argument("--state-dir", metavar="DIR")
    p.add_argument("--timeout", type=float, default=timeout, help=f"seconds to wait for answers (default {timeout:g})")
    p.add_argument("--by", metavar="NAME", type=by_name, help=by)


def signing_key(keyring: str, kid: str | None) -> Key:
    """The active key `kid` of the keyring, or its last active key; KeyringError says why not."""
    from pilot.agent import signing

    keys = signing.load_keyring(keyring)
    if kid:
        key = keys.get(kid)
        if key is None or key.state != "active":
            raise signing.KeyringError(f"no active key {kid!r} in {keyring}")
        return key
    usable = [k for k in keys.values() if k.state == "active"]
    if not usable:
        raise signing.KeyringError(f"no active key in {keyring}")
    return usable[-1]


def broker_address(args: argparse.Namespace, plan: Plan) -> tuple[str, int]:
    """--broker, else the profile's broker, else the local default."""
    host, port = args.broker if args.broker else (plan.mqtt.host or "127.0.0.1", None)
    return host, port or plan.mqtt.port or 1883


def broker_client(plan: Plan, client_id: str) -> Any:
    """A paho client with the profile's credentials and TLS (not connected). Call `unreadable_files`
    first: a missing password or CA file is one clear line there, not a traceback here."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if plan.mqtt.username:
        from pilot.agent.mqtt import read_password

        client.username_pw_set(plan.mqtt.username, read_password(plan.mqtt.password_file))
    if plan.mqtt.tls is not None:
        from pilot.agent.mqtt import tls_context

        client.tls_set_context(tls_context(plan.mqtt))
    return client


def converse(client: Any, host: str, port: int, done: threading.Event, timeout: float) -> bool | None:
    """Connect `client` (its callbacks set), run it until `done` or `timeout`, disconnect: whether
    `done` was set, or None when the broker cannot be reached (reported)."""
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        err(f"pilot: error: cannot reach the broker {host}:{port}: {exc}")
        return None
    client.loop_start()
    try:
        return done.wait(timeout)
    finally:
        client.loop_stop()
        client.disconnect()


def unreadable_broker_files(plan: Plan) -> bool:
    """True after printing each file the broker connection needs that cannot be read."""
    from pilot.agent.mqtt import unreadable_files

    missing = unreadable_files(plan.mqtt)
    for line in missing:
        err(f"pilot: error: cannot read {escape(line)}")
    return bool(missing)
