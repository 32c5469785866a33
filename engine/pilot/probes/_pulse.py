"""The default sink's volume and mute over PulseAudio's native protocol, in the agent's own process.

Why: forking `pactl` for each reading, and keeping a `pactl subscribe` child running to learn of
changes, costs a second process (about 5.5 MiB of RSS). PulseAudio and PipeWire's pipewire-pulse
both serve this protocol on a unix socket, so a few hundred lines of Python read the same answer
with no child process, no thread and no fork: one connection per sound server, subscribed to sink
and server events, drained without blocking at each reading; a reading asks again only after a
change.

Protocol facts, from the PulseAudio sources (pulsecore/pstream.c, tagstruct.c, native-common.h,
pulse/context.c, pulsecore/protocol-native.c):
- a frame is a descriptor of five big-endian u32 (length, channel, offset hi, offset lo, flags)
  then `length` bytes; channel 0xffffffff is a control packet, any other is audio (we have none);
- a packet is a tagstruct: u32 command, u32 tag, then the command's values, each a type byte and
  its bytes: 'L' u32, 't' NUL-ended string, 'N' no string, '1'/'0' boolean, 'a' sample spec (u8
  format, u8 channels, u32 rate), 'm' channel map (u8 n, n u8), 'v' volumes (u8 n, n u32), 'x'
  bytes (u32 length, bytes), 'P' property list (string key, u32 length, bytes value ..., 'N');
- the server answers REPLY or ERROR (u32 code) with the request's tag, and announces a
  subscribed change as SUBSCRIBE_EVENT, tag 0xffffffff, u32 facility|type, u32 index;
- AUTH (u32 version, 256-byte cookie) then SET_CLIENT_NAME (property list) open a connection;
  GET_SINK_INFO (u32 no index, "@DEFAULT_SINK@") names the default sink, resolved by the server.

Everything from the socket is bounded: a frame over MAX_FRAME, a malformed tagstruct, more than
32 channels, a reply to a request we did not make, an ERROR, or no answer within TIMEOUT closes
the connection with one reason (ProbeUnavailable); a new one is tried at most every
RECONNECT_AFTER seconds.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pilot.probes._context import ProbeUnavailable

FRAME = struct.Struct(">5I")
U32 = struct.Struct(">I")
PACKET = 0xFFFFFFFF  # the channel of control packets; also "no index" and the tag of server events
CMD_ERROR, CMD_REPLY, CMD_AUTH, CMD_SET_CLIENT_NAME = 0, 2, 8, 9
CMD_GET_SINK_INFO, CMD_SUBSCRIBE, CMD_SUBSCRIBE_EVENT = 21, 35, 66
PROTOCOL_VERSION = 32  # property lists since 13; the sink reply's first fields never changed
COOKIE_LENGTH = 256
VOLUME_NORM = 0x10000
VOLUME_MAX = 0x7FFFFFFF
CHANNELS_MAX = 32
MASK_SINK, MASK_SERVER = 0x0001, 0x0080
FACILITY_MASK, FACILITY_SINK, FACILITY_SERVER = 0x000F, 0, 7
DEFAULT_SINK = "@DEFAULT_SINK@"
MAX_FRAME = 1 << 20
SUN_PATH = 108  # bytes of a unix socket address (struct sockaddr_un's sun_path)
MAX_DRAIN = 256 * 1024  # bytes read per look for changes; more waiting is a change all the same
MAX_REQUEST = 4 << 20  # bytes read while waiting for one answer (events before it included)
TIMEOUT = 1.0
RECONNECT_AFTER = 30.0
ERRORS = {1: "access denied", 3: "invalid argument", 5: "no such entity", 7: "protocol error", 17: "bad version"}


# ------------------------------------------------------------------ tagstructs


def put_u32(value: int) -> bytes:
    return b"L" + U32.pack(value)


def put_string(text: str) -> bytes:
    raw = text.encode()
    if b"\0" in raw:
        raise ValueError("a string sent to the sound server cannot hold NUL")
    return b"t" + raw + b"\0"


def put_bytes(data: bytes) -> bytes:
    return b"x" + U32.pack(len(data)) + data


def put_proplist(items: Mapping[str, str]) -> bytes:
    """Values are strings, sent as PulseAudio stores them: with their NUL."""
    body = b""
    for key, value in items.items():
        raw = value.encode() + b"\0"
        body += put_string(key) + put_u32(len(raw)) + put_bytes(raw)
    return b"P" + body + b"N"


def packet(command: int, tag: int, *values: bytes) -> bytes:
    body = put_u32(command) + put_u32(tag) + b"".join(values)
    return FRAME.pack(len(body), PACKET, 0, 0, 0) + body


class Tags:
    """Reads typed values off one packet; anything short or of the wrong type is ProbeUnavailable."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProbeUnavailable("the sound server sent a truncated packet")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _tag(self, want: bytes, what: str) -> None:
        got = self._take(1)
        if got != want:
            raise ProbeUnavailable(f"the sound server sent {got!r} where {what} belongs")

    def u32(self) -> int:
        self._tag(b"L", "a number")
        return U32.unpack(self._take(4))[0]

    def string(self) -> str | None:
        if self.data[self.pos : self.pos + 1] == b"N":
            self.pos += 1
            return None
        self._tag(b"t", "a string")
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProbeUnavailable("the sound server sent a truncated packet")
        text = self.data[self.pos : end].decode("utf-8", "replace")
        self.pos = end + 1
        return text

    def boolean(self) -> bool:
        got = self._take(1)
        if got not in (b"1", b"0"):
            raise ProbeUnavailable(f"the sound server sent {got!r} where a boolean belongs")
        return got == b"1"

    def _count(self) -> int:
        n = self._take(1)[0]
        if n > CHANNELS_MAX:
            raise ProbeUnavailable(f"the sound server sent {n} channels (at most {CHANNELS_MAX})")
        return n

    def sample_spec(self) -> None:
        self._tag(b"a", "a sample spec")
        self._take(1)
        self._count()
        self._take(4)

    def channel_map(self) -> None:
        self._tag(b"m", "a channel map")
        self._take(self._count())

    def volumes(self) -> tuple[int, ...]:
        self._tag(b"v", "a volume")
        n = self._count()
        return struct.unpack(f">{n}I", self._take(4 * n))


