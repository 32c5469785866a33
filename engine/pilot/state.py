"""Persisted agent state: small JSON files written atomically (tmp, fsync, rename).

A crash or a full disk leaves either the old file or the new one, never a
truncated mix; a failure to write is reported to the caller, not swallowed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def default_state_dir(system: bool = False) -> Path:
    if system or os.geteuid() == 0 and not os.environ.get("XDG_STATE_HOME"):
        return Path(os.environ.get("STATE_DIRECTORY", "/var/lib/pilot"))
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "pilot"


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def ensure(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.chmod(self.path, 0o700)
        except OSError:
            pass

    def read_json(self, name: str, default: Any = None) -> Any:
        try:
            with open(self.path / name, encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return default
        except (OSError, ValueError):
            return default

    def write_json(self, name: str, data: Any) -> None:
        """Atomic replace; raises OSError (ENOSPC, EACCES) for the caller to count."""
        self.ensure()
        target = self.path / name
        tmp = target.with_name(f".{target.name}.tmp")
        payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
