"""probes/_pulse.py against a small unix-socket server written here: the bytes on the wire, and hostile answers.

The known-answer requests are written out by hand from the format in the PulseAudio sources
(pulsecore/pstream.c: five big-endian u32, length first, channel 0xffffffff for a packet;
tagstruct.c: 'L' + u32, 't' + string + NUL, 'x' + u32 length + bytes, 'P' ... 'N';
native-common.h: AUTH = 8, SET_CLIENT_NAME = 9, GET_SINK_INFO = 21, SUBSCRIBE = 35), not produced by
the encoder under test. The fake server speaks through a real socket; every hostile answer must end
as ProbeUnavailable with one reason, never another exception. The real servers are in
test_probe_audio.py.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pilot.probes import ProbeContext, ProbeUnavailable
from pilot.probes import _pulse as pulse
from pilot.probes._background import Worker
from pilot.registry import PROBES

COOKIE = bytes(range(256))
PACKET_HEADER = b"\xff\xff\xff\xff" + bytes(12)  # channel -1, offset 0, flags 0

AUTH_REQUEST = (
    b"\x00\x00\x01\x14" + PACKET_HEADER  # 276 bytes follow
    + b"L\x00\x00\x00\x08"  # AUTH
    + b"L\x00\x00\x00\x00"  # tag 0
    + b"L\x00\x00\x00\x20"  # protocol version 32, no shm
    + b"x\x00\x00\x01\x00" + COOKIE
)  # fmt: skip
SET_CLIENT_NAME_REQUEST = (
    b"\x00\x00\x00\x2e" + PACKET_HEADER  # 46 bytes
    + b"L\x00\x00\x00\x09"  # SET_CLIENT_NAME
    + b"L\x00\x00\x00\x01"  # tag 1
    + b"P" + b"tapplication.name\x00" + b"L\x00\x00\x00\x06" + b"x\x00\x00\x00\x06pilot\x00" + b"N"
)  # fmt: skip
SUBSCRIBE_REQUEST = (
    b"\x00\x00\x00\x0f" + PACKET_HEADER
    + b"L\x00\x00\x00\x23"  # SUBSCRIBE
    + b"L\x00\x00\x00\x02"  # tag 2
    + b"L\x00\x00\x00\x81"  # sinks | server
)  # fmt: skip
SINK_INFO_REQUEST = (
    b"\x00\x00\x00\x1f" + PACKET_HEADER  # 31 bytes
    + b"L\x00\x00\x00\x15"  # GET_SINK_INFO
    + b"L\x00\x00\x00\x03"  # tag 3
    + b"L\xff\xff\xff\xff"  # no index: by name
    + b"t@DEFAULT_SINK@\x00"
)  # fmt: skip


# ------------------------------------------------------------------ the test's own framing (not the code's)


def L(n: int) -> bytes:
    return b"L" + struct.pack(">I", n)


def frame(body: bytes, channel: int = 0xFFFFFFFF) -> bytes:
    return struct.pack(">IIIII", len(body), channel, 0, 0, 0) + body


def reply(tag: int, body: bytes = b"") -> bytes:
    return frame(L(2) + L(tag) + body)


def event(facility: int, index: int = 0) -> bytes:
    return frame(L(66) + L(0xFFFFFFFF) + L(0x10 | facility) + L(index))


def sink_body(volumes: list[int], muted: bool, channels: int | None = None, mute: bytes | None = None) -> bytes:
    n = len(volumes) if channels is None else channels
    return (
        L(0) + b"tfake\x00" + b"tFake sink\x00"
        + b"a\x03" + bytes([n]) + struct.pack(">I", 48000)
        + b"m" + bytes([n]) + bytes(range(1, n + 1))
        + L(0xFFFFFFFF)
        + b"v" + bytes([n]) + b"".join(struct.pack(">I", v) for v in volumes)
        + (mute or (b"1" if muted else b"0"))
        + L(1) + b"tfake.monitor\x00" + b"U" + bytes(8) + b"tmodule-null-sink.c\x00" + L(0)
    )  # fmt: skip


def read_request(conn: socket.socket) -> tuple[bytes, int, int]:
    """(the whole frame, command, tag) of the next request, or (b"", -1, -1) when the client left."""
    head = b""
    while len(head) < 20:
        chunk = conn.recv(20 - len(head))
        if not chunk:
            return b"", -1, -1
        head += chunk
    length = struct.unpack(">I", head[:4])[0]
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return head + body, struct.unpack(">I", body[1:5])[0], struct.unpack(">I", body[6:10])[0]


class FakeServer:
    """Accepts connections one after another; `answer(command, tag, conn)` returns the bytes to send
    back (or None: say nothing). Everything the clients sent is kept in `received`."""

    def __init__(self, path: Path, answer: Callable[[int, int, socket.socket], bytes | None]) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(4)
        self.answer = answer
        self.received: list[bytes] = []
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                try:
                    while True:
                        raw, command, tag = read_request(conn)
                        if not raw:
                            break
                        self.received.append(raw)
                        out = self.answer(command, tag, conn)
                        if out:
                            conn.sendall(out)
                except OSError:
                    continue

    def close(self) -> None:
        self.listener.close()


def handshake_then(sink_answer: Callable[[int, socket.socket], bytes | None]):
    """A server that accepts AUTH, SET_CLIENT_NAME and SUBSCRIBE, then answers GET_SINK_INFO with `sink_answer`."""

    def answer(command: int, tag: int, conn: socket.socket) -> bytes | None:
        if command == 8:
            return reply(tag, L(35 | 0x80000000))
        if command == 9:
            return reply(tag, L(7))
        if command == 35:
            return reply(tag)
        if command == 21:
            return sink_answer(tag, conn)
        return frame(L(0) + L(tag) + L(2))  # ERROR: unknown command

    return answer


@pytest.fixture
def serve(tmp_path: Path):
    servers: list[FakeServer] = []
    clients: list[pulse.Server] = []

    def start(answer) -> pulse.Server:
        path = tmp_path / "native"
        servers.append(FakeServer(path, answer))
        cookie = tmp_path / "cookie"
        cookie.write_bytes(COOKIE)
        clients.append(pulse.Server(str(path), {"PULSE_COOKIE": str(cookie)}, timeout=2.0))
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.close()


# ------------------------------------------------------------------ the bytes on the wire


def test_a_sink_reply_is_read_up_to_its_mute_flag(serve) -> None:
    server = serve(handshake_then(lambda tag, conn: reply(tag, sink_body([0x8000, 0x8000], True))))
    assert server.sink() == pulse.Sink("fake", (0x8000, 0x8000), True)
    assert server.sink().percent == 50
    assert server.conn is not None  # one connection, kept


def test_known_answer_vectors(tmp_path: Path) -> None:
    received: list[bytes] = []

    def answer(command: int, tag: int, conn: socket.socket) -> bytes:
        return handshake_then(lambda t, c: reply(t, sink_body([0x10000], False)))(command, tag, conn)

    path = tmp_path / "native"
    fake = FakeServer(path, answer)
    (tmp_path / "cookie").write_bytes(COOKIE)
    try:
        server = pulse.Server(str(path), {"PULSE_COOKIE": str(tmp_path / "cookie")})
        assert server.sink().percent == 100
        received = fake.received
    finally:
        fake.close()
        server.close()
    assert received == [AUTH_REQUEST, SET_CLIENT_NAME_REQUEST, SUBSCRIBE_REQUEST, SINK_INFO_REQUEST]


@pytest.mark.parametrize(
    ("volumes", "percent"),
    [
        ([0x10000, 0x10000], 100),
        ([0], 0),
        ([32767, 32767], 50),  # 49.998 %: half up, as pactl prints "50%"
        ([0x18000], 150),
        ([19660, 32768], 40),  # 30 % and 50 %: the mean, as pactl's percents averaged
    ],
)
def test_volume_percent_as_pactl_prints_it(volumes: list[int], percent: int) -> None:
    assert pulse.Sink("s", tuple(volumes), False).percent == percent


def test_socket_and_cookie_locations(tmp_path: Path) -> None:
    assert pulse.socket_path({"XDG_RUNTIME_DIR": "/run/user/1000"}) == ("/run/user/1000/pulse/native", None)
    assert pulse.socket_path({"PULSE_SERVER": "unix:/tmp/s", "XDG_RUNTIME_DIR": "/r"}) == ("/tmp/s", None)
    for other in ("tcp:host:4713", "host", "/tmp/s", "unix:relative"):
        assert pulse.socket_path({"PULSE_SERVER": other}) == (
            None,
            "PULSE_SERVER is not unix:/path (only a local socket is read in-process)",
        )
    assert pulse.socket_path({})[1] == "no audio session: XDG_RUNTIME_DIR is not set"
    home = tmp_path / "home"
    (home / ".config" / "pulse").mkdir(parents=True)
    assert pulse.read_cookie({"HOME": str(home)}) == bytes(256)  # none: zeros
    (home / ".pulse-cookie").write_bytes(b"\x01" * 256)
    assert pulse.read_cookie({"HOME": str(home)}) == b"\x01" * 256
    (home / ".config" / "pulse" / "cookie").write_bytes(b"\x02" * 256)
    assert pulse.read_cookie({"HOME": str(home)}) == b"\x02" * 256
    (tmp_path / "short").write_bytes(b"\x03" * 255)
    assert pulse.read_cookie({"PULSE_COOKIE": str(tmp_path / "short")}) == bytes(256)  # not a cookie
    (tmp_path / "mine").write_bytes(b"\x04" * 256)
    assert pulse.read_cookie({"PULSE_COOKIE": str(tmp_path / "mine"), "HOME": str(home)}) == b"\x04" * 256


# ------------------------------------------------------------------ changes


def test_changed_drains_sink_and_server_events_without_blocking(serve) -> None:
    pushed: list[socket.socket] = []

    def sink(tag: int, conn: socket.socket) -> bytes:
        pushed.append(conn)
        return reply(tag, sink_body([0x10000, 0x10000], False))

    server = serve(handshake_then(sink))
    server.connect()
    assert server.changed() is False  # nothing waiting: answers at once
    server.sink()
    conn = pushed[0]
    conn.sendall(event(2, 9))  # a source changed: not ours
    _until(lambda: len(server.conn.buffer) or _readable(server), "the event")
    assert server.changed() is False
    conn.sendall(event(0, 1))  # a sink changed
    _until(lambda: server.changed(), "the sink event")
    assert server.changed() is True  # seen until a reading starts after it
    server.sink()
    assert server.changed() is False
    conn.sendall(event(7))  # the server (its default sink)
    _until(lambda: server.changed(), "the server event")


def test_a_flood_of_events_is_drained_a_bounded_amount_per_look(serve) -> None:
    flood = event(0) * 20000  # 700 KB of "a sink changed"
    pushed: list[socket.socket] = []

    def sink(tag: int, conn: socket.socket) -> bytes:
        pushed.append(conn)
        return reply(tag, sink_body([0x10000], False))

    server = serve(handshake_then(sink))
    server.sink()
    sender = threading.Thread(target=pushed[0].sendall, args=(flood,), daemon=True)
    sender.start()
    _until(lambda: _readable(server), "the flood")
    assert server.changed() is True
    assert server.conn is not None and len(server.conn.buffer) < pulse.MAX_FRAME
    looks = 1
    while sender.is_alive() or _readable(server):
        server.changed()
        looks += 1
        assert looks < 1000
    assert looks >= 2  # one look did not read it all
    assert server.sink().percent == 100  # the connection is still good


# ------------------------------------------------------------------ hostile servers


def _reply_with(body: bytes):
    return handshake_then(lambda tag, conn: reply(tag, body))


HOSTILE = [
    ("over the frame cap", handshake_then(lambda t, c: struct.pack(">IIIII", (1 << 20) + 1, 0xFFFFFFFF, 0, 0, 0)),
     "the sound server sent a frame of 1048577 bytes (at most 1048576)"),
    ("an unknown tag", _reply_with(b"Z\x00\x00\x00\x00"), "the sound server sent b'Z' where a number belongs"),
    ("a truncated tagstruct", _reply_with(sink_body([0x10000, 0x10000], False)[:45]),
     "the sound server sent a truncated packet"),
    ("a string without its NUL", _reply_with(L(0) + b"tfake"), "the sound server sent a truncated packet"),
    ("33 channels", _reply_with(sink_body([0x10000] * 33, False)), "the sound server sent 33 channels (at most 32)"),
    ("no channels", _reply_with(sink_body([], False)), "the sound server sent no valid volume for the default sink"),
    ("a volume over the maximum", _reply_with(sink_body([0x80000000], False)),
     "the sound server sent no valid volume for the default sink"),
    ("a bad boolean", _reply_with(sink_body([0x10000], False, mute=b"7")),
     "the sound server sent b'7' where a boolean belongs"),
    ("a reply to a tag not sent", handshake_then(lambda t, c: reply(t + 7, sink_body([0x10000], False))),
     "the sound server answered request 10, which was not asked"),
    ("an ERROR", handshake_then(lambda t, c: frame(L(0) + L(t) + L(5))), "the sound server refused: no such entity"),
    ("audio data", handshake_then(lambda t, c: frame(b"\x00" * 64, channel=0)),
     "the sound server sent audio on a connection with no stream"),
    ("no answer", handshake_then(lambda t, c: None), "the sound server did not answer within 2 s"),
    ("a hang-up", handshake_then(lambda t, c: c.shutdown(socket.SHUT_WR)), "the sound server closed the connection"),
    ("announcements and never the answer",
     handshake_then(lambda t, c: frame(L(61) + L(0xFFFFFFFF) + bytes(65000)) * 70),
     "the sound server sent too much before answering"),
]  # fmt: skip


@pytest.mark.parametrize(("answer", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_a_hostile_answer_is_one_reason_and_the_connection_is_dropped(serve, answer, reason: str) -> None:
    server = serve(answer)
    with pytest.raises(ProbeUnavailable) as caught:
        server.sink()
    assert str(caught.value) == reason
    assert server.conn is None


def test_a_refused_cookie_says_access_denied(serve) -> None:
    server = serve(lambda command, tag, conn: frame(L(0) + L(tag) + L(1)))
    with pytest.raises(ProbeUnavailable, match="^the sound server refused: access denied$"):
        server.sink()


def test_an_old_protocol_is_refused(serve) -> None:
    server = serve(lambda command, tag, conn: reply(tag, L(12)))
    with pytest.raises(ProbeUnavailable, match=r"^the sound server speaks protocol 12 \(13 or later is needed\)$"):
        server.sink()


def test_after_a_failure_a_new_connection_waits_for_the_reconnect_delay(serve, tmp_path: Path) -> None:
    answers = iter([frame(L(0) + L(3) + L(5))])  # the first GET_SINK_INFO fails, the next succeed

    def sink(tag: int, conn: socket.socket) -> bytes:
        return next(answers, reply(tag, sink_body([0x10000], True)))

    server = serve(handshake_then(sink))
    now = [100.0]
    server.clock = lambda: now[0]
    with pytest.raises(ProbeUnavailable, match="no such entity"):
        server.sink()
    assert server.changed() is True  # no connection: let the reading say why
    now[0] += pulse.RECONNECT_AFTER - 1
    with pytest.raises(ProbeUnavailable, match="no such entity"):  # the same reason, no new connection
        server.sink()
    now[0] += 1
    assert server.sink() == pulse.Sink("fake", (0x10000,), True)


def test_a_probe_on_a_hostile_server_reads_none_and_the_agent_goes_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pulse, "_servers", {})
    path = tmp_path / "native"
    fake = FakeServer(path, _reply_with(b"Z"))
    try:
        worker = Worker(start=False)
        env = {"PULSE_SERVER": f"unix:{path}", "HOME": str(tmp_path)}
        read = PROBES.get("audio.volume").factory(ProbeContext(), backend="pulse", environ=env, worker=worker)
        assert worker.run_pending() == 1  # the reading failed on the worker, which logged it
        assert read() is None
    finally:
        fake.close()
        pulse._servers.clear()


def _auto_setup(tmp_path: Path, answer, monkeypatch) -> tuple[list[str], FakeServer]:
    """Set up audio.volume and audio.muted with backend auto against a fake server at the usual address
    ($XDG_RUNTIME_DIR/pulse/native), with pactl "installed"; returns the work they queued (pulse or pactl)."""
    monkeypatch.setattr(pulse, "_servers", {})
    (tmp_path / "pulse").mkdir()
    fake = FakeServer(tmp_path / "pulse" / "native", answer)
    env = {"XDG_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)}
    worker = Worker(start=False)
    which = lambda name: f"/usr/bin/{name}" if name == "pactl" else None  # noqa: E731
    for name in ("audio.volume", "audio.muted"):
        PROBES.get(name).factory(ProbeContext(), environ=env, worker=worker, which=which)
    return worker.pending(), fake


def test_auto_keeps_a_socket_that_does_not_answer_yet_rather_than_forking_pactl_at_every_reading(
    tmp_path: Path, monkeypatch
) -> None:
    # a sound server still starting (or a busy machine) at the agent's start: the socket is there but the
    # handshake times out; both probes stay on the socket (tried again every RECONNECT_AFTER), never on pactl
    pending, fake = _auto_setup(tmp_path, lambda command, tag, conn: None, monkeypatch)
    try:
        assert pending == [f"audio pulse {tmp_path}/pulse/native"]
    finally:
        fake.close()
        for server in pulse._servers.values():
            server.close()


def test_auto_takes_the_tools_after_a_definite_refusal(tmp_path: Path, monkeypatch) -> None:
    # access denied (a cookie Pilot could not read): pactl, which reads it, may get in; both probes move
    pending, fake = _auto_setup(tmp_path, lambda command, tag, conn: frame(L(0) + L(tag) + L(1)), monkeypatch)
    try:
        assert pending == [f"audio pactl {tmp_path}"]
    finally:
        fake.close()
        for server in pulse._servers.values():
            server.close()


def test_backend_pulse_without_a_unix_socket_address_is_unavailable(monkeypatch) -> None:
    monkeypatch.setattr(pulse, "_servers", {})
    env = {"PULSE_SERVER": "tcp:192.0.2.1:4713", "XDG_RUNTIME_DIR": "/nonexistent"}
    with pytest.raises(ProbeUnavailable, match="^PULSE_SERVER is not unix:/path"):
        PROBES.get("audio.muted").factory(ProbeContext(), backend="pulse", environ=env, worker=Worker(start=False))


# ------------------------------------------------------------------ helpers


def _readable(server: pulse.Server) -> bool:
    import select

    return server.conn is not None and bool(select.select([server.conn.sock], [], [], 0)[0])


def _until(check, what: str, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not come")
        time.sleep(0.01)


def test_without_unix_sockets_the_reason_says_so(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delattr(socket, "AF_UNIX")
    monkeypatch.delattr(os, "O_NONBLOCK")  # nor on Windows (the cookie is read before connecting)
    (tmp_path / "cookie").write_bytes(COOKIE)
    assert pulse.read_cookie({"PULSE_COOKIE": str(tmp_path / "cookie")}) == COOKIE
    server = pulse.Server(str(tmp_path / "native"), {})
    with pytest.raises(ProbeUnavailable, match="^this system has no unix sockets to reach PulseAudio on$"):
        server.sink()


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory", "huge"])
def test_a_cookie_that_is_not_a_regular_file_is_not_waited_for(tmp_path: Path, kind: str) -> None:
    """A FIFO with no writer would block open() for ever (on the worker, or at start-up for backend
    auto); /dev/zero never ends; a huge file is read 257 bytes far. None of them is a cookie: zeros
    are sent, at once."""
    if kind == "fifo":
        cookie = tmp_path / "cookie"
        os.mkfifo(cookie)
    elif kind == "directory":
        cookie = tmp_path
    elif kind == "huge":
        cookie = tmp_path / "cookie"
        with open(cookie, "wb") as handle:
            handle.truncate(1 << 40)  # sparse: a terabyte that takes no room
    else:
        cookie = Path(kind)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pulse.read_cookie({"PULSE_COOKIE": str(cookie)})), daemon=True)
    reader.start()
    reader.join(10)  # a guard against a hang, not a speed limit
    if reader.is_alive():
        with open(cookie, "wb"):  # let the blocked open() return before failing
            pass
        reader.join(10)
        pytest.fail(f"read_cookie blocked on a {kind}")
    assert got == [bytes(256)]


def test_out_of_file_descriptors_is_one_reason(tmp_path: Path, monkeypatch) -> None:
    """socket() failing (EMFILE, for real: the soft limit lowered and filled) is unavailable, not an
    OSError out of the probe (backend auto connects in the factory, at profile load)."""
    import resource

    monkeypatch.setattr(pulse, "_servers", {})
    env = {"PULSE_SERVER": f"unix:{tmp_path / 'native'}", "HOME": str(tmp_path)}
    volume = PROBES.get("audio.volume").factory  # its module loaded while files can still be opened
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(int(fd) for fd in os.listdir("/proc/self/fd")) + 8, hard))
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        with pytest.raises(ProbeUnavailable) as caught:
            volume(ProbeContext(), environ=env, worker=Worker(start=False), which=lambda name: None)
        assert str(caught.value) == (
            "the sound server cannot be reached: Too many open files; "
            "neither wpctl (PipeWire) nor pactl (PulseAudio) is installed"
        )
        with pytest.raises(ProbeUnavailable, match="^the sound server cannot be reached: Too many open files$"):
            pulse.Server(str(tmp_path / "native"), env).sink()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


NOT_UNIX = "PULSE_SERVER is not unix:/path (only a local socket is read in-process)"
NOT_ABSOLUTE = "XDG_RUNTIME_DIR is not an absolute path of printable characters"
TOO_LONG = "the sound server's socket path is longer than a unix socket address (108 bytes)"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"PULSE_SERVER": "unix:/tmp/a unix:/tmp/b"}, (None, NOT_UNIX)),  # a list: the tools try each in turn
        ({"PULSE_SERVER": "unix:/tmp/a\ttcp:host"}, (None, NOT_UNIX)),
        ({"PULSE_SERVER": " unix:/tmp/a\n"}, ("/tmp/a", None)),  # one entry, as PulseAudio splits the list
        ({"PULSE_SERVER": "{0123abcd}unix:/tmp/a"}, (None, NOT_UNIX)),  # machine-bound: left to the tools
        ({"PULSE_SERVER": "unix:/tmp/\x1b[31mred"}, (None, NOT_UNIX)),
        ({"PULSE_SERVER": "unix:/tmp/\udcff"}, (None, NOT_UNIX)),  # an undecodable byte in the environment
        ({"PULSE_SERVER": "unix:/" + "a" * 107}, ("/" + "a" * 107, None)),  # 108 bytes: the most that fits
        ({"PULSE_SERVER": "unix:/" + "a" * 108}, (None, TOO_LONG)),
        ({"PULSE_SERVER": "unix:/" + "é" * 54}, (None, TOO_LONG)),  # 109 bytes in UTF-8, 55 characters
        ({"XDG_RUNTIME_DIR": "run/user/1000"}, (None, NOT_ABSOLUTE)),  # relative to the agent's cwd
        ({"XDG_RUNTIME_DIR": "/run/user/1000\n"}, (None, NOT_ABSOLUTE)),
        ({"XDG_RUNTIME_DIR": "/run/user/\x7f"}, (None, NOT_ABSOLUTE)),
        ({"XDG_RUNTIME_DIR": "/home/a b/run"}, ("/home/a b/run/pulse/native", None)),
        ({"XDG_RUNTIME_DIR": "/" + "r" * 94}, ("/" + "r" * 94 + "/pulse/native", None)),  # 108 bytes
        ({"XDG_RUNTIME_DIR": "/" + "r" * 95}, (None, TOO_LONG)),
    ],
)
def test_a_socket_address_is_a_clean_absolute_path_that_fits(environ: dict[str, str], expected: tuple) -> None:
    """What cannot be connected to, or would put control characters into a reason (a log line, a
    health report), is refused before any connection, with a reason that names no path."""
    assert pulse.socket_path(environ) == expected


def test_a_change_seen_while_a_reading_finishes_is_not_lost(serve) -> None:
    """The telemetry loop may look for changes (another thread) after a reading has its answer but
    before the worker marks it done: the refresh it asks for is then refused as already queued, so
    the change must still be seen at the next look, until a reading starts after it."""
    from pilot.probes._background import background_reader

    volumes = iter([0x10000, 0x8000, 0x4000])
    pushed: list[socket.socket] = []

    def sink(tag: int, conn: socket.socket) -> bytes:
        pushed.append(conn)
        return reply(tag, sink_body([next(volumes)], False))

    server = serve(handshake_then(sink))
    worker = Worker(start=False)
    looks: list[object] = []

    def reading() -> int:
        percent = server.sink().percent
        if len(pushed) == 2:  # the answer is in, the work not yet done: the volume changes, a look sees it
            pushed[0].sendall(event(0, 1))
            _until(lambda: _readable(server), "the second sink event")
            looks.append(read())
        return percent

    read = background_reader("pulse test", reading, every=600.0, clock=lambda: 0.0, worker=worker, due=server.changed)
    worker.run_pending()
    assert read() == 100
    assert worker.pending() == []
    pushed[0].sendall(event(0, 1))
    _until(lambda: _readable(server), "the first sink event")
    assert read() == 100
    assert worker.pending() == ["pulse test"]
    worker.run_pending()
    assert looks == [100]  # the look during the second reading, which saw the second change
    assert read() == 50
    assert worker.pending() == ["pulse test"]  # that change asks again
    worker.run_pending()
    assert read() == 25
    assert worker.pending() == []


# ------------------------------------------------------------------ framing edge cases and clean-up


def test_a_reply_dribbled_a_byte_at_a_time_after_an_event_is_read_whole(serve) -> None:
    """Frames split across many recv() calls, and an event before the answer: the answer is the sink."""

    def sink(tag: int, conn: socket.socket) -> None:
        for byte in event(0, 4) + reply(tag, sink_body([0x4000, 0x4000], True)):
            conn.sendall(bytes([byte]))
        return None

    server = serve(handshake_then(sink))
    assert server.sink() == pulse.Sink("fake", (0x4000, 0x4000), True)
    assert server.changed() is True  # the event that came while asking is kept


def test_tags_wrap_around_below_the_event_tag(serve) -> None:
    server = serve(handshake_then(lambda tag, conn: reply(tag, sink_body([0x10000], False))))
    server.connect()
    assert server.conn is not None
    server.conn.next_tag = 0x7FFFFFFF
    sent = []
    for _ in range(3):
        sent.append(server.conn.next_tag)
        assert server.sink().percent == 100
    assert sent == [0x7FFFFFFF, 0, 1]


@pytest.mark.parametrize(
    "answer",
    [
        lambda command, tag, conn: frame(L(0) + L(tag) + L(1)),  # AUTH refused
        handshake_then(lambda t, c: c.shutdown(socket.SHUT_WR)),  # gone at the reading
        handshake_then(lambda t, c: reply(t, b"Z")),  # a malformed answer
    ],
    ids=["refused", "hang-up", "malformed"],
)
def test_no_file_descriptor_is_left_open_by_failures(serve, answer) -> None:
    """Every failure closes its socket itself: none is left for the garbage collector (which would
    close it too in CPython, so the warning it gives is what is counted, with the descriptors)."""
    import gc
    import warnings

    server = serve(answer)
    now = [0.0]
    server.clock = lambda: now[0]
    missing = pulse.Server(str(Path(server.path).with_name("absent")), {}, clock=lambda: now[0])
    gc.collect()  # what earlier tests left is not counted here
    before = _fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(50):
            now[0] += pulse.RECONNECT_AFTER
            with pytest.raises(ProbeUnavailable):
                server.sink()
            with pytest.raises(ProbeUnavailable, match="^no sound server at "):
                missing.sink()
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert server.conn is None
    _until(lambda: _fds() <= before, "the descriptors' release (the fake server closes its side)")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_looks_from_the_telemetry_thread_never_take_a_readings_answer(serve) -> None:
    """The telemetry loop looks for changes while the worker reads, on one connection: the look
    must never read the answer a reading waits for (the lock), nor change the socket's blocking
    mode under it."""

    def sink(tag: int, conn: socket.socket) -> bytes:
        return event(0, 1) + reply(tag, sink_body([0x10000, 0x10000], False)) + event(7)

    server = serve(handshake_then(sink))
    server.connect()
    first = server.conn
    errors: list[str] = []

    def readings() -> None:
        for _ in range(100):
            try:
                assert server.sink().percent == 100
            except (ProbeUnavailable, AssertionError) as exc:
                errors.append(str(exc))
                return

    reader = threading.Thread(target=readings, daemon=True)
    reader.start()
    looks = 0
    while reader.is_alive():
        server.changed()
        looks += 1
    reader.join()
    assert errors == []
    assert server.conn is first  # never dropped and opened again
    assert looks > 0
