"""The floor for bench/agent.py: the least a Home Assistant telemetry agent can be.

A bare paho-mqtt + psutil loop that publishes what bench/agent_profiles/pilot.yaml
publishes: one retained per-entity discovery config per sensor, an availability
topic (LWT `offline`, `online` on connect), and every sensor's state every
INTERVAL seconds on a fixed monotonic grid. No scheduler, no config file, no
validation, no reconnect logic beyond paho's own: whatever Pilot costs above
this is the price of its features.

    python bench/agent_floor.py --broker 127.0.0.1:1883 [--device-id benchfloor] [--interval 5]

Topics: homeassistant/sensor/<id>/<sensor>/config, floor/<id>/availability,
floor/<id>/state/<sensor>.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion

Reader = Callable[[], object]
NOT_COUNTED = ("lo", "docker", "veth", "br-", "virbr")


def _default_interface() -> str | None:
    try:
        with open("/proc/net/route", encoding="ascii") as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "00000000":
                    return fields[0]
    except OSError:
        pass
    return None


def _ipv4() -> str | None:
    name = _default_interface()
    for addr in psutil.net_if_addrs().get(name or "", []):
        if addr.family == socket.AF_INET:
            return addr.address
    return None


def _net_bytes() -> tuple[int, int]:
    counters = psutil.net_io_counters(pernic=True)
    recv = sent = 0
    for name, c in counters.items():
        if not name.startswith(NOT_COUNTED):
            recv += c.bytes_recv
            sent += c.bytes_sent
    return recv, sent


def _rate(index: int) -> Reader:
    last = {"at": time.monotonic(), "bytes": _net_bytes()[index]}

    def read() -> int:
        now, value = time.monotonic(), _net_bytes()[index]
        elapsed = now - last["at"]
        rate = (value - last["bytes"]) / elapsed if elapsed > 0 else 0.0
        last.update(at=now, bytes=value)
        return max(0, round(rate))

    return read


def _cpu_temp() -> Reader | None:
    temps = getattr(psutil, "sensors_temperatures", lambda: {})()
    for chip in ("coretemp", "k10temp", "cpu_thermal", "zenpower"):
        if temps.get(chip):
            return lambda chip=chip: round(psutil.sensors_temperatures()[chip][0].current, 1)
    return None


def sensors() -> dict[str, tuple[dict, Reader]]:
    """sensor id -> (discovery fields, reader), for the sensors this machine has."""
    psutil.cpu_percent()  # prime psutil's shared CPU sample
    table: dict[str, tuple[dict, Reader | None]] = {
        "cpu_usage": (
            {"name": "CPU usage", "unit_of_measurement": "%", "state_class": "measurement"},
            lambda: psutil.cpu_percent(),
        ),
        "memory_usage": (
            {"name": "Memory usage", "unit_of_measurement": "%", "state_class": "measurement"},
            lambda: round(psutil.virtual_memory().percent, 1),
        ),
        "root_disk_usage": (
            {"name": "Root disk usage", "unit_of_measurement": "%", "state_class": "measurement"},
            lambda: round(psutil.disk_usage("/").percent, 1),
        ),
        "network_download": (
            {"name": "Network download", "unit_of_measurement": "B/s", "device_class": "data_rate"},
            _rate(0),
        ),
        "network_upload": (
            {"name": "Network upload", "unit_of_measurement": "B/s", "device_class": "data_rate"},
            _rate(1),
        ),
        "uptime": (
            {"name": "Uptime", "unit_of_measurement": "s", "device_class": "duration", "entity_category": "diagnostic"},
            lambda: int(time.time() - psutil.boot_time()),
        ),
        "cpu_temp": (
            {"name": "CPU temperature", "unit_of_measurement": "°C", "device_class": "temperature"},
            _cpu_temp(),
        ),
        "ip_address": ({"name": "IP address", "entity_category": "diagnostic"}, _ipv4),
    }
    return {sid: (fields, reader) for sid, (fields, reader) in table.items() if reader is not None}


class Floor:
    def __init__(self, host: str, port: int, device_id: str, interval: float) -> None:
        self.host, self.port, self.interval = host, port, interval
        self.device_id = device_id
        self.base = f"floor/{device_id}"
        self.availability = f"{self.base}/availability"
        self.sensors = sensors()
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"floor-{device_id}")
        self.client.will_set(self.availability, "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.announce()
        self.connected.set()

    def discovery(self, sid: str, fields: dict) -> tuple[str, str]:
        config = {
            **fields,
            "unique_id": f"floor_{self.device_id}_{sid}",
            "state_topic": f"{self.base}/state/{sid}",
            "availability_topic": self.availability,
            "device": {"identifiers": [f"floor_{self.device_id}"], "name": "Floor"},
        }
        return f"homeassistant/sensor/{self.device_id}/{sid}/config", json.dumps(config, separators=(",", ":"))

    def announce(self) -> None:
        for sid, (fields, _) in self.sensors.items():
            topic, payload = self.discovery(sid, fields)
            self.client.publish(topic, payload, qos=1, retain=True)
        self.client.publish(self.availability, "online", qos=1, retain=True)

    def publish_states(self) -> None:
        for sid, (_, reader) in self.sensors.items():
            try:
                value = reader()
            except Exception:  # a floor does not log; it skips
                continue
            if value is not None:
                self.client.publish(f"{self.base}/state/{sid}", str(value), qos=0, retain=True)

    def run(self) -> None:
        self.client.connect(self.host, self.port, keepalive=60)
        self.client.loop_start()
        self.connected.wait(10)
        tick = time.monotonic()
        while not self.stop.is_set():
            self.publish_states()
            tick += self.interval
            self.stop.wait(max(0.0, tick - time.monotonic()))
        self.client.publish(self.availability, "offline", qos=1, retain=True).wait_for_publish(3)
        self.client.disconnect()
        self.client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT")
    parser.add_argument("--device-id", default="benchfloor")
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    host, _, port = args.broker.rpartition(":")
    floor = Floor(host, int(port), args.device_id, args.interval)
    signal.signal(signal.SIGTERM, lambda *_: floor.stop.set())
    signal.signal(signal.SIGINT, lambda *_: floor.stop.set())
    floor.run()


if __name__ == "__main__":
    main()
