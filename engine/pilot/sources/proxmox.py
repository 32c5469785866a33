"""Proxmox VE guests (QEMU VMs and LXC containers) as child devices of the host.

One request per poll covers the whole cluster (`/cluster/resources?type=vm`); the client that makes
it (`pilot.sources.pve`) checks TLS, pins, bounds and shapes. Here each guest becomes an `Instance`:
its vmid is its key (unique in a cluster, so a rename or a migration keeps the device), templates are
skipped, and a guest whose node is down (Proxmox reports it `unknown`) is unavailable while the
others stay up. Disk and network rates are computed from Proxmox's byte counters between two polls.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from pilot.registry import SOURCES
from pilot.sources import Bound, Instance, SourceError

_RATE = {"unit": "B/s", "device_class": "data_rate", "state_class": "measurement", "precision": 0}
_BYTES = {"unit": "B", "device_class": "data_size", "state_class": "measurement"}

FIELDS: dict[str, dict[str, Any]] = {
    "status": {"name": "Status", "icon": "mdi:server"},
    "running": {"platform": "binary_sensor", "name": "Running", "device_class": "running"},
    "cpu": {"name": "CPU", "unit": "%", "state_class": "measurement", "precision": 1, "icon": "mdi:cpu-64-bit"},
    "memory_used": {**_BYTES, "name": "Memory used", "icon": "mdi:memory"},
    "memory_max": {**_BYTES, "name": "Memory size", "icon": "mdi:memory", "enabled_by_default": False},
    "memory_percent": {
        "name": "Memory",
        "unit": "%",
        "state_class": "measurement",
        "precision": 1,
        "icon": "mdi:memory",
    },
    "disk_read": {**_RATE, "name": "Disk read", "icon": "mdi:harddisk"},
    "disk_write": {**_RATE, "name": "Disk write", "icon": "mdi:harddisk"},
    "network_in": {**_RATE, "name": "Network in", "icon": "mdi:download-network"},
    "network_out": {**_RATE, "name": "Network out", "icon": "mdi:upload-network"},
    "uptime": {"name": "Uptime", "unit": "s", "device_class": "duration", "icon": "mdi:timer-outline"},
    "node": {"name": "Node", "icon": "mdi:server-network"},
    "tags": {"name": "Tags", "icon": "mdi:tag-multiple", "enabled_by_default": False},
    "ha_state": {"name": "HA state", "icon": "mdi:shield-sync", "enabled_by_default": False},
    "kind": {"name": "Kind", "icon": "mdi:shape", "enabled_by_default": False},
}
DEFAULT_SENSORS = (
    "status",
    "running",
    "cpu",
    "memory_used",
    "memory_percent",
    "disk_read",
    "disk_write",
    "network_in",
    "network_out",
    "uptime",
    "node",
)
COMMANDS: dict[str, dict[str, Any]] = {
    "start": {"action": "proxmox.power", "args": {"power": "start"}, "icon": "mdi:play"},
    "shutdown": {"action": "proxmox.power", "args": {"power": "shutdown"}, "icon": "mdi:power", "confirm": "10s"},
    "stop": {"action": "proxmox.power", "args": {"power": "stop"}, "icon": "mdi:stop", "confirm": "10s"},
    "reboot": {"action": "proxmox.power", "args": {"power": "reboot"}, "icon": "mdi:restart", "confirm": "10s"},
    "suspend": {"action": "proxmox.power", "args": {"power": "suspend"}, "icon": "mdi:pause"},
    "resume": {"action": "proxmox.power", "args": {"power": "resume"}, "icon": "mdi:play-pause"},
}

PARAMS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "url": {
            "type": "string",
            "pattern": r"^https://[A-Za-z0-9.\-\[\]:]+(:\d{1,5})?/?$",
            "description": "The API, e.g. `https://pve.lan:8006`. Without it, the local `pvesh` (Pilot on the host).",
        },
        "token_id": {
            "type": "string",
            "pattern": r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+![A-Za-z0-9._-]+$",
            "description": "API token id, `USER@REALM!TOKENID` (see docs/proxmox.md for its least privileges).",
        },
        "token_file": {"type": "string", "minLength": 1, "description": "File holding the token's secret."},
        "ca_file": {"type": "string", "minLength": 1, "description": "CA certificate that signed the API's."},
        "fingerprint": {
            "type": "string",
            "pattern": r"^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$",
            "description": "Pinned SHA-256 fingerprint of the API's certificate, as Proxmox shows it.",
        },
        "insecure": {"type": "boolean", "description": "Skip TLS verification (never by default)."},
        "timeout": {"type": "number", "minimum": 1, "maximum": 60, "description": "Seconds per request."},
        "node": {
            "type": "string",
            "pattern": r"^(local|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)$",
            "description": "Only the guests on this node (`local`: the node Pilot runs on), so that an agent on "
            "each node of a cluster announces each guest once. Default: every guest of the cluster.",
        },
    },
    "dependentRequired": {"url": ["token_id", "token_file"], "token_id": ["url"], "token_file": ["url"]},
}


class _Rates:
    """Bytes per second from Proxmox's cumulative counters, per guest and counter."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.last: dict[tuple[int, str], tuple[float, int]] = {}

    def rate(self, vmid: int, name: str, counter: int, now: float) -> float | None:
        previous = self.last.get((vmid, name))
        self.last[(vmid, name)] = (now, counter)
        if previous is None:
            return None
        then, old = previous
        if now <= then or counter < old:  # a restarted guest starts its counters again
            return None
        return (counter - old) / (now - then)

    def forget_except(self, vmids: set[int]) -> None:
        self.last = {k: v for k, v in self.last.items() if k[0] in vmids}


