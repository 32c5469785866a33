"""`pilot console run`: settings -> storage, fleet, MQTT ingest, command sender, web app -> uvicorn.

Start-up problems (a settings file with a mistake, a database that cannot open, certificate files that
cannot be read, a port in use) are one plain line and exit status 2; a broker that is down is not a
start-up problem: the console serves its pages, says "broker disconnected" and keeps retrying.
"""

from __future__ import annotations

import argparse
import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pilot.console.config import ConfigError, ConsoleConfig, load_config
from pilot.escaping import escape

log = logging.getLogger("pilot.console")


def _host_port(text: str | tuple[str, int | None], default_port: int) -> tuple[str, int]:
    """`HOST[:PORT]` (or the command line's already parsed pair) with the default port filled in."""
    if isinstance(text, tuple):
        return text[0], text[1] or default_port
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{text!r}: the port must be a number from 1 to 65535")
    return host.strip("[]") or "127.0.0.1", int(port)


def config_from_args(args: argparse.Namespace) -> ConsoleConfig:
    """The settings file (if any) with the flags on top."""
    over: dict[str, Any] = {}
    broker = getattr(args, "broker", None)
    if broker:
        over["broker.host"], over["broker.port"] = _host_port(broker, 1883)
    listen = getattr(args, "listen", None)
    if listen:
        over["http.host"], over["http.port"] = _host_port(listen, 8470)
    for flag, dotted, kind in (
        ("db", "database", str),
        ("users", "auth.users_file", Path),
        ("tls_cert", "http.tls_cert", Path),
        ("tls_key", "http.tls_key", Path),
        ("keyring", "signing.keyring", Path),
        ("kid", "signing.kid", str),
        ("state_dir", "state_dir", Path),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            over[dotted] = kind(value)
    if getattr(args, "anonymous_read", False):
        over["auth.anonymous_read"] = True
    return load_config(getattr(args, "config", None), **over)


def tls_context(config: ConsoleConfig) -> ssl.SSLContext | None:
    http = config.http
    if not http.tls:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(http.tls_cert), str(http.tls_key) if http.tls_key else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate {http.tls_cert}: {exc}") from None
    return context


def open_console(config: ConsoleConfig, clock=time.time):
    """Every part of a running console, connected to nothing yet (the tests drive these directly)."""
    from pilot.console import auth
    from pilot.console.app import Console
    from pilot.console.commands import CommandSender
    from pilot.console.fleet import Fleet
    from pilot.console.ingest import Ingest
    from pilot.console.storage import Retention, open_storage

    r = config.retention
    if config.database is None:
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        storage = open_storage(
            config.database_url, Retention(raw=r.raw_s, minute=r.minute_s, hour=r.hour_s, five_minute=r.five_minute_s)
        )
    except Exception as exc:  # sqlite3/psycopg errors: one line naming the database
        raise ConfigError(f"cannot open the history database {_redact(config.database_url)}: {exc}") from None
    fleet = Fleet()
    ingest = Ingest(config, fleet, storage, clock=clock)
    sender = CommandSender(
        ingest.publish, config.signing.keyring, config.signing.kid, timeout=config.command_timeout_s, clock=clock
    )
    ingest.on_result = sender.on_result
    users = auth.UsersFile(config.auth.users_file)
    try:
        sessions = auth.Sessions(
            storage, clock, users=users, idle=config.auth.session_idle_s, lifetime=config.auth.session_max_s
        )
    except auth.AuthError as exc:
        storage.close()
        raise ConfigError(str(exc)) from None
    return Console(
        config=config,
        fleet=fleet,
        storage=storage,
        ingest=ingest,
        sender=sender,
        users=users,
        sessions=sessions,
        limiter=auth.LoginLimiter(clock),
        clock=clock,
    )


def _redact(url: str) -> str:
    """A database URL for a log line: the password replaced."""
    head, at, tail = url.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return escape(url)
    scheme_user, _, _password = head.rpartition(":")
    return escape(f"{scheme_user}:***@{tail}")


def main(args: argparse.Namespace, *, on_listening: Callable[[Any, str], None] | None = None) -> int:
    """`pilot console run`: the settings file and flags, then serve(). `--open` opens the browser on it."""
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"pilot: error: {exc}", file=sys.stderr)
        return 2
    if on_listening is None and getattr(args, "open_browser", False):
        on_listening = open_browser
    return serve(config, on_listening=on_listening)


def open_browser(console: Any, url: str) -> None:
    """Open the user's browser on `url` without waiting for it (a browser may take seconds to start)."""
    import threading
    import webbrowser

    threading.Thread(target=webbrowser.open, args=(url,), name="pilot-open-browser", daemon=True).start()


def serve(config: ConsoleConfig, *, on_listening: Callable[[Any, str], None] | None = None) -> int:
    """Serve a console until stopped. `on_listening(console, url)` runs once the socket listens (the
    browser may connect at once) and before the server's loop starts."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvicorn
    except ImportError:
        print("pilot: error: the console needs its extra: pip install 'pilot-agent[console]'", file=sys.stderr)
        return 2
    try:
        context = tls_context(config)
        console = open_console(config)
    except ConfigError as exc:
        print(f"pilot: error: {exc}", file=sys.stderr)
        return 2
    from pilot.console.app import build
    from pilot.console.auth import AuthError

    try:
        nobody = not console.users.list()
    except AuthError as exc:  # one line naming the file
        print(f"pilot: error: {exc}", file=sys.stderr)
        return 2
    if not config.auth.anonymous_read and nobody:
        log.warning(
            "no users in %s yet: add one with `pilot console user add NAME --role admin`",
            escape(str(config.auth.users_file)),
        )
    app = build(console)
    tls = {}
    if context is not None:  # checked above; uvicorn loads the same files
        tls = {
            "ssl_certfile": str(config.http.tls_cert),
            "ssl_keyfile": str(config.http.tls_key or config.http.tls_cert),
        }
    server_config = uvicorn.Config(
        app,
        **tls,
        host=config.http.host,
        port=config.http.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,  # X-Forwarded-* are believed only from http.trusted_proxies, by the app itself
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(server_config)
    try:
        listener = listen_socket(config.http.host, config.http.port)
    except OSError as exc:
        print(f"pilot: error: cannot listen on {config.http.host}:{config.http.port}: {exc.strerror}", file=sys.stderr)
        console.storage.close()
        return 2
    try:
        console.ingest.start()
    except ConfigError as exc:
        print(f"pilot: error: {exc}", file=sys.stderr)
        console.storage.close()
        return 2
    scheme = "https" if context else "http"
    log.info(
        "console on %s://%s:%d/ (history in %s)",
        scheme,
        config.http.host,
        config.http.port,
        _redact(config.database_url),
    )
    if on_listening is not None:
        host = f"[{config.http.host}]" if ":" in config.http.host else config.http.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        on_listening(console, f"{scheme}://{host}:{listener.getsockname()[1]}/")
    try:
        server.run(sockets=[listener])
    finally:
        console.ingest.stop()
        console.storage.close()
        listener.close()
    return 0


def listen_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a port in use is our one-line error, not the server's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock
