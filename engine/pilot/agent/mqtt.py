"""The MQTT session: one paho-mqtt 2.x client on a network thread we own.

Why our own loop instead of paho's loop_start: we want jittered exponential
backoff capped near 10 s (paho's is unjittered, capped at 120 s by default),
a clear log line per distinct connection failure, and a thread we can watch.
paho's outgoing queue is unbounded, so telemetry waits in our own
latest-value-per-topic buffer and is handed to paho only while few messages
are in flight; command results take a separate path that never drops.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from pilot.plan import Mqtt

log = logging.getLogger("pilot.mqtt")

BACKOFF_FIRST = 0.5
BACKOFF_CAP = 10.0
INFLIGHT_LIMIT = 200  # telemetry messages handed to paho but not yet written/acknowledged
RESULTS_LIMIT = 10_000
ERROR_TEXT_MAX = 300  # a broker error's text as kept and logged (it may come from the peer)
ERRORS_REMEMBERED = 32  # distinct errors logged once per connection attempt series
PACKET_HEADROOM = 64 * 1024  # the topic (at most 64 KiB) and MQTT 5 properties around a payload


@dataclass
class Will:
    topic: str
    payload: str = "offline"


@dataclass
class SessionStats:
    connects: int = 0
    disconnects: int = 0
    dropped_telemetry: int = 0
    callback_errors: int = 0
    last_error: str = ""
    connected_since: float | None = None


def backoff_delays(first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP):
    """Full-jitter exponential backoff: 0.5, 1, 2, 4, 8, 10, 10... each scaled by U(0.5, 1]."""
    delay = first
    while True:
        yield delay * random.uniform(0.5, 1.0)
        delay = min(delay * 2, cap)


EXPLAIN_AFTER = 10.0  # seconds of silence (no connection, no error) before a check explains why
# failures whose own message says what is wrong; anything else (a reset, a protocol error) is explained
SELF_EXPLAINING = (ConnectionRefusedError, socket.gaierror, ssl.SSLCertVerificationError, TimeoutError)
EXPLAIN_TIMEOUT = 5.0  # the explaining check's own bound


def unreadable_files(settings: Mqtt) -> list[str]:
    """One line per file the connection needs that cannot be read here: the setting, the path and why.
    Checked before the agent starts, so a missing password or CA file is one clear line, not a traceback."""
    wanted = [("mqtt.password_file", settings.password_file if settings.username else None)]
    if settings.tls is not None:
        wanted += [
            ("mqtt.tls.ca_file", settings.tls.ca_file),
            ("mqtt.tls.cert_file", settings.tls.cert_file),
            ("mqtt.tls.key_file", settings.tls.key_file),
        ]
    problems = []
    for setting, path in wanted:
        if not path:
            continue
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            problems.append(f"{setting} {path}: {exc.strerror or exc}")
    return problems


def read_password(path: str | None) -> str | None:
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.readline().rstrip("\r\n")


def tls_context(settings: Mqtt) -> ssl.SSLContext:
    tls = settings.tls
    assert tls is not None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure:
        log.warning(
            "TLS certificate and host name checks are OFF (mqtt.tls.insecure: true); "
            "anyone on the path can read and forge this agent's messages"
        )
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running and listening on that port?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host name: {exc.strerror}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "connection timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


@dataclass
class Session:
    settings: Mqtt
    will: Will
    host: str
    port: int
    on_connected: Callable[[], None] = lambda: None
    on_message: Callable[[str, bytes, bool], None] = lambda topic, payload, retained: None
    subscriptions: list[tuple[str, int]] = field(default_factory=list)
    stats: SessionStats = field(default_factory=SessionStats)
    birth: bool = True  # publish `online` on connect; the agent turns this off and announces itself
    max_inbound: int = 0  # MQTT 5: the largest payload we accept; the broker drops larger ones for us

    def __post_init__(self) -> None:
        protocol = paho.MQTTv5 if self.settings.protocol == "5" else paho.MQTTv311
        kwargs = {"clean_session": True} if protocol == paho.MQTTv311 else {}
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self.settings.client_id, protocol=protocol, **kwargs
        )
        self._client.connect_timeout = 5.0
        self._client.will_set(self.will.topic, self.will.payload, qos=1, retain=True)
        if self.settings.username:
            self._client.username_pw_set(self.settings.username, read_password(self.settings.password_file))
        if self.settings.tls is not None:
            self._client.tls_set_context(tls_context(self.settings))
            if self.settings.tls.insecure:
                self._client.tls_insecure_set(True)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._guard(self._handle_connect)
        self._client.on_disconnect = self._guard(self._handle_disconnect)
        self._client.on_message = self._guard(self._handle_message)
        self._client.on_publish = self._guard(self._handle_publish)
        self._client.on_socket_open = self._guard(self._handle_socket_open)
        self._lock = threading.Lock()
        self._telemetry: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._results: deque[tuple[str, str, int, bool]] = deque()
        self._inflight = 0
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors_seen: set[str] = set()
        self._explained = False

    # ----------------------------------------------------------- callbacks
    def _guard(self, func: Callable) -> Callable:
        """One exception in a paho callback silently kills paho's thread; never let it escape."""

        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except Exception:
                self.stats.callback_errors += 1
                log.exception("error in MQTT callback %s", func.__name__)

        return wrapper

    def _handle_socket_open(self, client, userdata, sock) -> None:
        # Nagle + delayed ACK stall a QoS 1 round trip by ~40 ms on loopback.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._note_error(f"broker refused the connection: {reason_code}")
            return
        with self._lock:
            self._inflight = 0
        self.stats.connects += 1
        self.stats.connected_since = time.monotonic()
        self._errors_seen.clear()
        log.info("connected to %s:%d", self.host, self.port)
        for topic, qos in self.subscriptions:
            client.subscribe(topic, qos)
        if self.birth:
            client.publish(self.will.topic, "online", qos=1, retain=True)
        self._connected.set()
        self.on_connected()
        self._drain()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self.stats.connected_since = None
        if was and not self._stop.is_set():
            self.stats.disconnects += 1
            log.warning("disconnected from %s:%d (%s); reconnecting", self.host, self.port, reason_code)

    def _handle_message(self, client, userdata, message) -> None:
        self.on_message(message.topic, message.payload, bool(message.retain))

    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self._inflight = max(0, self._inflight - 1)
        self._drain()

    # ----------------------------------------------------------- publishing
    def publish_telemetry(self, topic: str, payload: str, retain: bool = True) -> None:
        """Latest value per topic wins while the broker is slow or away."""
        with self._lock:
            if topic in self._telemetry:
                self.stats.dropped_telemetry += 1
                self._telemetry.move_to_end(topic)
            self._telemetry[topic] = (payload, retain)
        self._drain()

    def publish_result(self, topic: str, payload: str, qos: int = 1, retain: bool = False) -> None:
        """Command results and announcements: queued in order, never replaced."""
        with self._lock:
            if len(self._results) >= RESULTS_LIMIT:
                log.error("result queue full (%d); broker unreachable for too long", RESULTS_LIMIT)
                self._results.popleft()
            self._results.append((topic, payload, qos, retain))
        self._drain()

    def _drain(self) -> None:
        if not self._connected.is_set():
            return
        while True:
            with self._lock:
                if self._results:
                    topic, payload, qos, retain = self._results.popleft()
                elif self._telemetry and self._inflight < INFLIGHT_LIMIT:
                    topic, (payload, retain) = self._telemetry.popitem(last=False)
                    qos = 0
                else:
                    return
                self._inflight += 1
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                with self._lock:
                    self._inflight = max(0, self._inflight - 1)
                    if qos:
                        self._results.appendleft((topic, payload, qos, retain))
                    else:
                        self._telemetry.setdefault(topic, (payload, retain))
                return

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def pending(self) -> int:
        with self._lock:
            return len(self._telemetry) + len(self._results)

    # ----------------------------------------------------------- lifecycle
    def _explain_once(self, *, only_if_silent: bool = False) -> None:
        """The first time the broker cannot be reached for a reason the error itself does not make
        plain (a reset, a protocol error, silence), find out exactly why (not MQTT, TLS spoken to a
        plain port, ...) on a thread of its own, and say so in one log line."""
        with self._lock:
            if self._explained or self._connected.is_set() or self._stop.is_set():
                return
            if only_if_silent and self.stats.last_error:
                return  # an error was logged already: nothing to add
            self._explained = True

        def explain() -> None:
            from pilot.agent.brokercheck import check_settings

            try:
                result = check_settings(self.settings, self.host, self.port, timeout=EXPLAIN_TIMEOUT)
            except Exception:  # the explanation is a courtesy; the retry loop goes on regardless
                return
            if not result.ok and not self._connected.is_set():
                log.warning(
                    "MQTT broker %s:%d: %s%s",
                    self.host,
                    self.port,
                    result.summary,
                    f"; {result.advice}" if result.advice else "",
                )

        threading.Thread(target=explain, name="pilot-mqtt-explain", daemon=True).start()

    def _note_error(self, message: str, *, unclear: bool = False) -> None:
        if len(message) > ERROR_TEXT_MAX:  # TLS and refusal texts can come from the peer
            message = f"{message[:ERROR_TEXT_MAX]}… ({len(message)} chars)"
        self.stats.last_error = message
        if unclear and self.stats.connects == 0:
            self._explain_once()
        if message not in self._errors_seen and len(self._errors_seen) < ERRORS_REMEMBERED:
            self._errors_seen.add(message)
            log.warning(
                "MQTT broker %s:%d: %s; retrying with backoff up to %.0f s", self.host, self.port, message, BACKOFF_CAP
            )

    def _connect_extra(self) -> dict:
        """MQTT 5 lets a client announce the largest packet it accepts (Maximum Packet Size); the broker
        then never sends a larger one, so an oversized message costs this process nothing at all.
        MQTT 3.1.1 has no such field: there, only the broker's own `message_size_limit` bounds it."""
        if self.settings.protocol != "5" or self.max_inbound <= 0:
            return {}
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.MaximumPacketSize = self.max_inbound + PACKET_HEADROOM
        return {"properties": props}

    def _run(self) -> None:
        delays = backoff_delays()
        started = time.monotonic()
        while not self._stop.is_set():
            attempt = time.monotonic()
            try:
                self._client.connect(self.host, self.port, keepalive=self.settings.keepalive, **self._connect_extra())
            except Exception as exc:  # every failure mode of connect means: wait and retry
                self._note_error(describe_failure(exc), unclear=not isinstance(exc, SELF_EXPLAINING))
                self._stop.wait(next(delays))
                continue
            # publishes from other threads wake paho's select through its socket pair, so a long
            # timeout costs no latency; it only spares idle wake-ups (keepalive is still honoured)
            idle = max(1.0, min(10.0, self.settings.keepalive / 3))
            connects, rc = self.stats.connects, paho.MQTT_ERR_SUCCESS
            while not self._stop.is_set():
                rc = self._client.loop(timeout=idle)
                if rc != paho.MQTT_ERR_SUCCESS:
                    break
                if self.stats.connects == 0 and time.monotonic() - started > EXPLAIN_AFTER:
                    # a server that takes the connection and never answers MQTT raises nothing at all:
                    # so long without a connection (and without an error) is a failure to explain too
                    self._explain_once(only_if_silent=True)
            if rc != paho.MQTT_ERR_SUCCESS and self.stats.connects == connects and not self._stop.is_set():
                # the TCP connection was taken but no CONNACK came: not an MQTT broker, or TLS expected
                self._note_error(
                    f"the connection closed before any MQTT answer ({paho.error_string(rc)})", unclear=True
                )
            if self._connected.is_set():
                self._handle_disconnect(self._client, None, None, "connection lost", None)
            if self._stop.is_set():
                break
            if time.monotonic() - attempt > 30:
                delays = backoff_delays()  # a long healthy session: start the backoff afresh
            self._stop.wait(next(delays))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pilot-mqtt", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 3.0) -> None:
        """Publish `offline` explicitly (a clean DISCONNECT does not fire the LWT), then leave."""
        if self._connected.is_set():
            try:
                info = self._client.publish(self.will.topic, self.will.payload, qos=1, retain=True)
                deadline = time.monotonic() + timeout
                while not info.is_published() and time.monotonic() < deadline and self.alive():
                    time.sleep(0.01)
            except Exception:
                log.debug("could not publish offline", exc_info=True)
        self._stop.set()
        try:
            self._client.disconnect()
        except Exception:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
