"""The console's settings: one YAML file (`--config`), flags over it, typed from here on.

Everything the console does is driven by this one object, so `pilot console run --config FILE` and the
flags of a quick trial (`--broker`, `--listen`, `--db`) mean the same thing. A mistake in the file is one
line naming `file:line:column` and what is wrong, never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8470
MAX_CONFIG_BYTES = 256 * 1024


class ConfigError(Exception):
    """A console setting that cannot work; the message names where it came from."""


@dataclass(frozen=True)
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    prefix: str = "pilot"
    discovery_prefix: str = "homeassistant"
    client_id: str | None = None
    # several consoles sharing one database split the history writes with an MQTT 5 shared subscription
    shared_group: str | None = None

    @property
    def tls(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # addresses of reverse proxies whose X-Forwarded-For/-Proto are believed (docs/console-deploy.md)
    trusted_proxies: tuple[str, ...] = ()
    # the names browsers may reach the console by (Host header); empty: any. Set it when the console is
    # reachable from a network a hostile page could rebind a name to (DNS rebinding)
    allowed_hosts: tuple[str, ...] = ()

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True)
class AuthConfig:
    users_file: Path | None = None
    anonymous_read: bool = False
    session_idle_s: float = 12 * 3600
    session_max_s: float = 7 * 86400
    stream_recheck_s: float = 30.0  # how long an open event stream may outlive its session


@dataclass(frozen=True)
class SigningConfig:
    keyring: Path | None = None
    kid: str = "console"


@dataclass(frozen=True)
class RetentionConfig:
    raw_s: float = 48 * 3600
    minute_s: float = 30 * 86400
    hour_s: float = 365 * 86400
    five_minute_s: float | None = None  # the 5-minute tier that long charts read; None: as long as minute_s


@dataclass(frozen=True)
class EditorConfig:
    enabled: bool = True  # the profile editor's API and device deploys (admins and operators only)
    profiles_dir: Path | None = None  # a folder of profiles the editor may open and save; None: none


@dataclass(frozen=True)
class ConsoleConfig:
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    signing: SigningConfig = field(default_factory=SigningConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    editor: EditorConfig = field(default_factory=EditorConfig)
    state_dir: Path = Path("/var/lib/pilot-console")
    database: str | None = None  # None: sqlite in state_dir
    command_timeout_s: float = 10.0
    source: str = "<flags>"

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{(self.state_dir / 'console.db').absolute()}"


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/pilot-console")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pilot-console"


def default_users_file() -> Path:
    if os.geteuid() == 0:
        return Path("/etc/pilot/console-users")
    return Path.home() / ".config" / "pilot" / "console-users"


# ------------------------------------------------------------------ the file
_SECTIONS: dict[str, tuple[type, dict[str, type]]] = {
    "broker": (
        BrokerConfig,
        {
            "host": str,
            "port": int,
            "username": str,
            "password_file": Path,
            "ca_file": Path,
            "cert_file": Path,
            "key_file": Path,
            "insecure": bool,
            "prefix": str,
            "discovery_prefix": str,
            "client_id": str,
            "shared_group": str,
        },
    ),
    "http": (
        HttpConfig,
        {"host": str, "port": int, "tls_cert": Path, "tls_key": Path, "trusted_proxies": list, "allowed_hosts": list},
    ),
    "auth": (
        AuthConfig,
        {
            "users_file": Path,
            "anonymous_read": bool,
            "session_idle_s": float,
            "session_max_s": float,
            "stream_recheck_s": float,
        },
    ),
    "signing": (SigningConfig, {"keyring": Path, "kid": str}),
    "retention": (RetentionConfig, {"raw_s": float, "minute_s": float, "five_minute_s": float, "hour_s": float}),
    "editor": (EditorConfig, {"enabled": bool, "profiles_dir": Path}),
}
_TOP: dict[str, type] = {"state_dir": Path, "database": str, "command_timeout_s": float}


def _where(source: str, node: Any, key: Any) -> str:
    try:
        line, col = node.lc.key(key) if key is not None else (node.lc.line, node.lc.col)
        return f"{source}:{line + 1}:{col + 1}"
    except (AttributeError, KeyError, TypeError):
        return source


def _convert(value: Any, kind: type, where: str, name: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {name} must be a whole number")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{where}: {name} must be a positive number")
        return float(value)
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {name} must be a list of names or addresses")
        return tuple(value)
    if not isinstance(value, str) or not value or len(value) > 4096 or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{where}: {name} must be a non-empty line of text")
    return Path(value) if kind is Path else value


def _folder(value: Path, relative_to: Path, where: str) -> Path:
    """A folder the console reads and writes: relative to the settings file, and it must exist."""
    folder = value if value.is_absolute() else relative_to / value
    if not folder.is_dir():
        raise ConfigError(f"{where}: editor.profiles_dir {str(folder)[:200]!r} is not a folder")
    return folder.absolute()


def load_config(path: str | os.PathLike[str] | None, **overrides: Any) -> ConsoleConfig:
    """The console's settings from `path` (may be None), with `overrides` ("broker.host": value, ...) on top."""
    config = ConsoleConfig(state_dir=default_state_dir(), auth=AuthConfig(users_file=default_users_file()))
    if path is not None:
        config = _from_file(Path(path), config)
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, name = dotted.rpartition(".")
        if section:
            config = replace(config, **{section: replace(getattr(config, section), **{name: value})})
        else:
            config = replace(config, **{name: value})
    return config


def _from_file(path: Path, config: ConsoleConfig) -> ConsoleConfig:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
        doc = YAML(typ="rt").load(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 (byte {exc.start})") from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if doc is None:
        return replace(config, source=source)
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}:1:1: expected a mapping of settings")
    top: dict[str, Any] = {"source": source}
    for key, value in doc.items():
        where = _where(source, doc, key)
        if key in _SECTIONS:
            cls, fields = _SECTIONS[key]
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {key} must be a mapping")
            values = {}
            for name, item in value.items():
                inner = _where(source, value, name)
                if name not in fields:
                    raise ConfigError(f"{inner}: unknown setting {key}.{name!s:.40} (known: {', '.join(fields)})")
                values[name] = _convert(item, fields[name], inner, f"{key}.{name}")
                if (key, name) == ("editor", "profiles_dir"):
                    values[name] = _folder(values[name], path.parent, inner)
            top[key] = replace(getattr(config, key), **values)
        elif key in _TOP:
            top[key] = _convert(value, _TOP[key], where, key)
        else:
            known = ", ".join([*_SECTIONS, *_TOP])
            raise ConfigError(f"{where}: unknown setting {key!s:.40} (known: {known})")
    return replace(config, **top)
