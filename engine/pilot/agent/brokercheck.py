"""One honest connection test: connect to an MQTT broker for real and say, in plain words, what failed.

`pilot init` and `pilot check` call it before they trust a broker setting; the agent may call it to
explain its first failure. It speaks MQTT itself over a plain socket (and `ssl`), so it sees every
byte the server sends and can tell the cases apart that a client library folds into one error:

    dns          the host name does not resolve
    refused      nothing listens on that port
    unreachable  no route to the host
    timeout      no answer in time (a firewall dropping packets, a host that is down)
    not_mqtt     something answered that is not an MQTT broker (a web server, SSH, garbage, a hang-up)
    tls          TLS to a plain port, plain to a TLS port, an untrusted, expired or misnamed certificate
    tls_config   our own TLS files cannot be used (missing CA file, key not matching the certificate)
    auth         the broker refused the credentials (bad user name or password, not authorised)
    refused_by_broker  the broker answered CONNACK with another refusal (protocol, client id, unavailable)
    ok           connected; `details` holds what the broker reported about itself

Every step runs against one deadline, name resolution included (it runs on a helper thread, since
getaddrinfo has no timeout of its own), so a call never takes much longer than `timeout`.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TIMEOUT = 5.0
VERSION_WAIT = 1.0  # after a successful connect: how long to wait for the broker's $SYS version
MAX_PACKET = 64 * 1024  # the largest answer read (a CONNACK is a few bytes; $SYS/broker/version a line)
SHOWN_BYTES = 48  # how much of a non-MQTT answer is quoted back

# MQTT 3.1.1 CONNACK return codes and MQTT 5 reason codes: (kind, explanation)
CONNACK_311 = {
    1: ("refused_by_broker", 'the broker does not accept MQTT protocol version 3.1.1 (try `protocol: "5"`)'),
    2: ("refused_by_broker", "the broker rejected the client id"),
    3: ("refused_by_broker", "the broker says the MQTT service is unavailable"),
    4: ("auth", "bad user name or password"),
    5: ("auth", "not authorised: the broker requires a user name and password, or this user may not connect"),
}
CONNACK_5 = {
    0x80: ("refused_by_broker", "unspecified error"),
    0x81: ("refused_by_broker", "the broker could not parse our CONNECT (malformed packet)"),
    0x82: ("refused_by_broker", "protocol error"),
    0x83: ("refused_by_broker", "implementation specific error"),
    0x84: ("refused_by_broker", 'the broker does not accept MQTT version 5 (try `protocol: "3.1.1"`)'),
    0x85: ("refused_by_broker", "the broker rejected the client id"),
    0x86: ("auth", "bad user name or password"),
    0x87: ("auth", "not authorised: the broker requires a user name and password, or this user may not connect"),
    0x88: ("refused_by_broker", "the broker says the MQTT service is unavailable"),
    0x89: ("refused_by_broker", "the broker is busy"),
    0x8A: ("refused_by_broker", "this client is banned"),
    0x8C: ("auth", "bad authentication method"),
    0x95: ("refused_by_broker", "packet too large"),
    0x97: ("refused_by_broker", "quota exceeded"),
    0x99: ("refused_by_broker", "payload format invalid"),
    0x9A: ("refused_by_broker", "retain not supported"),
    0x9B: ("refused_by_broker", "QoS not supported"),
    0x9C: ("refused_by_broker", "use another server"),
    0x9D: ("refused_by_broker", "server moved"),
    0x9F: ("refused_by_broker", "connection rate exceeded"),
}
# OpenSSL certificate verification codes worth their own sentence
X509_EXPIRED, X509_NOT_YET_VALID, X509_HOSTNAME_MISMATCH = 10, 9, 62
X509_UNTRUSTED = {18, 19, 20, 21, 2, 27}

ADVICE_PORTS = "MQTT is usually port 1883, or 8883 with TLS"


@dataclass(frozen=True)
class TlsOptions:
    """What the client brings to a TLS connection (the profile's `mqtt.tls`)."""

    ca_file: str | None = None  # None: the system's CA store
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False  # no certificate or host name check


@dataclass(frozen=True)
class BrokerCheck:
    ok: bool
    kind: str  # see the module docstring
    summary: str  # one line: what happened
    advice: str = ""  # what to do about it
    details: dict[str, Any] = field(default_factory=dict)  # what the broker (or its certificate) reported

    def text(self) -> str:
        return self.summary + (f"\n  {self.advice}" if self.advice else "")


class _Fail(Exception):
    def __init__(self, kind: str, summary: str, advice: str = "", **details: Any) -> None:
        super().__init__(summary)
        self.result = BrokerCheck(False, kind, summary, advice, details)


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.end = time.monotonic() + timeout

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


# ------------------------------------------------------------------ MQTT packets


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def connect_packet(
    client_id: str, username: str | None, password: str | None, *, protocol: str = "3.1.1", keepalive: int = 30
) -> bytes:
    v5 = protocol == "5"
    flags = 0x02  # clean session / clean start
    payload = _string(client_id)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _string(password)
    header = _string("MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack("!H", keepalive)
    if v5:
        header += b"\x00"  # no properties
    body = header + payload
    return b"\x10" + _varint(len(body)) + body


def subscribe_packet(topic: str, packet_id: int = 1, *, protocol: str = "3.1.1") -> bytes:
    body = struct.pack("!H", packet_id) + (b"\x00" if protocol == "5" else b"") + _string(topic) + b"\x00"
    return b"\x82" + _varint(len(body)) + body


DISCONNECT = b"\xe0\x00"


class _Reader:
    """Reads whole MQTT packets against the deadline; keeps every byte seen for the explanation."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self.sock, self.deadline, self.seen = sock, deadline, b""
        self.buffer = b""

    def _fill(self, until: float | None = None) -> bool:
        left = self.deadline.left() if until is None else max(0.0, min(until, self.deadline.end) - time.monotonic())
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        chunk = self.sock.recv(4096)
        if not chunk:
            return False
        self.buffer += chunk
        if len(self.seen) < MAX_PACKET:
            self.seen += chunk[: MAX_PACKET - len(self.seen)]
        return True

    def packet(self, until: float | None = None, expect: int | None = None) -> tuple[int, bytes] | None:
        """(first byte, body) of the next packet; None when the peer closed the connection.
        ValueError: what came is not an MQTT packet (a bad length, one larger than MAX_PACKET, or
        a first byte other than `expect`)."""
        while True:
            if expect is not None and self.buffer and self.buffer[0] != expect:
                raise ValueError("unexpected packet")
            parsed = _split(self.buffer)
            if parsed is not None:
                first, start, length = parsed
                if len(self.buffer) >= start + length:
                    body = self.buffer[start : start + length]
                    self.buffer = self.buffer[start + length :]
                    return first, body
            if not self._fill(until):
                return None


def _split(buffer: bytes) -> tuple[int, int, int] | None:
    """(first byte, where the body starts, its length) once the fixed header is complete."""
    length, shift = 0, 0
    for i in range(1, min(len(buffer), 5)):
        byte = buffer[i]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if length > MAX_PACKET:
                raise ValueError("packet too large")
            return buffer[0], i + 1, length
    if len(buffer) >= 5:
        raise ValueError("bad remaining length")
    return None


def _v5_properties(data: bytes) -> dict[str, Any]:
    """The CONNACK properties worth reporting (a malformed or unknown one ends the walk quietly)."""
    names = {
        0x11: ("session_expiry", 4),
        0x21: ("receive_maximum", 2),
        0x24: ("maximum_qos", 1),
        0x25: ("retain_available", 1),
        0x27: ("maximum_packet_size", 4),
        0x22: ("topic_alias_maximum", 2),
        0x28: ("wildcard_subscriptions", 1),
        0x29: ("subscription_ids", 1),
        0x2A: ("shared_subscriptions", 1),
        0x13: ("server_keep_alive", 2),
        0x12: ("assigned_client_id", "s"),
        0x1F: ("reason", "s"),
        0x1A: ("response_information", "s"),
        0x1C: ("server_reference", "s"),
    }
    out: dict[str, Any] = {}
    try:
        length, i, shift = 0, 0, 0
        while True:
            byte = data[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        end = i + length
        while i < end:
            pid = data[i]
            i += 1
            if pid not in names:
                break
            name, size = names[pid]
            if size == "s":
                (n,) = struct.unpack_from("!H", data, i)
                out[name] = _printable(data[i + 2 : i + 2 + n].decode("utf-8", "replace"))
                i += 2 + n
            else:
                out[name] = int.from_bytes(data[i : i + size], "big")
                i += size
    except (IndexError, struct.error):
        pass
    return out


def _printable(text: str, limit: int = 200) -> str:
    shown = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text[:limit])
    return shown + ("…" if len(text) > limit else "")


def _quote(data: bytes) -> str:
    return _printable(data[:SHOWN_BYTES].decode("latin-1"), SHOWN_BYTES) + ("…" if len(data) > SHOWN_BYTES else "")


# ------------------------------------------------------------------ explanations


def _what_answered(data: bytes, where: str) -> _Fail:
    """A server that answered our CONNECT with something that is not a CONNACK."""
    if data[:5] == b"HTTP/" or data[:1] == b"<":
        first = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        return _Fail(
            "not_mqtt",
            f"{where} is a web server, not an MQTT broker: it answered {_quote(first)!r}",
            f"Check the port: {ADVICE_PORTS} (Home Assistant's web interface is 8123). A WebSocket "
            "listener will not do either: Pilot speaks MQTT over TCP.",
            answer=_quote(data),
        )
    if data[:4] == b"SSH-":
        banner = data.split(b"\r\n", 1)[0]
        return _Fail(
            "not_mqtt",
            f"{where} is an SSH server, not an MQTT broker ({_quote(banner)!r})",
            f"Check the port: {ADVICE_PORTS}.",
            answer=_quote(data),
        )
    if len(data) >= 3 and data[0] in (0x15, 0x16) and data[1] == 0x03:
        return _Fail(
            "tls",
            f"{where} speaks TLS, but the connection was plain",
            "Turn TLS on (`mqtt.tls`, and the broker's CA file if it is not in the system store), "
            "or use the broker's plain port (usually 1883).",
        )
    return _Fail(
        "not_mqtt",
        f"{where} answered, but not in MQTT: it sent {_quote(data)!r}",
        f"Something else listens on that port. Check the host and port: {ADVICE_PORTS}.",
        answer=_quote(data),
    )


def _hung_up(where: str) -> _Fail:
    return _Fail(
        "not_mqtt",
        f"{where} closed the connection without answering the MQTT CONNECT",
        f"This is not an MQTT broker, or it speaks TLS, or it refuses this client outright. {ADVICE_PORTS}.",
    )


def _cert_failure(exc: ssl.SSLCertVerificationError, host: str, tls: TlsOptions) -> _Fail:
    code = getattr(exc, "verify_code", None)
    message = exc.verify_message or str(exc.reason or exc)
    trust = f"the CA file {tls.ca_file}" if tls.ca_file else "the system's CA store"
    if code == X509_EXPIRED:
        return _Fail(
            "tls",
            "the broker's TLS certificate has expired",
            "Renew the broker's certificate (and check this computer's clock).",
            verify=message,
        )
    if code == X509_NOT_YET_VALID:
        return _Fail(
            "tls",
            "the broker's TLS certificate is not valid yet",
            "Check this computer's clock, or the certificate's start date.",
            verify=message,
        )
    if code == X509_HOSTNAME_MISMATCH:
        return _Fail(
            "tls",
            f"the broker's TLS certificate is not for {host!r} ({message})",
            "Connect with a name the certificate lists (its subjectAltName), or reissue the certificate "
            "with this name.",
            verify=message,
        )
    if code in X509_UNTRUSTED:
        return _Fail(
            "tls",
            f"the broker's TLS certificate is not trusted: {message}",
            f"It is not signed by a CA in {trust}. Give the CA that signed the broker's certificate "
            "(`mqtt.tls.ca_file`).",
            verify=message,
        )
    return _Fail("tls", f"the broker's TLS certificate was rejected: {message}", verify=message)


def _alert_failure(exc: ssl.SSLError, where: str) -> _Fail | None:
    """TLS alerts from the broker about our side (our client certificate, versions)."""
    reason = str(exc.reason or exc).upper()
    if "CERTIFICATE_REQUIRED" in reason:
        return _Fail(
            "tls",
            f"{where} requires a client certificate, and none was given",
            "Add `mqtt.tls.cert_file` and `key_file` (a certificate signed by a CA the broker trusts).",
        )
    if "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason or "CERTIFICATE_UNKNOWN" in reason:
        return _Fail(
            "tls",
            f"{where} rejected our client certificate ({exc.reason})",
            "Use a client certificate signed by a CA the broker trusts (its `cafile`).",
        )
    if "HANDSHAKE_FAILURE" in reason:
        return _Fail(
            "tls",
            f"{where} ended the TLS handshake (handshake failure)",
            "It may require a client certificate (`mqtt.tls.cert_file`/`key_file`), or accept no TLS "
            "version or cipher we offer (we need TLS 1.2 or later).",
        )
    if "PROTOCOL_VERSION" in reason or "UNSUPPORTED_PROTOCOL" in reason:
        return _Fail(
            "tls",
            f"{where} accepts no TLS version we offer ({exc.reason}); Pilot needs TLS 1.2 or later",
        )
    return None


def _context(tls: TlsOptions) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    except FileNotFoundError:
        raise _Fail("tls_config", f"the CA file {tls.ca_file} does not exist") from None
    except PermissionError:
        raise _Fail("tls_config", f"the CA file {tls.ca_file} cannot be read (permission denied)") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise _Fail("tls_config", f"the CA file {tls.ca_file} holds no usable certificate ({exc})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file or tls.key_file:
        try:
            context.load_cert_chain(tls.cert_file or "", tls.key_file)
        except FileNotFoundError as exc:
            raise _Fail("tls_config", f"the client certificate or key does not exist: {exc.filename}") from None
        except PermissionError as exc:
            raise _Fail("tls_config", f"the client certificate or key cannot be read: {exc.filename}") from None
        except (ssl.SSLError, OSError) as exc:
            raise _Fail(
                "tls_config",
                f"the client certificate {tls.cert_file} and key {tls.key_file} cannot be used ({exc.reason or exc})",
                "Check that the key belongs to the certificate, and that both are PEM.",
            ) from None
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# ------------------------------------------------------------------ the steps


def _resolve(host: str, port: int, deadline: _Deadline) -> list[tuple]:
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["error"] = exc

    thread = threading.Thread(target=work, name="pilot-resolve", daemon=True)
    thread.start()
    thread.join(deadline.left())
    if thread.is_alive():
        raise _Fail(
            "timeout",
            f"looking up {host!r} took longer than {deadline.timeout:g} s",
            "Check this computer's DNS settings, or use the broker's IP address.",
        )
    error = box.get("error")
    if error is not None:
        why = getattr(error, "strerror", None) or str(error)
        raise _Fail(
            "dns",
            f"cannot find the host {host!r}: {why}",
            "Check the spelling, or use the broker's IP address (the Home Assistant host's address "
            "when the broker is its Mosquitto add-on).",
        )
    return box["infos"]


def _open(host: str, port: int, deadline: _Deadline) -> socket.socket:
    where = f"{host}:{port}"
    infos = _resolve(host, port, deadline)
    failures: list[OSError] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(max(0.05, deadline.left()))
        try:
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            failures.append(exc)
            if deadline.left() <= 0:
                break
    if any(isinstance(e, ConnectionRefusedError) for e in failures):
        raise _Fail(
            "refused",
            f"nothing is listening on {where} (connection refused)",
            f"Is the broker running, and is the port right? {ADVICE_PORTS}.",
        )
    if not failures or any(isinstance(e, (TimeoutError, socket.timeout)) for e in failures):
        raise _Fail(
            "timeout",
            f"no answer from {where} within {deadline.timeout:g} s",
            "The host may be down or the address wrong, or a firewall drops the packets (on the broker's "
            "host, allow the port).",
        )
    last = failures[-1]
    raise _Fail(
        "unreachable",
        f"cannot reach {where}: {last.strerror or last}",
        "Check the address and this computer's network (is the broker on another network or VPN?).",
    )


def _handshake(sock: socket.socket, host: str, tls: TlsOptions, deadline: _Deadline) -> ssl.SSLSocket:
    context = _context(tls)
    sock.settimeout(max(0.05, deadline.left()))
    tls_sock = context.wrap_socket(sock, server_hostname=None if tls.insecure else host, do_handshake_on_connect=False)
    tls_sock.do_handshake()
    return tls_sock


def _mqtt_exchange(
    sock: socket.socket,
    where: str,
    deadline: _Deadline,
    client_id: str,
    username: str | None,
    password: str | None,
    protocol: str,
) -> BrokerCheck:
    reader = _Reader(sock, deadline)
    sock.sendall(connect_packet(client_id, username, password, protocol=protocol))
    try:
        packet = reader.packet(expect=0x20)
    except ValueError:
        raise _what_answered(reader.seen, where) from None
    except TimeoutError:
        if reader.seen:
            raise _what_answered(reader.seen, where) from None
        raise
    except (ConnectionResetError, BrokenPipeError):
        packet = None
    if packet is None:
        if reader.seen:
            raise _what_answered(reader.seen, where)
        raise _hung_up(where)
    first, body = packet
    if first != 0x20 or len(body) < 2:
        raise _what_answered(reader.seen, where)
    details: dict[str, Any] = {"protocol": protocol, "session_present": bool(body[0] & 1)}
    code = body[1]
    if protocol == "5":
        details.update(_v5_properties(body[2:]))
    if code != 0:
        table = CONNACK_5 if protocol == "5" else CONNACK_311
        kind, text = table.get(code, ("refused_by_broker", f"refused with code {code}"))
        if kind == "auth" and username is None:
            text = "the broker does not let clients in without a user name and password"
        elif (protocol, code) in (("3.1.1", 5), ("5", 0x87)):
            # Mosquitto answers `not authorised` for a wrong password as well
            text = "not authorised: the user name or password is wrong, or this user may not connect"
        said = f" (the broker said: {details['reason']})" if details.get("reason") else ""
        advice = ""
        if kind == "auth":
            advice = (
                "Check the user name and the password (the password file's first line). On Home Assistant's "
                "Mosquitto add-on, use a Home Assistant user or a login from the add-on's configuration."
            )
        raise _Fail(kind, f"{where} refused the connection: {text}{said}", advice, code=code, **details)
    # connected: ask for the broker's version ($SYS is optional and may be denied; wait briefly)
    try:
        sock.sendall(subscribe_packet("$SYS/broker/version", protocol=protocol))
        until = time.monotonic() + min(VERSION_WAIT, deadline.left())
        while time.monotonic() < until:
            packet = reader.packet(until=until)
            if packet is None:
                break
            first, body = packet
            if first == 0x90 and body[-1:] >= b"\x80":
                break  # subscription refused
            if first >> 4 == 3:
                (n,) = struct.unpack_from("!H", body, 0)
                topic, rest = body[2 : 2 + n], body[2 + n :]
                if (first >> 1) & 3:
                    rest = rest[2:]
                if protocol == "5" and rest:
                    skip = rest[0]  # property length (small here)
                    rest = rest[1 + skip :]
                if topic == b"$SYS/broker/version":
                    details["version"] = _printable(rest.decode("utf-8", "replace"))
                    break
        sock.sendall(DISCONNECT)
    except (OSError, ValueError, struct.error):
        pass
    return BrokerCheck(True, "ok", f"connected to {where}", "", details)


def check_broker(
    host: str,
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    tls: TlsOptions | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    protocol: str = "3.1.1",
    client_id: str | None = None,
) -> BrokerCheck:
    """Connect for real, log in, and disconnect; the result says what happened in plain words.

    The client id is a fresh one (`pilot-check-…`) unless given: reusing a running agent's id would
    make the broker disconnect that agent."""
    where = f"{host}:{port}"
    client_id = client_id or f"pilot-check-{os.getpid()}-{secrets.token_hex(3)}"
    deadline = _Deadline(timeout)
    sock: socket.socket | None = None
    try:
        if tls is not None:
            _context(tls)  # our own files first: their errors are ours, not the broker's
        sock = _open(host, port, deadline)
        if tls is not None:
            try:
                sock = _handshake(sock, host, tls, deadline)
            except ssl.SSLCertVerificationError as exc:
                raise _cert_failure(exc, host, tls) from None
            except ssl.SSLError as exc:
                raise _tls_failed(exc, host, port, deadline) from None
            except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
                raise _tls_failed(None, host, port, deadline) from None
        result = _mqtt_exchange(sock, where, deadline, client_id, username, password, protocol)
        if isinstance(sock, ssl.SSLSocket):
            result.details.update(tls_version=sock.version(), cipher=(sock.cipher() or ("",))[0])
        return result
    except _Fail as failure:
        if tls is None and failure.result.kind == "not_mqtt" and _speaks_tls(host, port, deadline):
            return BrokerCheck(
                False,
                "tls",
                f"{where} speaks TLS, but the connection was plain",
                "Turn TLS on (`mqtt.tls`, with `ca_file` when the broker's CA is not in the system store), or "
                "use the broker's plain port (usually 1883).",
            )
        return failure.result
    except ssl.SSLError as exc:  # TLS 1.3: the broker judges our client certificate after the handshake
        failure = _alert_failure(exc, where)
        if failure is not None:
            return failure.result
        if isinstance(exc, ssl.SSLEOFError) and tls is not None:
            if not tls.cert_file:
                return BrokerCheck(
                    False,
                    "tls",
                    f"{where} closed the TLS connection right after the handshake: it probably requires a client "
                    "certificate, and none was given",
                    "Add `mqtt.tls.cert_file` and `key_file` (a certificate signed by a CA the broker trusts).",
                )
            return BrokerCheck(
                False,
                "tls",
                f"{where} closed the TLS connection right after the handshake: it probably rejected our client "
                "certificate",
                "Use a client certificate signed by a CA the broker trusts (its `cafile`).",
            )
        return BrokerCheck(False, "tls", f"TLS failed with {where}: {exc.reason or exc}")
    except TimeoutError:
        return BrokerCheck(
            False,
            "timeout",
            f"{where} accepted the connection but sent no MQTT answer within {timeout:g} s",
            "Something is listening that is not an MQTT broker, or a TLS port is waiting for a handshake "
            f"(turn `mqtt.tls` on), or the broker is overloaded. {ADVICE_PORTS}.",
        )
    except (ConnectionResetError, BrokenPipeError):
        if tls is None and _speaks_tls(host, port, deadline):
            return BrokerCheck(
                False,
                "tls",
                f"{where} speaks TLS, but the connection was plain",
                "Turn TLS on (`mqtt.tls`), or use the broker's plain port (usually 1883).",
            )
        return _hung_up(where).result
    except OSError as exc:
        return BrokerCheck(False, "error", f"talking to {where} failed: {exc.strerror or exc}")
    finally:
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _tls_failed(exc: ssl.SSLError | None, host: str, port: int, deadline: _Deadline) -> _Fail:
    where = f"{host}:{port}"
    if exc is not None:
        failure = _alert_failure(exc, where)
        if failure is not None:
            return failure
    if _speaks_plain_mqtt(host, port, deadline):
        return _Fail(
            "tls",
            f"{where} speaks plain MQTT, not TLS",
            "Remove `mqtt.tls` to connect without encryption, or use the broker's TLS port (usually 8883).",
        )
    reason = (exc.reason or str(exc)) if exc is not None else "the server closed the connection"
    return _Fail(
        "tls",
        f"the TLS handshake with {where} failed: {reason}",
        f"Is this the broker's TLS port? {ADVICE_PORTS}.",
    )


def _speaks_plain_mqtt(host: str, port: int, deadline: _Deadline) -> bool:
    """A second connection, plain: does a CONNACK come back (whatever its code)?"""
    probe = _Deadline(max(0.5, min(2.0, deadline.left())))
    try:
        with _open(host, port, probe) as sock:
            sock.sendall(connect_packet(f"pilot-check-{os.getpid()}-probe", None, None))
            packet = _Reader(sock, probe).packet()
            if packet is not None and packet[0] == 0x20:
                sock.sendall(DISCONNECT)
                return True
    except (_Fail, OSError, ValueError):
        pass
    return False


def _speaks_tls(host: str, port: int, deadline: _Deadline) -> bool:
    """A second connection, TLS without any checks: does the server complete a handshake?"""
    probe = _Deadline(max(0.5, min(2.0, deadline.left())))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with _open(host, port, probe) as sock:
            sock.settimeout(max(0.05, probe.left()))
            with context.wrap_socket(sock) as tls_sock:
                return tls_sock.version() is not None
    except ssl.SSLError as exc:
        # a server that asks for a client certificate still spoke TLS
        return _alert_failure(exc, "") is not None
    except (_Fail, OSError, ValueError):
        return False


def tls_options(settings: Any) -> TlsOptions | None:
    """The profile's `mqtt.tls` (a pilot.plan.Tls, or None) as TlsOptions."""
    if settings is None:
        return None
    return TlsOptions(settings.ca_file, settings.cert_file, settings.key_file, bool(settings.insecure))


def check_settings(mqtt: Any, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> BrokerCheck:
    """check_broker with a plan's `mqtt` settings (pilot.plan.Mqtt): the password file is read here,
    and a file that cannot be read is the answer."""
    password = None
    if mqtt.username and mqtt.password_file:
        try:
            with open(mqtt.password_file, encoding="utf-8") as handle:
                password = handle.readline().rstrip("\r\n")
        except OSError as exc:
            return BrokerCheck(
                False,
                "config",
                f"cannot read the password file {mqtt.password_file}: {exc.strerror or exc}",
                "Create it with the password on its first line (chmod 600), or fix `mqtt.password_file`.",
            )
        except UnicodeDecodeError:
            return BrokerCheck(False, "config", f"the password file {mqtt.password_file} is not UTF-8 text")
    return check_broker(
        host,
        port,
        username=mqtt.username,
        password=password,
        tls=tls_options(mqtt.tls),
        timeout=timeout,
        protocol=mqtt.protocol,
    )
