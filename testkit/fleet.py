"""A fleet of simulated Pilot devices on one broker, for the console's tests and benchmark.

Each simulated device publishes what a real agent publishes (docs/mqtt.md): retained device-based discovery
(state sensors, two commands, the audit event and the health entities), capabilities, availability and health,
then every `period` seconds the state of each of its sensors (random walks within sensible ranges), retained
like a real agent's. Health is republished every 30 s.

paho-mqtt spends tens of microseconds per message; a fleet has to push 10,000 messages a second from a
machine that also runs the broker and the console. So the simulator speaks MQTT 3.1.1 itself over raw
sockets: CONNECT/CONNACK by hand, then pre-encoded QoS 0 PUBLISH packets (topic bytes encoded once per
sensor), written in one `sendall` per connection per tick, with PINGREQ when a connection has been quiet
for half its keep-alive. Devices are spread over `connections` sockets; one device always uses the same
socket, so its messages stay in order. A connection has no will (it carries many devices): `stop()`
publishes `offline` for each device explicitly, like a clean agent stop.

    sim = FleetSimulator("127.0.0.1", port, devices=1000, sensors=20, period=10.0)
    sim.connect(); sim.announce(); sim.start()      # ... 2,000 states/s in a thread
    marker = sim.mark(17)                            # a unique state published now, for lag measurement
    sim.stop()
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, field

PILOT_VERSION = "0.1.0"
SUPPORT_URL = "https://github.com/pilot-agent/pilot"
HEALTH_EVERY = 30.0

# ------------------------------------------------------------------ MQTT 3.1.1 encoding

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
CONNACK = 0x20
_VARINT_CACHE = 1 << 16


def remaining_length(n: int) -> bytes:
    """The MQTT "remaining length": 7 bits a byte, least significant first, high bit = more follows."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"remaining length out of range: {n}")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


_LENGTHS = [remaining_length(n) for n in range(_VARINT_CACHE)]


