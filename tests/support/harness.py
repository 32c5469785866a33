"""Tools for the fault-injection suite: clocks and figures, a ready-checked watcher and a black-hole
TCP proxy. The agent itself (as a subprocess) and process measurements are in testkit/agent.py.

Timings come from two clocks: the watcher stamps messages with time.monotonic() on receipt,
the agent's JSON log lines carry time.time() (`ts`, millisecond precision). `Clock` maps
one onto the other so that a figure can be "log line minus fault" or "message minus log line".
"""

from __future__ import annotations

import selectors
import socket
import struct
import subprocess
import threading
import time

from testkit.broker import Mosquitto, Watcher, free_port

__all__ = ["Mosquitto", "Watcher", "free_port"]  # re-exported for the tests; the rest is imported by name


# ------------------------------------------------------------------ clocks and figures


class Clock:
    """wall (time.time) <-> monotonic, fixed once per process; drift over a test is negligible."""

    offset = time.time() - time.monotonic()

    @classmethod
    def to_mono(cls, wall: float) -> float:
        return wall - cls.offset

    @classmethod
    def to_wall(cls, mono: float) -> float:
        return mono + cls.offset


FIGURES: list[tuple[str, str, str]] = []  # (case, figure, value); printed in the terminal summary


def figure(case: str, name: str, value) -> None:
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    FIGURES.append((case, name, text))


def mosquitto_version() -> tuple[int, ...]:
    from testkit.broker import find_mosquitto

    binary = find_mosquitto()
    if binary is None:
        return ()
    out = subprocess.run([binary, "-h"], capture_output=True, text=True).stdout
    words = out.split()
    try:
        text = words[words.index("version") + 1]
        return tuple(int(x) for x in text.split(".")[:3])
    except (ValueError, IndexError):
        return ()


def broker_keepalive_slack() -> float:
    """Seconds a broker may add to 1.5 x keepalive before it drops a silent client.

    Mosquitto 2.0 (src/keepalive.c) checks keepalives only when `last_keepalive_check + 5 < now`,
    so every 6 s, on whole seconds: a silent client is dropped between 1.5 x keepalive + 1 and
    1.5 x keepalive + 7 s after its last packet, whatever the client does."""
    version = mosquitto_version()
    return 6.0 if version[:2] == (2, 0) else 0.0


# ------------------------------------------------------------------ watchers


def ready_watcher(port: int, topics: tuple[str, ...] = ("#",), timeout: float = 10.0) -> Watcher:
    """A Watcher whose subscriptions are known to be active (a marker message came back)."""
    w = Watcher(port, topics=topics)
    w.client.reconnect_delay_set(0.1, 0.5)
    w.start()
    marker = f"faults/ready/{id(w)}"
    w.client.subscribe(marker, 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w.client.publish(marker, b"1", qos=0)
        if w.wait_for(lambda m: m.topic == marker, timeout=0.2):
            return w
    w.stop()
    raise RuntimeError(f"watcher on port {port} never became ready")


def online(topic: str):
    return lambda m: m.topic == topic and m.payload == b"online"


def offline(topic: str):
    return lambda m: m.topic == topic and m.payload == b"offline"


def retained_value(port: int, topic: str, timeout: float = 3.0) -> bytes | None:
    """What a brand-new subscriber gets as the retained message on topic (None: nothing retained)."""
    w = Watcher(port, topics=(topic,))
    w.start()
    try:
        got = w.wait_for(lambda m: m.topic == topic and m.retain, timeout=timeout)
        return got.payload if got else None
    finally:
        w.stop()


# ------------------------------------------------------------------ a black-hole proxy


class BlackholeProxy:
    """TCP proxy on loopback between the agent and the broker.

    `partition()` stops forwarding in both directions without closing anything: bytes are read
    and dropped, an end that closes is not told to the other, and connections accepted during the
    partition are held open and never reach the broker (a SYN that "got through" to nothing).
    `heal()` forwards again for new connections; connections that lived through the partition are
    reset (RST), as a peer that has forgotten them would do on their next segment.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ)
        self.peer: dict[socket.socket, socket.socket | None] = {}
        self.stale: set[socket.socket] = set()
        self.partitioned = False
        self.dropped_bytes = 0
        self.accepted = 0
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="blackhole-proxy", daemon=True)

    def start(self) -> BlackholeProxy:
        self._thread.start()
        return self

    def _close(self, sock: socket.socket, reset: bool = False) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        if reset:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        try:
            sock.close()
        except OSError:
            pass
        self.peer.pop(sock, None)
        self.stale.discard(sock)

    def _run(self) -> None:
        while not self._stop:
            events = self.sel.select(0.1)
            with self._lock:
                for key, _ in events:
                    sock = key.fileobj
                    if sock is self.lsock:
                        try:
                            client, _ = self.lsock.accept()
                        except OSError:
                            continue
                        self.accepted += 1
                        if self.partitioned:
                            self.peer[client] = None
                            self.stale.add(client)
                            self.sel.register(client, selectors.EVENT_READ)
                            continue
                        try:
                            up = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
                        except OSError:
                            client.close()
                            continue
                        for s in (client, up):
                            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        self.peer[client], self.peer[up] = up, client
                        self.sel.register(client, selectors.EVENT_READ)
                        self.sel.register(up, selectors.EVENT_READ)
                        continue
                    if sock not in self.peer:
                        continue
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    other = self.peer.get(sock)
                    if self.partitioned or sock in self.stale:
                        if data:
                            self.dropped_bytes += len(data)
                        else:  # an end went away: nobody on the other side hears of it
                            self._close(sock)
                            if other is not None and other in self.peer:
                                self.peer[other] = None
                        continue
                    if not data or other is None:
                        self._close(sock)
                        if other is not None:
                            self._close(other)
                        continue
                    try:
                        other.sendall(data)
                    except OSError:
                        self._close(sock)
                        self._close(other)

    def partition(self) -> None:
        with self._lock:
            self.partitioned = True
            self.stale |= set(self.peer)

    def heal(self) -> None:
        with self._lock:
            self.partitioned = False
            for sock in list(self.stale):
                self._close(sock, reset=True)

    def stop(self) -> None:
        self._stop = True
        self._thread.join(2)
        with self._lock:
            for sock in list(self.peer):
                self._close(sock)
        self.lsock.close()
