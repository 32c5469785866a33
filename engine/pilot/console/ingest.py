"""Broker -> fleet and history: the console's one MQTT connection and what it makes of each message.

paho's network thread parses each message straight into the fleet (a dict lookup and a float for a
state) and appends numeric readings to a batch; a writer thread hands the batch to storage once a second
and runs retention every few minutes. Nothing waits on the database in the network thread, so a slow
disk shows as a longer batch, never as a backlog in the broker. Every payload is bounded per topic and
judged before it is parsed; what fails is counted by reason in `stats`, never logged verbatim.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pilot.agent import health as agent_health
from pilot.console.config import BrokerConfig, ConfigError, ConsoleConfig
from pilot.console.fleet import MAX_TEXT, SPARK_EVERY_S, CommandInfo, Entity, Fleet, clip, number
from pilot.escaping import escape

log = logging.getLogger("pilot.console")

DEVICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
JSON_FIELD = re.compile(r"\{\{\s*value_json\.([A-Za-z0-9_]{1,64})\s*\}\}")
LIMITS = {
    "state": 4096,
    "availability": 16,
    "config": 256 * 1024,
    "capabilities": 64 * 1024,
    "health": 4096,
    "activity": 64 * 1024,
    "audit": 8192,
    "result": 8192,
    "profile_result": 2 * 262_144,  # `cmd/_profile/result`: a get's answer carries the profile text
    "deploy": 4096,
}
DEPLOY_STATES = frozenset({"applied", "rolled_back", "rejected"})
HEX64 = re.compile(r"[0-9a-f]{64}")
CODE = re.compile(r"[a-z_]{1,32}")
BY = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
LIVE_ID, STORE_ID = 1, 2  # MQTT 5 subscription identifiers: states for the pages, states to store
COMMAND_PLATFORMS = frozenset({"button", "switch", "number", "select", "text"})
FLUSH_EVERY_S = 1.0
QUIET_S = 0.15  # a filter's retained messages are in when none came for this long (they follow the SUBACK)
SUBSCRIBE_WAIT_S = 15.0
MAX_MISSING = 10_000
REASK_S = 60.0
ASK_PER_S = 100  # devices a second, five retained topics each
MAINTAIN_EVERY_S = 300.0
MAX_BATCH = 200_000  # a database that cannot keep up loses the oldest readings, not the console's memory


@dataclass
class IngestStats:
    received: int = 0
    samples: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    flushes: int = 0
    flush_errors: int = 0
    samples_lost: int = 0
    reasked: int = 0
    last_flush_s: float = 0.0
    connects: int = 0

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def as_json(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "samples": self.samples,
            "dropped": dict(self.dropped),
            "flushes": self.flushes,
            "flush_errors": self.flush_errors,
            "samples_lost": self.samples_lost,
            "reasked": self.reasked,
            "last_flush_s": round(self.last_flush_s, 4),
            "connects": self.connects,
        }


def _json(payload: bytes) -> Any:
    """JSON from the broker: UTF-8, no NaN, recursion refused; None when it is not that."""
    try:
        return json.loads(payload.decode("utf-8"), parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class Ingest:
    """Subscribes, parses, batches. `on_result` receives command answers (the command sender's waiters)."""

    def __init__(
        self,
        config: ConsoleConfig,
        fleet: Fleet,
        storage: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.broker: BrokerConfig = config.broker
        self.fleet = fleet
        self.storage = storage
        self.clock = clock
        self.stats = IngestStats()
        self.on_result: Callable[[str, str, bytes], None] | None = None
        self._batch: list[Any] = []
        self._batch_lock = threading.Lock()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._client: Any = None
        self._generation = 0
        self._subacks: dict[int, threading.Event] = {}
        self._suback_lock = threading.Lock()
        self._last_retained = 0.0
        self._last_error_log = -60.0
        self._ask_lock = threading.Lock()
        self._missing: set[str] = set()
        self._asked: dict[str, float] = {}
        self._asking: list[str] = []
        prefix = self.broker.prefix
        self._prefix_parts = len(prefix.split("/"))
        self._prefix = prefix + "/"
        self._discovery = self.broker.discovery_prefix + "/device/"
        from pilot.console.storage import Sample

        self._sample = Sample

    # ------------------------------------------------------------------ connection
    def subscriptions(self) -> list[str]:
        """What the console reads. With `shared_group`, states come twice: every instance reads them all for
        its live pages, and through an MQTT 5 shared subscription each reading reaches exactly one instance,
        which stores it; the subscription identifier on each copy says which is which."""
        p, d = self.broker.prefix, self.broker.discovery_prefix
        states = [f"{p}/+/state/+"]
        if self.broker.shared_group:
            states.append(f"$share/{self.broker.shared_group}/{p}/+/state/+")
        return [
            f"{d}/device/+/config",
            f"{p}/+/cmd/+/result",
            f"{p}/+/audit",
            f"{p}/+/availability",
            f"{p}/+/capabilities",
            f"{p}/+/health",
            f"{p}/+/activity",
            f"{p}/+/deploy",
            *states,
        ]

    def start(self) -> None:
        import paho.mqtt.client as mqtt

        b = self.broker
        protocol = mqtt.MQTTv5 if b.shared_group else mqtt.MQTTv311
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            # random: two consoles on one broker (a shared group) must not take over each other's session
            client_id=b.client_id or f"pilot-console-{secrets.token_hex(4)}",
            protocol=protocol,
        )
        client.max_queued_messages_set(10_000)
        if b.username:
            password = None
            if b.password_file:
                try:
                    password = b.password_file.read_text().strip()
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"cannot read broker.password_file {b.password_file}: {exc}") from None
            client.username_pw_set(b.username, password)
        if b.tls:
            try:
                context = ssl.create_default_context(cafile=str(b.ca_file) if b.ca_file else None)
                if b.cert_file:
                    context.load_cert_chain(str(b.cert_file), str(b.key_file) if b.key_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the broker's TLS files: {exc}") from None
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if b.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                log.warning("broker TLS checks are off (broker.insecure: true)")
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 10)
        self._client = client
        client.connect_async(b.host, b.port, keepalive=30)
        client.loop_start()
        self._writer = threading.Thread(target=self._write_loop, name="console-writer", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self._writer is not None:
            self._writer.join(timeout=10)
        self.flush()

    def publish(self, topic: str, payload: str | bytes, qos: int = 1) -> bool:
        client = self._client
        if client is None or not self.fleet.broker_connected:
            return False
        info = client.publish(topic, payload, qos=qos, retain=False)
        return info.rc == 0

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("broker %s:%d refused the console: %s", self.broker.host, self.broker.port, reason_code)
            return
        self.stats.connects += 1
        self._generation += 1
        # subscribe one filter at a time, each after the previous one's retained messages have arrived: a broker
        # sends every retained message of a filter at once, and queues only so many for a subscriber (Mosquitto's
        # max_queued_messages, 1,000 by default), so a whole fleet's retained topics asked for in one go are
        # mostly dropped. Discovery comes first, so states find their entities.
        with self.fleet.lock:
            self.fleet.broker_connected = True
            self.fleet.broker_ready = False
            self.fleet.broker_since = self.clock()
            self.fleet.changes.mark("broker", "")
        threading.Thread(
            target=self._subscribe_in_turn, args=(client, self._generation), name="console-subscribe", daemon=True
        ).start()
        log.info("connected to broker %s:%d", self.broker.host, self.broker.port)

    def _subscribe_in_turn(self, client: Any, generation: int) -> None:
        for topic in self.subscriptions():
            if self._stop.is_set() or generation != self._generation:
                return  # disconnected meanwhile: the next connect starts again
            qos = 0 if topic.endswith("/state/+") else 1
            done = threading.Event()
            if self.broker.shared_group:
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties

                props = Properties(PacketTypes.SUBSCRIBE)
                props.SubscriptionIdentifier = STORE_ID if topic.startswith("$share/") else LIVE_ID
                with self._suback_lock:
                    _rc, mid = client.subscribe(topic, qos=qos, properties=props)
                    self._subacks[mid] = done
            else:
                with self._suback_lock:
                    _rc, mid = client.subscribe(topic, qos=qos)
                    self._subacks[mid] = done
            done.wait(SUBSCRIBE_WAIT_S)
            acked = time.monotonic()
            deadline = acked + SUBSCRIBE_WAIT_S
            while time.monotonic() < deadline and time.monotonic() - max(acked, self._last_retained) < QUIET_S:
                time.sleep(QUIET_S / 3)
        with self.fleet.lock:
            if generation == self._generation:
                self.fleet.broker_ready = True
                self.fleet.changes.mark("broker", "")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:
        with self._suback_lock:
            done = self._subacks.pop(mid, None)
        if done is not None:
            done.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        with self.fleet.lock:
            was = self.fleet.broker_connected
            self.fleet.broker_connected = False
            self.fleet.broker_ready = False
            self.fleet.broker_since = self.clock()
            self.fleet.changes.mark("broker", "")
        if was:
            log.warning("lost the broker %s:%d; retrying", self.broker.host, self.broker.port)

    # ------------------------------------------------------------------ messages
    def _on_message(self, client, userdata, message) -> None:
        try:
            ids = None
            if self.broker.shared_group and message.properties is not None:
                ids = getattr(message.properties, "SubscriptionIdentifier", None)
            self.handle(message.topic, message.payload, message.retain, ids)
        except Exception:  # a bug here must not kill paho's thread: count it and go on
            self.stats.drop("internal_error")
            now = time.monotonic()
            if now - self._last_error_log >= 60:  # a flood of one bad message is one log entry a minute
                self._last_error_log = now
                log.exception("console: error handling a message on %s", escape(message.topic[:200]))

    def handle(self, topic: str, payload: bytes, retained: bool = False, ids: list[int] | None = None) -> None:
        """One message from the broker, whatever its topic; `ids` are its MQTT 5 subscription identifiers."""
        self.stats.received += 1
        if retained:
            self._last_retained = time.monotonic()
        if topic.startswith(self._prefix):
            parts = topic.split("/")[self._prefix_parts :]
            if len(parts) < 2 or not DEVICE_ID.fullmatch(parts[0]):
                self.stats.drop("bad_topic")
                return
            device_id, kind = parts[0], parts[1]
            if kind == "state" and len(parts) == 3:
                if ids is None:
                    self._state(topic, payload, live=True, store=True, device_id=device_id)
                else:
                    self._state(topic, payload, live=LIVE_ID in ids, store=STORE_ID in ids, device_id=device_id)
            elif len(parts) == 2 and kind in ("availability", "capabilities", "health", "activity", "audit", "deploy"):
                if len(payload) > LIMITS[kind]:
                    self.stats.drop("too_large")
                    return
                getattr(self, "_" + kind)(device_id, payload)
            elif kind == "cmd" and len(parts) == 4 and parts[3] == "result":
                if len(payload) > LIMITS["profile_result" if parts[2] == "_profile" else "result"]:
                    self.stats.drop("too_large")
                    return
                if self.on_result is not None:
                    self.on_result(device_id, topic, payload)
            else:
                self.stats.drop("unknown_topic")
        elif topic.startswith(self._discovery) and topic.endswith("/config"):
            device_id = topic[len(self._discovery) : -len("/config")]
            if not DEVICE_ID.fullmatch(device_id):
                self.stats.drop("bad_topic")
                return
            if len(payload) > LIMITS["config"]:
                self.stats.drop("too_large")
                return
            self._config(device_id, payload)
        else:
            self.stats.drop("unknown_topic")

    def _state(self, topic: str, payload: bytes, *, live: bool, store: bool, device_id: str = "") -> None:
        if len(payload) > LIMITS["state"]:
            self.stats.drop("too_large")
            return
        fleet = self.fleet
        found = fleet.by_state_topic.get(topic)
        if found is None:
            self.stats.drop("unannounced")
            self.missing(device_id)
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self.stats.drop("not_utf8")
            return
        now = self.clock()
        device, entity = found
        if device.online is None or not device.capabilities_seen:
            self.missing(device.id)
        value = number(text, entity.platform) if entity.platform in ("sensor", "binary_sensor") else None
        if store and value is not None:
            self._add(self._sample(device.id, entity.key, now, value))
        if not live:
            return
        with fleet.lock:
            entity.value = text[:MAX_TEXT]
            entity.updated = now
            device.last_seen = now
            spark = entity.spark
            if spark is not None and value is not None and (not spark or now - spark[-1][0] >= SPARK_EVERY_S):
                spark.append((round(now, 1), value))
            fleet.changes.mark("state", device.id, entity.key)

    def _add(self, sample: Any) -> None:
        with self._batch_lock:
            batch = self._batch
            if len(batch) >= MAX_BATCH:
                del batch[: len(batch) // 10]
                self.stats.samples_lost += MAX_BATCH // 10
            batch.append(sample)
        self.stats.samples += 1

    def missing(self, device_id: str) -> None:
        """A device that publishes but whose discovery the console has not got (a broker drops messages for a
        subscriber that falls behind, as when a whole fleet announces at once): ask for its retained copy
        again, at most once a minute per device and for at most MAX_MISSING devices at a time."""
        if not device_id or len(self._missing) >= MAX_MISSING:
            return
        device = self.fleet.devices.get(device_id)
        if device is not None and device.entities and device.online is not None and device.capabilities_seen:
            return
        now = time.monotonic()
        with self._ask_lock:
            if now - self._asked.get(device_id, -REASK_S) >= REASK_S:
                self._asked[device_id] = now
                self._missing.add(device_id)

    def _ask_again(self) -> None:
        """Writer thread: subscribe to each missing device's own discovery topic (its retained copy comes
        back), and drop the subscriptions made the time before."""
        client = self._client
        if client is None or not self.fleet.broker_ready:
            return
        for topic in self._asking:
            client.unsubscribe(topic)
        self._asking = []
        asked = 0
        p = self.broker.prefix
        with self._ask_lock:
            batch = [self._missing.pop() for _ in range(min(ASK_PER_S, len(self._missing)))]
            if len(self._asked) > 4 * MAX_MISSING:  # forget old asks: the table stays bounded
                cutoff = time.monotonic() - REASK_S
                self._asked = {k: v for k, v in self._asked.items() if v >= cutoff}
        for device_id in batch:
            topics = [f"{self.broker.discovery_prefix}/device/{device_id}/config"]
            topics += [f"{p}/{device_id}/{kind}" for kind in ("availability", "capabilities", "health", "activity")]
            client.subscribe([(topic, 1) for topic in topics])
            self._asking += topics
            asked += 1
        self.stats.reasked += asked

    def _availability(self, device_id: str, payload: bytes) -> None:
        if payload not in (b"online", b"offline", b""):
            self.stats.drop("bad_availability")
            return
        with self.fleet.lock:
            device = self.fleet.devices.get(device_id)
            if device is None:
                if payload != b"online":
                    return
                device = self.fleet.device(device_id)
                if device is None:
                    self.stats.drop("too_many_devices")
                    return
            device.online = True if payload == b"online" else False if payload == b"offline" else None
            device.last_seen = self.clock() if device.online else device.last_seen
            self.fleet.changes.mark("device", device_id)
        if payload == b"online":
            self.missing(device_id)

    def _health(self, device_id: str, payload: bytes) -> None:
        if not payload:
            return
        report = agent_health.parse_report(payload)
        if report is None:
            self.stats.drop("bad_health")
            return
        topic = f"{self.broker.prefix}/{device_id}/health"
        now = self.clock()
        with self.fleet.lock:
            device = self.fleet.devices.get(device_id)
            if device is None:
                return
            report.pop("rejected_by_reason", None)
            device.health = report
            self.fleet.changes.mark("device", device_id)
            for entity in device.entities.values():  # the agent's diagnostic entities read fields of the report
                if entity.json_key is not None and entity.state_topic == topic and entity.json_key in report:
                    field_value = report[entity.json_key]
                    if isinstance(field_value, bool):
                        field_value = "ON" if field_value else "OFF"
                    entity.value, entity.updated = str(field_value), now
                    self.fleet.changes.mark("state", device_id, entity.key)

    def _capabilities(self, device_id: str, payload: bytes) -> None:
        if not payload:
            return
        doc = _json(payload)
        if not isinstance(doc, dict):
            self.stats.drop("bad_capabilities")
            return
        commands: dict[str, CommandInfo] = {}
        base = f"{self.broker.prefix}/{device_id}/cmd/"
        listed = doc.get("commands")
        for item in listed if isinstance(listed, list) else []:
            command = _command(item, base)
            if command is not None and len(commands) < 256:
                commands[command.id] = command
        rules = _named(doc.get("rules"), ("id", "name"))
        schedules = _named(doc.get("schedules"), ("id", "name", "cron"))
        with self.fleet.lock:
            device = self.fleet.device(device_id)
            if device is None:
                return
            device.sw_version = clip(doc.get("pilot_version"), 32) or device.sw_version
            device.profile = clip(doc.get("profile"), 64)
            device.dry_run = doc.get("dry_run") if isinstance(doc.get("dry_run"), bool) else None
            device.capabilities_seen = True
            device.commands = commands
            for key, entity in device.entities.items():
                entity.command = commands.get(key, entity.command)
            device.rules, device.schedules = rules, schedules
            self.fleet.changes.mark("device", device_id)

    def _activity(self, device_id: str, payload: bytes) -> None:
        doc = _json(payload) if payload else {}
        if not isinstance(doc, dict):
            self.stats.drop("bad_activity")
            return
        activity: dict[str, dict[str, dict[str, float]]] = {}
        for kind in ("rules", "schedules"):
            entries = doc.get(kind)
            activity[kind] = {}
            if isinstance(entries, dict):
                for rid, item in list(entries.items())[:256]:
                    if KEY.fullmatch(str(rid)) and isinstance(item, dict):
                        last, count = _num(item.get("last")), _num(item.get("count"))
                        activity[kind][rid] = {"last": last, "count": count}
        with self.fleet.lock:
            device = self.fleet.devices.get(device_id)
            if device is not None:
                device.activity = activity
                self.fleet.changes.mark("device", device_id)

    def _audit(self, device_id: str, payload: bytes) -> None:
        doc = _json(payload)
        if not isinstance(doc, dict) or not isinstance(doc.get("event_type"), str):
            self.stats.drop("bad_audit")
            return
        event = {"ts": self.clock()}
        for key in ("event_type", "command", "origin", "reason", "kid", "by"):
            text = clip(doc.get(key), 64)
            if text is not None:
                event[key] = text
        topic = f"{self.broker.prefix}/{device_id}/audit"
        with self.fleet.lock:
            device = self.fleet.devices.get(device_id)
            if device is not None:
                device.audit.append(event)
                self.fleet.changes.mark("audit", device_id)
                for entity in device.entities.values():  # the audit event entity: its last event type
                    if entity.platform == "event" and entity.state_topic == topic:
                        entity.value, entity.updated = event["event_type"], event["ts"]
                        self.fleet.changes.mark("state", device_id, entity.key)

    def _deploy(self, device_id: str, payload: bytes) -> None:
        """The agent's retained outcome of its last deploy; empty when the device was forgotten."""
        if not payload:
            self.fleet.clear_deploy(device_id)
            return
        doc = _json(payload)
        if not isinstance(doc, dict) or doc.get("state") not in DEPLOY_STATES:
            self.stats.drop("bad_deploy")
            return
        reason, sha256, by, ts = doc.get("reason"), doc.get("sha256"), doc.get("by"), _num(doc.get("ts"))
        self.fleet.set_deploy(
            device_id,
            doc["state"],
            reason if isinstance(reason, str) and CODE.fullmatch(reason) else None,
            ts if ts is not None and 0 < ts < 2**40 else self.clock(),
            by if isinstance(by, str) and BY.fullmatch(by) else None,
            sha256 if isinstance(sha256, str) and HEX64.fullmatch(sha256) else None,
        )

    def _config(self, device_id: str, payload: bytes) -> None:
        if not payload:  # the device was forgotten (pilot forget / uninstall)
            with self.fleet.lock:
                self.fleet.remove(device_id)
            return
        doc = _json(payload)
        if not isinstance(doc, dict) or not isinstance(doc.get("device"), dict):
            self.stats.drop("bad_discovery")
            return
        dev, origin = doc["device"], doc.get("origin")
        identifiers = dev.get("identifiers")
        ours = isinstance(origin, dict) and origin.get("name") == "Pilot"
        ours = ours or (isinstance(identifiers, list) and any(str(i).startswith("pilot_") for i in identifiers))
        if not ours:
            self.stats.drop("not_pilot")
            return
        components = doc.get("components")
        entities: list[Entity] = []
        if isinstance(components, dict):
            for uid, comp in components.items():
                entity = _entity(str(uid), comp, device_id, f"{self.broker.prefix}/{device_id}/cmd/")
                if entity is not None:
                    entities.append(entity)
        parent = None
        via = dev.get("via_device")
        if isinstance(via, str) and via.startswith("pilot_") and DEVICE_ID.fullmatch(via[6:]):
            parent = via[6:]
        with self.fleet.lock:
            device = self.fleet.device(device_id)
            if device is None:
                self.stats.drop("too_many_devices")
                return
            device.name = clip(dev.get("name")) or device_id
            device.manufacturer = clip(dev.get("manufacturer"))
            device.model = clip(dev.get("model"))
            device.sw_version = clip(dev.get("sw_version"), 32) or device.sw_version
            device.parent = parent
            self.fleet.set_entities(device, entities)

    # ------------------------------------------------------------------ history
    def take_batch(self) -> list[Any]:
        with self._batch_lock:
            batch, self._batch = self._batch, []
        return batch

    def flush(self) -> None:
        batch = self.take_batch()
        if not batch:
            return
        started = time.perf_counter()
        try:
            self.storage.add(batch)
            self.stats.flushes += 1
        except Exception as exc:  # the database is away: these readings are lost, the console goes on
            self.stats.flush_errors += 1
            self.stats.samples_lost += len(batch)
            log.error("console: cannot store %d readings: %s", len(batch), escape(str(exc)[:300]))
        self.stats.last_flush_s = time.perf_counter() - started

    def _write_loop(self) -> None:
        next_maintain = time.monotonic() + 5.0
        while not self._stop.wait(FLUSH_EVERY_S):
            self.flush()
            try:
                self._ask_again()
            except Exception as exc:  # paho refusing while it reconnects: the next second asks again
                log.debug("console: asking for discovery again failed: %s", exc)
            if time.monotonic() >= next_maintain:
                next_maintain = time.monotonic() + MAINTAIN_EVERY_S
                self.maintain()

    def maintain(self) -> None:
        """Roll history up, delete what is past retention, and the sessions past their end nobody came back to."""
        try:
            self.storage.maintain(self.clock())
            self.storage.purge_sessions(self.clock())
        except Exception as exc:  # the database is away: the next pass tries again
            log.error("console: history maintenance failed: %s", escape(str(exc)[:300]))


def _named(items: Any, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    if isinstance(items, list):
        for item in items[:256]:
            if isinstance(item, dict) and isinstance(item.get("id"), str) and KEY.fullmatch(item["id"]):
                out.append({k: clip(item.get(k)) for k in keys})
    return out


def _command(item: Any, base: str) -> CommandInfo | None:
    if not isinstance(item, dict):
        return None
    cid, platform, topic = item.get("id"), item.get("platform"), item.get("command_topic")
    if not (isinstance(cid, str) and KEY.fullmatch(cid)) or platform not in (
        "button",
        "switch",
        "number",
        "select",
        "text",
    ):
        return None
    # the console presses only `<prefix>/<device>/cmd/<id>/set`: a message naming any other topic could make it
    # sign a press for another device while the page shows this one
    if topic != f"{base}{cid}/set":
        return None
    options = item.get("options")
    options = tuple(clip(o, 128) for o in options[:64] if isinstance(o, str)) if isinstance(options, list) else ()
    confirm = _num(item.get("confirm_within"))
    return CommandInfo(
        id=cid,
        platform=platform,
        topic=topic,
        signed=item.get("signed") is True,
        confirm_within=confirm,
        payload_press=clip(item.get("payload_press"), 64) or "PRESS",
        options=options,
        min=_num(item.get("min")),
        max=_num(item.get("max")),
        step=_num(item.get("step")),
        min_length=_int(item.get("min_length")),
        max_length=_int(item.get("max_length")),
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _entity(uid: str, comp: Any, device_id: str, base: str) -> Entity | None:
    if not isinstance(comp, dict) or not isinstance(comp.get("platform"), str):
        return None
    prefix = f"pilot_{device_id}_"
    key = uid[len(prefix) :] if uid.startswith(prefix) else uid
    if not KEY.fullmatch(key):
        return None
    platform = comp["platform"][:32]
    state_topic = comp.get("state_topic")
    entity = Entity(
        key=key,
        unique_id=uid[:200],
        platform=platform,
        name=clip(comp.get("name")) or key,
        unit=clip(comp.get("unit_of_measurement"), 32),
        device_class=clip(comp.get("device_class"), 64),
        state_class=clip(comp.get("state_class"), 64),
        entity_category=clip(comp.get("entity_category"), 32),
        icon=clip(comp.get("icon"), 64),
        state_topic=state_topic if isinstance(state_topic, str) and len(state_topic) <= 512 else None,
    )
    template = comp.get("value_template")
    if isinstance(template, str) and len(template) <= 128:
        found = JSON_FIELD.fullmatch(template.strip())
        entity.json_key = found.group(1) if found else None
    # a device reads only its own topics: `<prefix>/<id>/state/<key>` for a value, `<prefix>/<id>/...` for a field
    # of a JSON state; another device's topic would let one discovery message take over someone else's readings
    own = base[: -len("cmd/")]
    topic = entity.state_topic
    if topic is not None:
        if entity.json_key is None:
            value = topic.startswith(own + "state/") and KEY.fullmatch(topic[len(own) + 6 :])
            if not value and not (platform == "event" and topic == own + "audit"):
                entity.state_topic = None
        elif not topic.startswith(own):
            entity.state_topic = None
    topic = comp.get("command_topic")
    if topic == f"{base}{key}/set" and platform in COMMAND_PLATFORMS:
        options = comp.get("options")
        entity.command = CommandInfo(
            id=key,
            platform=platform,
            topic=topic[:512],
            payload_press=clip(comp.get("payload_press"), 64) or "PRESS",
            options=tuple(clip(o, 128) for o in options[:64] if isinstance(o, str))
            if isinstance(options, list)
            else (),
            min=_num(comp.get("min")),
            max=_num(comp.get("max")),
            step=_num(comp.get("step")),
        )
    return entity