# ------------------------------------------------------------------ one connection


@dataclass(frozen=True)
class Sink:
    name: str
    volumes: tuple[int, ...]  # one per channel, PA_VOLUME_NORM = 100 %
    muted: bool

    @property
    def percent(self) -> int:
        """The channels' mean (pa_cvolume_avg), in percent as pactl prints it (half up)."""
        mean = sum(self.volumes) // len(self.volumes)
        return (mean * 100 + VOLUME_NORM // 2) // VOLUME_NORM


class Connection:
    """One authorized connection subscribed to sink and server events. Not thread-safe: Server locks."""

    def __init__(self, sock: socket.socket, timeout: float = TIMEOUT) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = bytearray()
        self.next_tag = 0
        self.changed = False  # a sink or server event came since the last reading started

    @classmethod
    def open(cls, path: str, cookie: bytes, timeout: float = TIMEOUT) -> Connection:
        family = getattr(socket, "AF_UNIX", None)
        if family is None:
            raise ProbeUnavailable("this system has no unix sockets to reach PulseAudio on")
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # out of file descriptors, or of memory
            raise ProbeUnavailable(f"the sound server cannot be reached: {exc.strerror or exc}") from None
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise ProbeUnavailable(f"no sound server at {path}: {exc.strerror or exc}") from None
        conn = cls(sock, timeout)
        try:
            version = conn.request(CMD_AUTH, put_u32(PROTOCOL_VERSION), put_bytes(cookie)).u32() & 0xFFFF
            if version < 13:
                raise Refused(f"the sound server speaks protocol {version} (13 or later is needed)")
            conn.request(CMD_SET_CLIENT_NAME, put_proplist({"application.name": "pilot"}))
            conn.request(CMD_SUBSCRIBE, put_u32(MASK_SINK | MASK_SERVER))
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        self.sock.close()

    def sink(self) -> Sink:
        """The default sink, read up to its mute flag (the rest of the reply is not needed)."""
        self.changed = False  # this reading answers the changes seen so far
        tags = self.request(CMD_GET_SINK_INFO, put_u32(PACKET), put_string(DEFAULT_SINK))
        tags.u32()  # index
        name = tags.string() or ""
        tags.string()  # description
        tags.sample_spec()
        tags.channel_map()
        tags.u32()  # owner module
        volumes = tags.volumes()
        muted = tags.boolean()
        if not volumes or max(volumes) > VOLUME_MAX:
            raise ProbeUnavailable("the sound server sent no valid volume for the default sink")
        return Sink("".join(ch if ch.isprintable() else "?" for ch in name)[:120], volumes, muted)

    def request(self, command: int, *values: bytes) -> Tags:
        tag = self.next_tag
        self.next_tag = (tag + 1) & 0x7FFFFFFF
        deadline = time.monotonic() + self.timeout
        self._send(packet(command, tag, *values), deadline)
        received = 0
        while True:
            got = self._packet()
            while got is None:
                received += self._receive(deadline)
                if received > MAX_REQUEST:
                    raise ProbeUnavailable("the sound server sent too much before answering")
                got = self._packet()
            kind, answer_tag, tags = got
            if kind == CMD_SUBSCRIBE_EVENT:
                self._event(tags)
            elif kind in (CMD_REPLY, CMD_ERROR):
                if answer_tag != tag:
                    raise ProbeUnavailable(f"the sound server answered request {answer_tag}, which was not asked")
                if kind == CMD_ERROR:
                    code = tags.u32()
                    raise Refused(f"the sound server refused: {ERRORS.get(code, f'error {code}')}")
                return tags
            # other announcements (no streams here) are not for us

    def drain(self) -> bool:
        """Read what is waiting, without blocking and at most MAX_DRAIN bytes; True if a sink or the
        server changed since the last reading started (or more is waiting than one look reads).
        Looking does not clear it: the look whose refresh is refused (one is still queued, or just
        finishing) must not lose the change; the next reading clears it."""
        self.sock.setblocking(False)
        try:
            read = 0
            while read < MAX_DRAIN:
                try:
                    data = self.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    raise ProbeUnavailable(f"the sound server connection failed: {exc.strerror or exc}") from None
                if not data:
                    raise ProbeUnavailable("the sound server closed the connection")
                read += len(data)
                self.buffer += data
                self._handle_waiting()
            else:
                self.changed = True
        finally:
            self.sock.settimeout(self.timeout)
        return self.changed

    def _handle_waiting(self) -> None:
        while (got := self._packet()) is not None:
            kind, answer_tag, tags = got
            if kind == CMD_SUBSCRIBE_EVENT:
                self._event(tags)
            elif kind in (CMD_REPLY, CMD_ERROR):
                raise ProbeUnavailable(f"the sound server answered request {answer_tag}, which was not asked")

    def _event(self, tags: Tags) -> None:
        event = tags.u32()
        tags.u32()  # index
        if event & FACILITY_MASK in (FACILITY_SINK, FACILITY_SERVER):
            self.changed = True

    def _packet(self) -> tuple[int, int, Tags] | None:
        """The next whole packet in the buffer, or None until more is read."""
        if len(self.buffer) < FRAME.size:
            return None
        length, channel, _, _, _ = FRAME.unpack_from(self.buffer)
        if length > MAX_FRAME:
            raise ProbeUnavailable(f"the sound server sent a frame of {length} bytes (at most {MAX_FRAME})")
        if channel != PACKET:
            raise ProbeUnavailable("the sound server sent audio on a connection with no stream")
        if len(self.buffer) < FRAME.size + length:
            return None
        tags = Tags(bytes(self.buffer[FRAME.size : FRAME.size + length]))
        del self.buffer[: FRAME.size + length]
        return tags.u32(), tags.u32(), tags

    def _send(self, data: bytes, deadline: float) -> None:
        try:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self.sock.sendall(data)
        except TimeoutError:
            raise ProbeUnavailable(f"the sound server took no request within {self.timeout:g} s") from None
        except OSError as exc:
            raise ProbeUnavailable(f"the sound server connection failed: {exc.strerror or exc}") from None

    def _receive(self, deadline: float) -> int:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
        except TimeoutError:
            raise ProbeUnavailable(f"the sound server did not answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise ProbeUnavailable(f"the sound server connection failed: {exc.strerror or exc}") from None
        if not data:
            raise ProbeUnavailable("the sound server closed the connection")
        self.buffer += data
        return len(data)


# ------------------------------------------------------------------ one sound server, shared


def socket_path(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(path, None) or (None, why): $PULSE_SERVER if it is one unix:/path, else $XDG_RUNTIME_DIR/pulse/native.

    Only an absolute path of printable characters that fits a unix socket address: a list of
    servers, a machine-bound or tcp: one is left to the tools, and no control character reaches a
    reason (a log line, a health report) through the path.
    """
    server = environ.get("PULSE_SERVER")
    if server:
        entries = server.split()  # PulseAudio's list of servers, tried in turn
        if len(entries) != 1 or not entries[0].startswith("unix:/") or not entries[0].isprintable():
            return None, "PULSE_SERVER is not unix:/path (only a local socket is read in-process)"
        path = entries[0][len("unix:") :]
    else:
        runtime = environ.get("XDG_RUNTIME_DIR")
        if not runtime:
            return None, "no audio session: XDG_RUNTIME_DIR is not set"
        if not runtime.startswith("/") or not runtime.isprintable():
            return None, "XDG_RUNTIME_DIR is not an absolute path of printable characters"
        path = os.path.join(runtime, "pulse", "native")
    if len(os.fsencode(path)) > SUN_PATH:
        return None, f"the sound server's socket path is longer than a unix socket address ({SUN_PATH} bytes)"
    return path, None


def read_cookie(environ: Mapping[str, str]) -> bytes:
    """The user's cookie ($PULSE_COOKIE, ~/.config/pulse/cookie, ~/.pulse-cookie), else zeros
    (pipewire-pulse and a server that knows the user by the socket's credentials accept those)."""
    home = environ.get("HOME")
    candidates = [environ.get("PULSE_COOKIE")]
    if home:
        candidates += [os.path.join(home, ".config", "pulse", "cookie"), os.path.join(home, ".pulse-cookie")]
    for path in filter(None, candidates):
        data = _read_regular(path, COOKIE_LENGTH + 1)
        if data is not None and len(data) == COOKIE_LENGTH:
            return data
    return bytes(COOKIE_LENGTH)


def _read_regular(path: str, limit: int) -> bytes | None:
    """At most `limit` bytes of a regular file, else None. Opened without blocking, so a FIFO with no
    writer (which would hold open() for ever) or a device is passed over at once."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)  # each flag where the system has it (not all on Windows)
    for name in ("O_NONBLOCK", "O_NOCTTY", "O_CLOEXEC"):
        flags |= getattr(os, name, 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


class Refused(ProbeUnavailable):
    """A definite no from the sound server (an ERROR answer such as access denied, or a protocol too old),
    as against one that is not there, slow or gone: `auto` may then try the tools, which read the cookie."""


def is_socket(path: str) -> bool:
    """Whether a unix socket is at `path` now (whether or not a server answers on it)."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


class Server:
    """The one connection to one sound server that audio.volume and audio.muted share.

    `changed()` never blocks (the telemetry loop calls it); `sink()` runs on the background worker,
    opens the connection when there is none (at most every RECONNECT_AFTER seconds) and closes it on
    any failure, so the next reading starts clean.
    """

    def __init__(
        self,
        path: str,
        environ: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
        timeout: float = TIMEOUT,
    ) -> None:
        self.path = path
        self.environ = dict(environ)
        self.clock = clock
        self.timeout = timeout
        self.conn: Connection | None = None
        self.failed_at: float | None = None
        self.why = ""
        self.refused = False  # the last failure was a Refused
        self.lock = threading.Lock()

    def changed(self) -> bool:
        if not self.lock.acquire(blocking=False):
            return False  # a read is under way; what it sees meanwhile is kept for the next look
        try:
            if self.conn is None:
                return True  # let the reading say why, or reconnect
            try:
                return self.conn.drain()
            except ProbeUnavailable as exc:
                self._fail(str(exc))
                return True
        finally:
            self.lock.release()

    def connect(self) -> None:
        """Open the connection now unless it is open (ProbeUnavailable with the reason otherwise)."""
        with self.lock:
            self._connect()

    def sink(self) -> Sink:
        with self.lock:
            self._connect()
            assert self.conn is not None
            try:
                return self.conn.sink()
            except ProbeUnavailable as exc:
                self._fail(str(exc))
                raise

    def close(self) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

    def _connect(self) -> None:
        if self.conn is not None:
            return
        if self.failed_at is not None and self.clock() - self.failed_at < RECONNECT_AFTER:
            raise (Refused if self.refused else ProbeUnavailable)(self.why)
        try:
            self.conn = Connection.open(self.path, read_cookie(self.environ), self.timeout)
        except ProbeUnavailable as exc:
            self._fail(str(exc), refused=isinstance(exc, Refused))
            raise
        self.failed_at = None

    def _fail(self, why: str, refused: bool = False) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.failed_at, self.why, self.refused = self.clock(), why, refused


_servers: dict[str, Server] = {}
_servers_lock = threading.Lock()


def shared_server(
    environ: Mapping[str, str], clock: Callable[[], float] = time.monotonic
) -> tuple[Server | None, str | None]:
    """(the Server of this environment's socket, None), or (None, why there is no native socket address)."""
    path, why = socket_path(environ)
    if path is None:
        return None, why
    with _servers_lock:
        if path not in _servers:
            _servers[path] = Server(path, environ, clock)
        return _servers[path], None
