"""Live updates for the pages: what changed since a reader's cursor, as one coalesced event.

A stream never holds a queue: it holds a cursor into `Fleet.changes`, and each time it wakes it takes
everything that changed after that cursor, latest values only. A browser that reads slowly (or a
network that stalls) costs nothing but a larger next event; however long it was away, the event is
bounded by the size of the fleet. The fleet page gets device summaries and its key sensors; a device
page gets that device's every value and its audit.
"""

from __future__ import annotations

import json
from typing import Any

from pilot.console.fleet import Fleet

WAKE_S = 0.25  # at most four events a second per stream
HEARTBEAT_S = 15.0  # a comment line keeps proxies from closing an idle stream
MAX_STREAMS = 256
MAX_STREAMS_EACH = 8  # per session, or per address for anonymous readers


def broker_state(fleet: Fleet) -> dict[str, Any]:
    return {"connected": fleet.broker_connected, "ready": fleet.broker_ready, "since": fleet.broker_since}


class Stream:
    """One browser's view: the whole fleet (`device` None) or one device."""

    def __init__(self, fleet: Fleet, device: str | None, cursor: int) -> None:
        self.fleet = fleet
        self.device = device
        with fleet.lock:
            self.cursor = cursor if 0 <= cursor <= fleet.changes.seq else fleet.changes.seq
            self.resync = cursor > fleet.changes.seq  # the console restarted since the page loaded

    def next_event(self) -> str | None:
        """The next `update` (or `resync`) event as SSE text, or None when nothing changed."""
        fleet = self.fleet
        with fleet.lock:
            if self.cursor < fleet.changes.floor:  # what changed since is partly forgotten: refetch all
                self.cursor, self.resync = fleet.changes.seq, True
        if self.resync:
            self.resync = False
            return "event: resync\ndata: {}\n\n"
        with fleet.lock:
            changed = fleet.changes.since(self.cursor)
            if not changed:
                return None
            self.cursor = fleet.changes.seq
            devices: dict[str, Any] = {}
            states: list[list[Any]] = []
            removed: list[str] = []
            audit: list[Any] | None = None
            broker = None
            for kind, device_id, key in changed:
                if kind == "broker":
                    broker = broker_state(fleet)
                    continue
                if self.device is not None and device_id != self.device:
                    continue
                device = fleet.devices.get(device_id)
                if kind == "removed":
                    removed.append(device_id)
                elif device is None:
                    continue
                elif kind == "device":
                    devices[device_id] = device.summary()
                elif kind == "state":
                    entity = device.entities.get(key)
                    if entity is not None and (self.device is not None or key in device.key_sensors):
                        states.append([device_id, key, entity.value, entity.updated])
                elif kind == "audit" and self.device is not None:
                    audit = list(reversed(device.audit))
        body: dict[str, Any] = {"cursor": self.cursor}
        if devices:
            body["devices"] = devices
        if states:
            body["states"] = states
        if removed:
            body["removed"] = removed
        if audit is not None:
            body["audit"] = audit
        if broker is not None:
            body["broker"] = broker
        if len(body) == 1:
            return None
        return "event: update\ndata: " + json.dumps(body, separators=(",", ":")) + "\n\n"