def guest_instance(guest: Any, rates: _Rates, now: float) -> Instance:
    memory_percent = 100.0 * guest.mem / guest.maxmem if guest.maxmem else None
    fields = {
        "status": guest.status,
        "running": guest.status == "running",
        "cpu": 100.0 * guest.cpu,
        "memory_used": guest.mem,
        "memory_max": guest.maxmem,
        "memory_percent": memory_percent,
        "disk_read": rates.rate(guest.vmid, "diskread", guest.diskread, now),
        "disk_write": rates.rate(guest.vmid, "diskwrite", guest.diskwrite, now),
        "network_in": rates.rate(guest.vmid, "netin", guest.netin, now),
        "network_out": rates.rate(guest.vmid, "netout", guest.netout, now),
        "uptime": guest.uptime,
        "node": guest.node,
        "tags": ",".join(guest.tags),
        "ha_state": guest.hastate,
        "kind": "VM" if guest.kind == "qemu" else "container",
    }
    return Instance(
        key=str(guest.vmid),
        name=guest.name,  # empty for a guest whose node is down: the runner keeps the name it knew
        fields=fields,
        available=guest.status != "unknown",  # its node is down or unreachable from the cluster
        target={"node": guest.node, "kind": guest.kind, "vmid": guest.vmid},
    )


@SOURCES.register(
    "proxmox.guests",
    params=PARAMS,
    defaults={"fields": FIELDS, "sensors": DEFAULT_SENSORS, "commands": COMMANDS, "model": "Proxmox VE guest"},
)
def proxmox_guests(
    url: str | None = None,
    token_id: str | None = None,
    token_file: str | None = None,
    ca_file: str | None = None,
    fingerprint: str | None = None,
    insecure: bool = False,
    timeout: float = 10.0,
    node: str | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Bound:
    """Every QEMU VM and LXC container of a Proxmox VE cluster, each its own device with status, CPU,
    memory, disk and network rates, uptime and node; power commands (start, shutdown, stop, reboot,
    suspend, resume) under the guard chain. Templates are skipped."""
    import os
    import shutil

    from pilot.sources.pve import PveClient, PveError, PveTarget

    # what this host lacks, as opposed to what fails: an optional set skips quietly (pilot.agent.children)
    if url is None and shutil.which("pvesh", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        raise SourceError("absent", "no `url` and no local pvesh: this is not a Proxmox VE host")
    if token_file is not None and not os.path.exists(token_file):
        raise SourceError("absent", f"the token file {token_file} does not exist (docs/proxmox.md: create the token)")
    client = PveClient(
        PveTarget(
            url=url.rstrip("/") if url else None,
            token_id=token_id,
            token_file=token_file,
            ca_file=ca_file,
            fingerprint=fingerprint,
            insecure=insecure,
            timeout=float(timeout),
        )
    )
    rates = _Rates(clock)
    if node == "local":
        import socket

        node = socket.gethostname().split(".")[0]  # a Proxmox node's name is its short host name

    def poll() -> list[Instance]:
        try:
            guests = [g for g in client.guests() if not g.template and (node is None or g.node == node)]
        except PveError as exc:
            raise SourceError(exc.reason, exc.detail) from None
        now = clock()
        rates.forget_except({g.vmid for g in guests})
        return [guest_instance(g, rates, now) for g in guests]

    def request(method: str, path: str) -> str:
        """A power action planned by `proxmox.power`; the client checks every part of the path again."""
        from pilot.actions import ActionError

        match = _POWER_PATH.match(path)
        if method != "POST" or match is None:
            raise ActionError("not a Proxmox power request")
        node, kind, vmid, action = match.groups()
        try:
            return client.power(node, kind, int(vmid), action)
        except PveError as exc:
            raise ActionError(f"Proxmox answered {exc.reason}: {exc.detail}") from None
        except ValueError as exc:  # a path part the client refuses
            raise ActionError(str(exc)) from None

    return Bound(poll, request)


_POWER_PATH = re.compile(r"^/nodes/([A-Za-z0-9-]{1,63})/(qemu|lxc)/(\d{3,9})/status/([a-z]{1,16})$")
