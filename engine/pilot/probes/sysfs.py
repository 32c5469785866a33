"""sysfs.read: any one sysfs attribute as a sensor, for hardware no built-in probe knows.

The path is confined to sysfs: it must start with /sys/, may not contain '..',
and after following symlinks must still lie under the sysfs root (sysfs links
only point within sysfs, so legitimate class/... paths resolve fine).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from pilot.params import params, prop
from pilot.probes._common import Reader, guarded, reason_of
from pilot.probes._context import ProbeContext
from pilot.probes._sysfs import exists, parse_float, parse_int, read_text
from pilot.registry import PROBES

_TRUE = {"1", "y", "yes", "on", "true", "enabled", "enable", "active", "up"}
_FALSE = {"0", "n", "no", "off", "false", "disabled", "disable", "inactive", "down"}
_SMALL = 4096  # an attribute is at most one page


def resolve(ctx: ProbeContext, path: str) -> Path:
    """The file under ctx.sysfs_root for an absolute /sys/... path; ValueError if it escapes sysfs."""
    pure = PurePosixPath(path)
    if not pure.is_absolute() or pure.parts[:2] != ("/", "sys") or len(pure.parts) < 3:
        raise ValueError(f"path must be an absolute path under /sys/, not {path!r}")
    if ".." in pure.parts:
        raise ValueError(f"path may not contain '..': {path!r}")
    root = Path(os.path.realpath(ctx.sysfs_root))
    target = root.joinpath(*pure.parts[2:])
    real = Path(os.path.realpath(target))
    if real != root and root not in real.parents:
        raise ValueError(f"{path} leads outside /sys (to {real})")
    return target


def parse_value(text: str, how: str, scale: float | int = 1) -> int | float | str | bool | None:
    """Turn an attribute's text into the requested type; numbers are multiplied by scale."""
    if how == "str":
        return text
    if how == "bool":
        word = text.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else None
    number: int | float | None = parse_int(text) if how == "int" else parse_float(text)
    if number is None:
        return None
    if scale == 1:
        return number
    scaled = number * scale
    return int(scaled) if how == "int" and float(scaled).is_integer() else scaled


def _reason(ctx: ProbeContext, path: str = "", **_: Any) -> str | None:
    def check() -> str | None:
        try:
            target = resolve(ctx, path)
        except ValueError as exc:
            return str(exc)
        if not exists(target):
            return f"{path} does not exist"
        if read_text(target, _SMALL) is None:
            return f"{path} cannot be read (permission?)"
        return None

    return reason_of(check)


@PROBES.register(
    "sysfs.read",
    params=params(
        {
            "path": prop(
                "string",
                "Absolute path of the attribute, under /sys/ (no '..').",
                pattern=r"^/sys/(?!\.\.(/|$))(?!.*/\.\.(/|$)).+",
                minLength=6,
            ),
            "parse": prop(
                "string",
                "How to read the text: int, float, str (as is, minus the newline) or bool "
                "(1/0, Y/N, yes/no, on/off, true/false, enabled/disabled).",
                enum=["int", "float", "str", "bool"],
                default="float",
            ),
            "scale": prop("number", "Multiply numbers by this, e.g. 0.001 for milli-units.", default=1),
        },
        required=("path",),
        examples=[{"path": "/sys/class/backlight/intel_backlight/brightness", "parse": "int"}],
    ),
    defaults={"platform": "sensor", "icon": "mdi:file-document-outline"},
    available=_reason,
)
def sysfs_read(ctx: ProbeContext, path: str, parse: str = "float", scale: float = 1) -> Reader:  # noqa: A002
    """Any sysfs attribute file as a value: int, float, string or boolean, optionally scaled.

    Units, device class and the rest come from the sensor's own fields in the profile.
    """
    how = parse
    if how not in ("int", "float", "str", "bool"):
        raise ValueError(f"parse must be int, float, str or bool, not {how!r}")
    target = resolve(ctx, path)

    def read() -> int | float | str | bool | None:
        text = read_text(target, _SMALL)
        return None if text is None else parse_value(text, how, scale)

    return guarded(read)
