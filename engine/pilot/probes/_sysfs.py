"""Small, forgiving reads of sysfs/procfs attribute files.

Kernel attribute files are tiny, may vanish between a listing and a read
(hot-plug), may refuse to be read (EACCES, EIO, ENODATA from a sensor that
is asleep) and end in exactly one newline. Every helper here turns all of
that into None so probes can say "no reading right now" without try/except.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# sysfs attributes are at most one page; procfs files we read (cpuinfo on a
# many-core box, routes) can be larger, so the cap is generous but bounded.
MAX_READ = 1 << 20


def read_text(path: Path | str, limit: int = MAX_READ) -> str | None:
    """The file's text with one trailing newline removed; None if unreadable.

    Only the newline is stripped: leading/trailing spaces are data in sysfs
    (`serial_number` = "  382"), so callers that want them gone strip themselves.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit)
    except (OSError, ValueError):
        return None
    text = raw.decode("utf-8", errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
    return text


def read_int(path: Path | str) -> int | None:
    """An integer attribute (decimal, or 0x-prefixed hex); None if missing or not a number."""
    return parse_int(read_text(path))


def parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return int(text, 0)
    except ValueError:
        return None


def parse_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def read_uevent(path: Path | str) -> dict[str, str]:
    """KEY=value lines of a `uevent` file as a dict (empty if unreadable)."""
    text = read_text(path)
    if not text:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value
    return out


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> list[object]:
    """Sort key so hwmon10 comes after hwmon2 and thermal_zone10 after thermal_zone9."""
    return [int(p) if p.isdigit() else p for p in _DIGITS.split(name)]


def list_dir(path: Path | str) -> list[str]:
    """Entry names of a directory in natural order; [] if it is missing or unreadable."""
    try:
        names = os.listdir(path)
    except (OSError, ValueError):
        return []
    return sorted(names, key=natural_key)


def is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


# ------------------------------------------------------------------- hwmon

_INPUT = re.compile(r"([a-z]+)(\d+)_input")


class HwmonChip:
    """One /sys/class/hwmon/hwmonN device: its `name` and its numbered *_input files.

    Old kernels kept `name` and the attributes under hwmonN/device/; both places are looked at.
    """

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder

    def __repr__(self) -> str:
        return f"HwmonChip({self.name!r}, {str(self.folder)!r})"

    def inputs(self, kind: str) -> dict[int, Path]:
        """{index: path} of `<kind>N_input` files (kind: temp, fan, in, power...), in index order."""
        out: dict[int, Path] = {}
        for name in list_dir(self.folder):
            match = _INPUT.fullmatch(name)
            if match and match.group(1) == kind:
                out[int(match.group(2))] = self.folder / name
        return dict(sorted(out.items()))

    def label(self, kind: str, index: int) -> str | None:
        text = read_text(self.folder / f"{kind}{index}_label")
        return text.strip() if text is not None else None


def hwmon_chips(class_dir: Path) -> list[HwmonChip]:
    """Every hwmon device under class/hwmon with a readable name, in hwmonN order."""
    chips = []
    for entry in list_dir(class_dir):
        folder = class_dir / entry
        name = read_text(folder / "name")
        if name is None and (name := read_text(folder / "device" / "name")) is not None:
            folder = folder / "device"
        if name is not None:
            chips.append(HwmonChip(name.strip(), folder))
    return chips
