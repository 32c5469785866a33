"""Persisted agent state: small JSON files written atomically (tmp, fsync, rename).

A crash or a full disk leaves either the old file or the new one, never a
truncated mix; a failure to write is reported to the caller, not swallowed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is down: on a nearly full disk a write can return short
    instead of failing, and a short state file renamed into place is a corrupt one."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(28, "No space left on device")
        view = view[written:]


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

    def read_json(self, name: str, default: Any = None) -> tuple[Any, bool]:
        """(the data, or default; whether the file was intact). A missing file is intact; one that
        exists but holds no JSON is not, so the caller rewrites it."""
        try:
            with open(self.path / name, encoding="utf-8") as handle:
                return json.load(handle), True
        except FileNotFoundError:
            return default, True
        except (OSError, ValueError):
            return default, False

    def write_json(self, name: str, data: Any) -> None:
        """Atomic replace; raises OSError (ENOSPC, EACCES) for the caller to count."""
        self.ensure()
        target = self.path / name
        tmp = target.with_name(f".{target.name}.tmp")
        payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, payload)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        os.close(fd)
        os.replace(tmp, target)
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