def _string(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT string longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session, no will, no credentials."""
    body = _string("MQTT") + b"\x04" + b"\x02" + keepalive.to_bytes(2, "big") + _string(client_id)
    return b"\x10" + remaining_length(len(body)) + body


def publish_packet(topic: str | bytes, payload: bytes, retain: bool = False) -> bytes:
    """PUBLISH at QoS 0 (no packet id)."""
    field_ = _string(topic)
    return publish_with_topic(field_, payload, retain)


def publish_with_topic(topic_field: bytes, payload: bytes, retain: bool = False) -> bytes:
    """PUBLISH at QoS 0 with a topic already encoded as an MQTT string (the hot path)."""
    size = len(topic_field) + len(payload)
    length = _LENGTHS[size] if size < _VARINT_CACHE else remaining_length(size)
    return (b"\x31" if retain else b"\x30") + length + topic_field + payload


class MQTTError(RuntimeError):
    """The broker refused or dropped a connection."""


class RawConnection:
    """One MQTT 3.1.1 connection that only publishes at QoS 0. Thread-safe `send`."""

    def __init__(self, host: str, port: int, client_id: str, keepalive: int = 60) -> None:
        self.host, self.port, self.client_id, self.keepalive = host, port, client_id, keepalive
        self.sock: socket.socket | None = None
        self.closed = threading.Event()
        self.last_send = 0.0
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def connect(self, timeout: float = 10.0) -> RawConnection:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(self.client_id, self.keepalive))
        ack = b""
        while len(ack) < 4:
            chunk = sock.recv(4 - len(ack))
            if not chunk:
                sock.close()
                raise MQTTError("the broker closed the connection before CONNACK")
            ack += chunk
        if ack[0] != CONNACK or ack[1] != 2 or ack[3] != 0:
            sock.close()
            raise MQTTError(f"CONNACK refused: {ack.hex()}")
        sock.settimeout(None)
        self.sock = sock
        self.last_send = time.monotonic()
        self._reader = threading.Thread(target=self._drain, name=f"fleet-read-{self.client_id}", daemon=True)
        self._reader.start()
        return self

    def _drain(self) -> None:
        """Read and discard what the broker sends (PINGRESP only: nothing is subscribed), notice a close, and
        keep an idle connection alive (a fleet announced but not yet running must not be timed out)."""
        sock = self.sock
        assert sock is not None
        try:
            while True:
                readable, _, _ = select.select([sock], [], [], max(1.0, self.keepalive / 4))
                if readable:
                    if not sock.recv(4096):
                        break
                else:
                    self.ping_if_due(time.monotonic())
        except (OSError, ValueError, MQTTError):
            pass
        self.closed.set()

    def send(self, data: bytes) -> None:
        if self.sock is None or self.closed.is_set():
            raise MQTTError(f"connection {self.client_id} is closed")
        with self._lock:
            self.sock.sendall(data)
            self.last_send = time.monotonic()

    def ping_if_due(self, now: float) -> None:
        if now - self.last_send >= self.keepalive / 2:
            self.send(PINGREQ)

    def close(self) -> None:
        if self.sock is None:
            return
        try:
            if not self.closed.is_set():
                with self._lock:
                    self.sock.sendall(DISCONNECT)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self._reader is not None:
            self._reader.join(2)
        self.sock = None


# ------------------------------------------------------------------ what a device publishes


@dataclass(frozen=True, slots=True)
class SensorKind:
    """One state entity of a simulated device and how its value moves."""

    key: str
    name: str
    low: float
    high: float
    step: float  # largest change per period for "walk"
    decimals: int = 0
    motion: str = "walk"  # walk | uptime | constant | binary | timestamp
    platform: str = "sensor"
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    entity_category: str | None = None
    icon: str | None = None


CATALOG: tuple[SensorKind, ...] = (
    SensorKind("cpu_usage", "CPU usage", 0, 100, 12, unit="%", icon="mdi:cpu-64-bit"),
    SensorKind("load_1m", "Load (1 min)", 0, 8, 0.6, 2, icon="mdi:chart-line"),
    SensorKind("load_5m", "Load (5 min)", 0, 8, 0.3, 2, icon="mdi:chart-line"),
    SensorKind("load_15m", "Load (15 min)", 0, 8, 0.15, 2, icon="mdi:chart-line"),
    SensorKind("memory_usage", "Memory usage", 5, 95, 2, unit="%", icon="mdi:memory"),
    SensorKind("swap_usage", "Swap usage", 0, 60, 0.5, unit="%", icon="mdi:harddisk"),
    SensorKind("root_disk_usage", "Root disk usage", 10, 95, 0.05, 1, unit="%", icon="mdi:harddisk"),
    SensorKind(
        "root_disk_free", "Root disk free", 2e9, 4e11, 5e7, unit="B", device_class="data_size", icon="mdi:harddisk"
    ),
    SensorKind(
        "network_download", "Network download", 0, 1.2e7, 8e5, unit="B/s", device_class="data_rate",
        icon="mdi:download-network",
    ),
    SensorKind(
        "network_upload", "Network upload", 0, 4e6, 2e5, unit="B/s", device_class="data_rate",
        icon="mdi:upload-network",
    ),
    SensorKind("disk_read", "Disk read", 0, 2e8, 6e6, unit="B/s", device_class="data_rate", icon="mdi:harddisk"),
    SensorKind("disk_write", "Disk write", 0, 1.5e8, 5e6, unit="B/s", device_class="data_rate", icon="mdi:harddisk"),
    SensorKind("cpu_temp", "CPU temperature", 30, 95, 2, 1, unit="°C", device_class="temperature"),
    SensorKind("nvme_temp", "NVMe temperature", 25, 75, 1, unit="°C", device_class="temperature"),
    SensorKind(
        "cpu_frequency", "CPU frequency", 800, 4800, 250, unit="MHz", device_class="frequency",
        icon="mdi:speedometer",
    ),
    SensorKind(
        "processes", "Processes", 80, 600, 6, entity_category="diagnostic", icon="mdi:format-list-numbered"
    ),
    SensorKind(
        "logged_in_users", "Logged-in users", 0, 4, 0.4, entity_category="diagnostic", icon="mdi:account-multiple"
    ),
    SensorKind(
        "uptime", "Uptime", 600, 9e6, 0, motion="uptime", unit="s", device_class="duration",
        state_class="total_increasing", entity_category="diagnostic", icon="mdi:timer-outline",
    ),
    SensorKind(
        "ip_address", "IP address", 0, 0, 0, motion="constant", state_class=None, entity_category="diagnostic",
        icon="mdi:ip-network",
    ),
    SensorKind(
        "cpu_overheating", "CPU overheating", 0, 1, 0, motion="binary", platform="binary_sensor",
        device_class="heat", state_class=None,
    ),
)  # fmt: skip

HARDWARE = (
    ("Dell Inc.", "OptiPlex 7090"),
    ("LENOVO", "ThinkCentre M70q"),
    ("HP", "ProDesk 400 G7"),
    ("Raspberry Pi Foundation", "Raspberry Pi 4 Model B Rev 1.5"),
    ("Intel(R) Client Systems", "NUC11TNHi5"),
    ("QEMU", "Standard PC (Q35 + ICH9, 2009)"),
)

BUTTONS = (("lock", "Lock screen", "mdi:lock", "PRESS"), ("reboot", "Reboot", "mdi:restart", "PRESS"))

HEALTH_ENTITIES = (  # (key, name, platform, extra fields): what the agent adds beside its profile's entities
    ("uptime_s", "Agent uptime", "sensor", {"device_class": "duration", "unit_of_measurement": "s"}),
    ("reconnects", "MQTT reconnects", "sensor", {"state_class": "total_increasing"}),
    ("dropped_telemetry", "Dropped telemetry", "sensor", {"state_class": "total_increasing"}),
    ("commands_rejected", "Rejected commands", "sensor", {"state_class": "total_increasing"}),
    ("probe_errors", "Probe errors", "sensor", {"state_class": "total_increasing"}),
    ("duplicate_agent", "Duplicate agent", "binary_sensor", {"device_class": "problem"}),
)


def sensor_kinds(count: int) -> tuple[SensorKind, ...]:
    """The first `count` of the catalog; past 20, extra temperature sensors."""
    kinds = list(CATALOG[:count])
    for n in range(len(CATALOG), count):
        kinds.append(
            SensorKind(f"temp_{n}", f"Sensor {n} temperature", 20, 80, 1, 1, unit="°C", device_class="temperature")
        )
    return tuple(kinds)


def device_id(seed: int, index: int) -> str:
    """12 lower-case hex characters, like the default id (a hash of /etc/machine-id)."""
    return hashlib.sha256(f"pilot-fleet:{seed}:{index}".encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Marker:
    """A state published at a known time, to measure how long it takes to become visible elsewhere."""

    device: str
    key: str
    topic: str
    payload: str
    value: float
    sent_wall: float  # time.time() just before the write
    sent_mono: float  # time.monotonic() just before the write


@dataclass(slots=True)
class SimDevice:
    """One simulated agent: ids, topics pre-encoded, current values."""

    index: int
    id: str
    name: str
    manufacturer: str
    model: str
    kinds: tuple[SensorKind, ...]
    prefix: str
    discovery_prefix: str
    values: list[float]
    topic_fields: list[bytes]  # state topics as MQTT strings, parallel to kinds
    ip: str
    boot: float
    instance: str
    started: float
    connection: int
    last_health: float = -math.inf

    def base(self) -> str:
        return f"{self.prefix}/{self.id}"


@dataclass
class FleetCounters:
    published: int = 0  # PUBLISH packets written, every kind
    states: int = 0  # state messages among them
    bytes: int = 0
    ticks: int = 0
    late_ticks: int = 0  # ticks that found the loop more than a tick behind
    markers: int = 0
    errors: list[str] = field(default_factory=list)


class FleetSimulator:
    """N Pilot devices over a few raw MQTT connections. See the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        devices: int,
        sensors: int = 20,
        period: float = 10.0,
        prefix: str = "pilot",
        discovery_prefix: str = "homeassistant",
        seed: int = 0,
        connections: int | None = None,
        tick: float = 0.05,
        keepalive: int = 60,
    ) -> None:
        if devices < 1 or sensors < 1 or period <= 0:
            raise ValueError("devices and sensors must be at least 1, period positive")
        self.host, self.port = host, port
        self.period = period  # may be changed while running: the rate follows smoothly
        self.prefix, self.discovery_prefix = prefix, discovery_prefix
        self.tick, self.keepalive, self.seed = tick, keepalive, seed
        self.connections_wanted = connections or max(1, min(8, devices // 250 or 1))
        self.counters = FleetCounters()
        self.rng = random.Random(seed)
        self.kinds = sensor_kinds(sensors)
        self.devices = [self._make_device(i) for i in range(devices)]
        self.by_id = {d.id: d for d in self.devices}
        self.conns: list[RawConnection] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._marker_seq = 0
        self.last_index = 0  # the device whose states the loop sent last: its next round is a period away
        self._marker_lock = threading.Lock()

    # -------------------------------------------------------------- building the fleet

    def _make_device(self, index: int) -> SimDevice:
        rng = self.rng
        manufacturer, model = HARDWARE[index % len(HARDWARE)]
        ident = device_id(self.seed, index)
        now = time.time()
        values = []
        for kind in self.kinds:
            if kind.motion == "uptime":
                values.append(float(int(rng.uniform(3600, 90 * 86400))))
            elif kind.motion in ("constant", "timestamp"):
                values.append(0.0)
            elif kind.motion == "binary":
                values.append(0.0)
            else:
                span = kind.high - kind.low
                values.append(kind.low + span * rng.uniform(0.1, 0.6))
        base = f"{self.prefix}/{ident}"
        uptime = next((v for k, v in zip(self.kinds, values) if k.motion == "uptime"), 86400.0)
        return SimDevice(
            index=index,
            id=ident,
            name=f"node-{index:04d}",
            manufacturer=manufacturer,
            model=model,
            kinds=self.kinds,
            prefix=self.prefix,
            discovery_prefix=self.discovery_prefix,
            values=values,
            topic_fields=[_string(f"{base}/state/{k.key}") for k in self.kinds],
            ip=f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255 or 1}",
            boot=now - uptime,
            instance=f"{rng.getrandbits(48):012x}",
            started=now,
            connection=index % self.connections_wanted,
        )

    def discovery(self, dev: SimDevice) -> dict:
        """The retained device-based discovery message, shaped like the agent's (pilot.agent.ha)."""
        base, slug = dev.base(), dev.name.replace("-", "_")
        components: dict[str, dict] = {}
        for kind in dev.kinds:
            uid = f"pilot_{dev.id}_{kind.key}"
            config: dict = {
                "platform": kind.platform,
                "unique_id": uid,
                "name": kind.name,
                "default_entity_id": f"{kind.platform}.{slug}_{kind.key}",
            }
            if kind.icon:
                config["icon"] = kind.icon
            if kind.device_class:
                config["device_class"] = kind.device_class
            if kind.unit:
                config["unit_of_measurement"] = kind.unit
            if kind.state_class:
                config["state_class"] = kind.state_class
            if kind.entity_category:
                config["entity_category"] = kind.entity_category
            config["state_topic"] = f"{base}/state/{kind.key}"
            if kind.platform == "binary_sensor":
                config.update(payload_on="ON", payload_off="OFF")
            components[uid] = config
        for key, name, icon, payload in BUTTONS:
            uid = f"pilot_{dev.id}_{key}"
            components[uid] = {
                "platform": "button",
                "unique_id": uid,
                "name": name,
                "default_entity_id": f"button.{slug}_{key}",
                "icon": icon,
                "command_topic": f"{base}/cmd/{key}/set",
                "qos": 1,
                "payload_press": payload,
            }
        uid = f"pilot_{dev.id}_command_audit"
        components[uid] = {
            "platform": "event",
            "unique_id": uid,
            "name": "Command audit",
            "default_entity_id": f"event.{slug}_command_audit",
            "state_topic": f"{base}/audit",
            "entity_category": "diagnostic",
            "icon": "mdi:shield-check",
            "event_types": ["ok", "dry_run", "failed", "rejected", "armed", "interrupted"],
        }
        for key, name, platform, extra in HEALTH_ENTITIES:
            uid = f"pilot_{dev.id}_health_{key}"
            config = {
                "platform": platform,
                "unique_id": uid,
                "name": name,
                "state_topic": f"{base}/health",
                "default_entity_id": f"{platform}.{slug}_{key}",
                "entity_category": "diagnostic",
                "value_template": f"{{{{ value_json.{key} }}}}",
                **extra,
            }
            if platform == "binary_sensor":
                config.update(payload_on="True", payload_off="False")
            components[uid] = config
        return {
            "device": {
                "identifiers": [f"pilot_{dev.id}"],
                "name": dev.name,
                "manufacturer": dev.manufacturer,
                "model": dev.model,
                "sw_version": f"Pilot {PILOT_VERSION}",
            },
            "origin": {"name": "Pilot", "sw_version": PILOT_VERSION, "support_url": SUPPORT_URL},
            "availability": [
                {"topic": f"{base}/availability", "payload_available": "online", "payload_not_available": "offline"}
            ],
            "components": components,
            "qos": 1,
        }

    def capabilities(self, dev: SimDevice) -> dict:
        probes = {
            "cpu.percent": "ok", "cpu.load": "ok", "memory.used_percent": "ok", "swap.used_percent": "ok",
            "disk.used_percent": "ok", "disk.free": "ok", "net.recv_rate": "ok", "net.send_rate": "ok",
            "disk.read_rate": "ok", "disk.write_rate": "ok", "thermal.cpu": "ok", "thermal.sensor": "ok",
            "cpu.frequency": "ok", "system.processes": "ok", "system.users": "ok", "system.uptime": "ok",
            "net.ip": "ok",
        }  # fmt: skip
        base = dev.base()
        return {
            "pilot_version": PILOT_VERSION,
            "profile": "desktop",
            "profile_hash": hashlib.sha256(b"fleet-profile").hexdigest()[:16],
            "probes": dict(sorted(probes.items())),
            "actions": ["session.lock", "system.reboot"],
            "registry": {"probes": sorted(probes)},
            "dry_run": True,
            "commands": [
                {
                    "id": "lock",
                    "platform": "button",
                    "name": "Lock screen",
                    "signed": False,
                    "confirm_within": None,
                    "command_topic": f"{base}/cmd/lock/set",
                    "payload_press": "PRESS",
                },
                {
                    "id": "reboot",
                    "platform": "button",
                    "name": "Reboot",
                    "signed": True,
                    "confirm_within": 10,
                    "command_topic": f"{base}/cmd/reboot/set",
                    "payload_press": "PRESS",
                },
            ],
            "rules": [{"id": "hot_cpu", "name": "Hot CPU"}],
            "schedules": [{"id": "nightly_lock", "name": "Nightly lock", "cron": "0 23 * * *", "every": None}],
        }

    def activity(self, dev: SimDevice, now: float) -> dict:
        """The retained rule/schedule firing counts (runtime.Activity's payload)."""
        return {
            "rules": {"hot_cpu": {"last": int(now) - 3600 - dev.index, "count": 1 + dev.index % 5}},
            "schedules": {"nightly_lock": {"last": int(now) - 7200, "count": 3}},
        }

    def health(self, dev: SimDevice, now: float) -> dict:
        return {
            "callback_errors": 0, "clock_jumps": 0, "commands_executed": 0, "commands_rejected": 0,
            "connected": True, "dropped_telemetry": 0, "duplicate_agent": False, "health_rejected": 0,
            "inbound_dropped": 0, "instance": dev.instance, "probe_errors": 0, "reconnects": 0,
            "rejected_by_reason": {}, "rule_errors": 0, "state_write_failures": 0, "ts": int(now),
            "uptime_s": int(now - dev.started),
        }  # fmt: skip

    def _format(self, dev: SimDevice, i: int) -> bytes:
        kind, value = dev.kinds[i], dev.values[i]
        if kind.motion == "constant":
            return dev.ip.encode()
        if kind.motion == "binary":
            return b"ON" if value else b"OFF"
        if kind.decimals:
            return f"{value:.{kind.decimals}f}".encode()
        return str(int(value + 0.5)).encode()

    def _advance(self, dev: SimDevice, elapsed: float) -> None:
        """One period of random walk, reflected at the range's ends."""
        rnd = self.rng.random
        values = dev.values
        for i, kind in enumerate(dev.kinds):
            motion = kind.motion
            if motion == "walk":
                v = values[i] + (rnd() * 2 - 1) * kind.step
                if v < kind.low:
                    v = 2 * kind.low - v
                elif v > kind.high:
                    v = 2 * kind.high - v
                values[i] = v
            elif motion == "uptime":
                values[i] += elapsed
            elif motion == "binary":
                values[i] = 1.0 if rnd() < 0.01 else 0.0

    def state_packets(self, dev: SimDevice, retain: bool = True) -> list[bytes]:
        return [publish_with_topic(dev.topic_fields[i], self._format(dev, i), retain) for i in range(len(dev.kinds))]

    def messages(self, dev: SimDevice, now: float | None = None) -> list[tuple[str, bytes, bool]]:
        """Everything `announce()` publishes for one device, in order: (topic, payload, retain)."""
        now = time.time() if now is None else now
        base = dev.base()
        out = [
            (f"{self.discovery_prefix}/device/{dev.id}/config", _json(self.discovery(dev)), True),
            (f"{base}/capabilities", json.dumps(self.capabilities(dev)).encode(), True),
            (f"{base}/availability", b"online", True),
            (f"{base}/health", _json(self.health(dev, now)), True),
            (f"{base}/activity", _json(self.activity(dev, now)), True),
        ]
        out += [(f"{base}/state/{k.key}", self._format(dev, i), True) for i, k in enumerate(dev.kinds)]
        return out

    # -------------------------------------------------------------- the wire

    def connect(self) -> FleetSimulator:
        if not self.conns:
            for n in range(self.connections_wanted):
                conn = RawConnection(self.host, self.port, f"pilot-fleet-{self.seed}-{n}", self.keepalive)
                self.conns.append(conn.connect())
        return self

    def _send(self, batches: dict[int, list[bytes]]) -> None:
        for conn_index, packets in batches.items():
            if packets:
                data = b"".join(packets)
                self.conns[conn_index].send(data)
                self.counters.published += len(packets)
                self.counters.bytes += len(data)

    def announce(self, pace: float | None = None) -> None:
        """Discovery, capabilities, availability, health, activity and every state, retained, for every device.
        `pace`: devices per second (agents starting one after another); None sends the whole fleet at once."""
        self.connect()
        now = time.time()
        start = time.monotonic()
        batches: dict[int, list[bytes]] = {}
        for n, dev in enumerate(self.devices):
            packets = batches.setdefault(dev.connection, [])
            packets += [publish_packet(t, p, r) for t, p, r in self.messages(dev, now)]
            dev.last_health = time.monotonic()
            self.counters.states += len(dev.kinds)
            if pace or len(packets) > 2000:
                self._send({dev.connection: packets})
                batches[dev.connection] = []
            if pace:
                delay = start + (n + 1) / pace - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        self._send(batches)

    def publish_states(self, dev: SimDevice, elapsed: float | None = None) -> None:
        """One round of states for one device now (outside the running loop, e.g. in a test)."""
        self._advance(dev, self.period if elapsed is None else elapsed)
        self._send({dev.connection: self.state_packets(dev)})
        self.counters.states += len(dev.kinds)

    def mark(self, device: int | str = 0, key: str | None = None) -> Marker:
        """Publish now, on `device`'s own connection, a state whose value no other message carries.

        The value stays in the sensor's range: the walk's current value with a sequence number in its
        6 decimals (`42.000017`), so charts stay sane; match it by exact value."""
        dev = self.by_id[device] if isinstance(device, str) else self.devices[device]
        i = 0 if key is None else next(n for n, k in enumerate(dev.kinds) if k.key == key)
        kind = dev.kinds[i]
        if kind.motion != "walk":
            raise ValueError(f"a marker needs a numeric sensor, not {kind.key}")
        with self._marker_lock:
            self._marker_seq += 1
            seq = self._marker_seq
        payload = f"{int(dev.values[i])}.{seq % 1_000_000:06d}"
        packet = publish_with_topic(dev.topic_fields[i], payload.encode(), True)
        sent_wall, sent_mono = time.time(), time.monotonic()
        self.conns[dev.connection].send(packet)
        self.counters.published += 1
        self.counters.markers += 1
        topic = f"{dev.base()}/state/{kind.key}"
        return Marker(dev.id, kind.key, topic, payload, float(payload), sent_wall, sent_mono)

    # -------------------------------------------------------------- running

    @property
    def rate(self) -> float:
        """State messages per second at the current period."""
        return len(self.devices) * len(self.kinds) / self.period

    def run(self, duration: float | None = None) -> None:
        """Publish each device's states once per `period`, devices spread evenly over the period, until
        `duration` seconds have passed or `stop()` is called. The schedule is kept by credit: a late tick
        sends what it owes, so the average rate holds while the machine is loaded."""
        self.connect()
        start = last = time.monotonic()
        credit, cursor, n = 0.0, 0, len(self.devices)
        next_tick = start
        while not self._stop.is_set():
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            credit += (now - last) * n / self.period
            last = now
            batches: dict[int, list[bytes]] = {}
            due = int(credit)
            credit -= due
            wall = time.time()
            for _ in range(due):
                dev = self.devices[cursor]
                self.last_index = cursor
                cursor = (cursor + 1) % n
                self._advance(dev, self.period)
                packets = batches.setdefault(dev.connection, [])
                packets += self.state_packets(dev)
                self.counters.states += len(dev.kinds)
                if now - dev.last_health >= HEALTH_EVERY:
                    dev.last_health = now
                    packets.append(publish_packet(f"{dev.base()}/health", _json(self.health(dev, wall)), True))
            try:
                self._send(batches)
                for conn in self.conns:
                    conn.ping_if_due(now)
            except (OSError, MQTTError) as exc:
                self.counters.errors.append(str(exc))
                break
            self.counters.ticks += 1
            next_tick += self.tick
            delay = next_tick - time.monotonic()
            if delay < -self.tick:
                self.counters.late_ticks += 1
                next_tick = time.monotonic()
            elif delay > 0:
                self._stop.wait(delay)

    def start(self) -> FleetSimulator:
        self.connect()
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="fleet-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self, offline: bool = True) -> None:
        """End the loop; publish `offline` for every device (a clean agent stop) and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if offline and self.conns:
            batches: dict[int, list[bytes]] = {}
            for dev in self.devices:
                batches.setdefault(dev.connection, []).append(
                    publish_packet(f"{dev.base()}/availability", b"offline", True)
                )
            try:
                self._send(batches)
            except (OSError, MQTTError) as exc:
                self.counters.errors.append(str(exc))
        for conn in self.conns:
            conn.close()
        self.conns = []
        self._stop.clear()

    def __enter__(self) -> FleetSimulator:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def main() -> int:
    """`python -m testkit.fleet HOST:PORT DEVICES [PERIOD] [SECONDS]`: run a fleet from the shell (a demo, or a
    second process when one is not enough)."""
    import sys

    args = sys.argv[1:]
    if len(args) < 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    host, _, port = args[0].rpartition(":")
    period = float(args[2]) if len(args) > 2 else 10.0
    sim = FleetSimulator(host or "127.0.0.1", int(port), devices=int(args[1]), period=period)
    sim.announce()
    try:
        sim.run(float(args[3]) if len(args) > 3 else None)
    except KeyboardInterrupt:
        pass
    sim.stop()
    print(f"published {sim.counters.published} messages, {sim.counters.states} states", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
