"""The agent as a subprocess, for tests and benches: process measurements from /proc, the actions
it recorded (PILOT_SYSTEM_RECORD) and signed command envelopes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

# ------------------------------------------------------------------ process measurements


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(x) for x in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------ recorded actions


def recorded_calls(record: Path) -> list[dict]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------ signing


@dataclass
class Signer:
    keyring: Path
    device: str
    base: str
    keys: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from pilot.agent import signing

        self.keys = signing.load_keyring(self.keyring)

    def envelope(self, command: str, value: str = "PRESS", *, ts: int | None = None, kid: str = "k1") -> str:
        from pilot.agent import signing

        return json.dumps(signing.sign(self.keys[kid], self.device, f"{self.base}/cmd/{command}/set", value, ts=ts))


def new_keyring(path: Path) -> Path:
    from pilot.agent import signing

    path.write_text(signing.new_key_line("k1") + "\n")
    path.chmod(0o600)
    return path
