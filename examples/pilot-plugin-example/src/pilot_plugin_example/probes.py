"""example.file_count: how many files in a folder match a glob (a spool, a drop folder, a backup set).

A probe is a factory `factory(ctx, **args) -> reader`; the reader returns a number, text, bool or
None ("no reading right now") and must never raise for a machine that lacks something: Pilot
asks `available` first and shows its answer in `pilot probes` and the agent's log.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from pilot.params import params, prop
from pilot.registry import PROBES

MAX_ENTRIES = 100_000  # a folder with more is read only this far: a reading stays cheap


def _available(ctx: Any, folder: str = "", **_: Any) -> str | None:
    if not os.path.isabs(folder):
        return f"folder must be an absolute path, not {folder[:80]!r}"
    if not os.path.isdir(folder):
        return f"{folder[:200]} is not a folder here"
    return None


@PROBES.register(
    "example.file_count",
    params=params(
        {
            "folder": prop("string", "Absolute path of the folder to look in.", minLength=1, maxLength=4096),
            "pattern": prop("string", "Glob the file names must match (fnmatch).", minLength=1, default="*"),
        },
        required=("folder",),
        examples=[{"folder": "/var/spool/backup", "pattern": "*.tar"}],
    ),
    defaults={"unit": "files", "state_class": "measurement", "icon": "mdi:file-multiple"},
    available=_available,
)
def file_count(ctx: Any, folder: str, pattern: str = "*") -> Callable[[], int | None]:
    """How many files in a folder match a glob."""

    def read() -> int | None:
        count = 0
        try:
            with os.scandir(folder) as entries:
                for seen, entry in enumerate(entries):
                    if seen >= MAX_ENTRIES:
                        break
                    if entry.is_file(follow_symlinks=False) and fnmatchcase(entry.name, pattern):
                        count += 1
        except OSError:
            return None  # gone or unreadable right now: no reading, not a crash
        return count

    return read
