"""What a probe may look at: roots that tests point at recorded trees."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilot import environment


class ProbeUnavailable(Exception):
    """The thing a probe reads does not exist here (no battery, no GPU): not a failure."""


@dataclass
class ProbeContext:
    sysfs_root: Path = field(default_factory=lambda: Path(environment.get("PILOT_SYSFS_ROOT") or "/sys"))
    procfs_root: Path = field(default_factory=lambda: Path("/proc"))
    etc_root: Path = field(default_factory=lambda: Path("/etc"))
    dev_root: Path = field(default_factory=lambda: Path("/dev"))
    # The pynvml module (or a stand-in with the same functions); None = import lazily.
    nvml: Any = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def sys(self, *parts: str) -> Path:
        return self.sysfs_root.joinpath(*parts)

    def shared(self, key: str, make: Any) -> Any:
        """One object per context for probes that share a costly handle (NVML init)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]
