"""A fake Proxmox VE API for tests: HTTPS on a free loopback port, with its own CA.

It serves what Pilot reads and does, shaped as the Proxmox VE API reference documents it:

    GET  /api2/json/cluster/resources[?type=vm]           {"data": [{id, type, vmid, node, name, status, ...}]}
    POST /api2/json/nodes/{node}/{kind}/{vmid}/status/{action}     {"data": "UPID:..."}

Authentication is an API token, exactly `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`; anything
else is answered 401 "authentication failure", as Proxmox does. A second token (`audit_token_id`) is valid
but has no privilege: like Proxmox, `/cluster/resources` then lists only what it may audit (nothing), and a
power action is answered 403 "Permission check failed". Entries follow Proxmox's habits: booleans as 0/1,
`lock`, `hastate` and `tags` only when set, and a guest on a node that is down reported by id, type, vmid,
node and status "unknown" only (its other figures come from the node, which is not answering).

Control, for tests: `reset`, `add_guest`, `remove_guest`, `migrate`, `rename`, `set_field` (any raw value, for
malformed entries), `add_entry` (a raw entry of another type), `node_down`/`node_up`, `fail(status, times)`,
`garbage(times, shape=...)`, `slow(seconds)`, `drip(seconds_per_byte)`, `huge(size, declare_length)`.
`requests` lists (method, path) of everything received, never a token; `authorized` the token id of each
accepted request. `body_bytes_sent` counts what a huge answer managed to send before the client hung up.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from testkit import pki

_POWER = re.compile(r"/api2/json/nodes/([^/]+)/(qemu|lxc)/([0-9]+)/status/([a-z]+)")
_UPID_TYPES = {"qemu": "qm", "lxc": "vz"}
_AFTER = {"start": "running", "stop": "stopped", "shutdown": "stopped", "reboot": "running", "resume": "running"}


class FakeProxmox:
    """Use as a context manager: `with FakeProxmox(tmp_path) as pve: ... pve.url ...`."""

    def __init__(self, directory: Path, *, token_id: str = "root@pam!pilot", host: str = "127.0.0.1") -> None:
        self.dir = Path(directory)
        self.host = host
        self.token_id = token_id
        self.secret = str(uuid.uuid4())
        self.audit_token_id = "audit@pve!readonly"
        self.audit_secret = str(uuid.uuid4())
        self.token_file = self.dir / "pve-token"
        self.token_file.write_text(self.secret + "\n")
        self.audit_token_file = self.dir / "pve-audit-token"
        self.audit_token_file.write_text(self.audit_secret + "\n")
        pki.make_ca(self.dir, "pve-ca")
        pki.make_cert(self.dir, "pve-ca", "pve-server", f"IP:{host},DNS:localhost")
        self.ca_file = str(self.dir / "pve-ca.crt")
        self.requests: list[tuple[str, str]] = []
        self.authorized: list[str] = []
        self.body_bytes_sent = 0
        self._lock = threading.Lock()
        self._guests: dict[int, dict[str, Any]] = {}
        self._entries: list[dict[str, Any]] = []
        self._down: set[str] = set()
        self._failures: list[int] = []
        self._garbage: list[bool] = []  # True: JSON of the wrong shape; False: not JSON
        self._slow = 0.0
        self._drip = 0.0
        self._huge: tuple[int, bool] | None = None
        self._stopping = threading.Event()
        self._upids = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    def __enter__(self) -> FakeProxmox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.dir / "pve-server.crt", self.dir / "pve-server.key")
        server = ThreadingHTTPServer((self.host, 0), _handler(self))
        server.daemon_threads = True
        server.block_on_close = False
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-proxmox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def cert_fingerprint(self) -> str:
        """SHA-256 of the server certificate's DER, "AB:CD:..." as Proxmox's GUI shows it."""
        der = ssl.PEM_cert_to_DER_cert((self.dir / "pve-server.crt").read_text())
        digest = hashlib.sha256(der).hexdigest().upper()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    def reset(self) -> None:
        """Back to an empty, healthy cluster with nothing recorded (one server, CA and port, many tests)."""
        with self._lock:
            self._guests.clear()
            self._entries.clear()
            self._down.clear()
            self._failures.clear()
            self._garbage.clear()
            self._huge = None
            self._slow = self._drip = 0.0
            self.requests.clear()
            self.authorized.clear()
            self.body_bytes_sent = 0

    # -- the cluster --------------------------------------------------------------------------------------

    def add_guest(
        self,
        vmid: int,
        name: str,
        *,
        node: str = "pve1",
        kind: str = "qemu",
        status: str = "running",
        template: bool = False,
        tags: str = "",
        hastate: str | None = None,
        lock: str | None = None,
        **figures: Any,
    ) -> None:
        """A guest; `figures` set cpu, maxcpu, mem, maxmem, disk, maxdisk, diskread, diskwrite, netin,
        netout, uptime (all 0 unless given, maxcpu 1)."""
        guest: dict[str, Any] = {"id": f"{kind}/{vmid}", "type": kind, "vmid": vmid, "name": name, "node": node}
        guest["status"] = status
        guest["template"] = 1 if template else 0
        for key in ("cpu", "maxcpu", "mem", "maxmem", "disk", "maxdisk", "diskread", "diskwrite", "netin"):
            guest[key] = figures.pop(key, 1 if key == "maxcpu" else 0)
        for key in ("netout", "uptime"):
            guest[key] = figures.pop(key, 0)
        if figures:
            raise TypeError(f"unknown figures: {sorted(figures)}")
        if tags:
            guest["tags"] = tags
        if hastate:
            guest["hastate"] = hastate
        if lock:
            guest["lock"] = lock
        with self._lock:
            self._guests[vmid] = guest

    def remove_guest(self, vmid: int) -> None:
        with self._lock:
            del self._guests[vmid]

    def migrate(self, vmid: int, node: str) -> None:
        with self._lock:
            self._guests[vmid]["node"] = node

    def rename(self, vmid: int, name: str) -> None:
        with self._lock:
            self._guests[vmid]["name"] = name

    def set_field(self, vmid: int, key: str, value: Any) -> None:
        """Any raw value, of any type: for malformed entries."""
        with self._lock:
            self._guests[vmid][key] = value

    def guest(self, vmid: int) -> dict[str, Any]:
        with self._lock:
            return dict(self._guests[vmid])

    def add_entry(self, entry: dict[str, Any]) -> None:
        """A raw entry listed as is (a node, a storage, an openvz guest of old, something malformed)."""
        with self._lock:
            self._entries.append(entry)

    def node_down(self, node: str) -> None:
        with self._lock:
            self._down.add(node)

    def node_up(self, node: str) -> None:
        with self._lock:
            self._down.discard(node)

    # -- faults -------------------------------------------------------------------------------------------

    def fail(self, status: int, times: int = 1) -> None:
        """The next `times` requests are answered with this status (500, 401, 403...)."""
        with self._lock:
            self._failures.extend([status] * times)

    def garbage(self, times: int = 1, *, shape: bool = False) -> None:
        """The next `times` answers are not JSON (an HTML page), or with `shape` JSON of the wrong shape."""
        with self._lock:
            self._garbage.extend([shape] * times)

    def slow(self, seconds: float) -> None:
        """Every answer waits this long before its first byte (0: no more)."""
        self._slow = seconds

    def drip(self, seconds_per_byte: float) -> None:
        """Answers send their body one byte at a time, each after this pause: slow, never silent."""
        self._drip = seconds_per_byte

    def huge(self, size: int, *, declare_length: bool = True) -> None:
        """The next answer has a body of `size` bytes, announced in Content-Length or not."""
        self._huge = (size, declare_length)

    # -- serving ------------------------------------------------------------------------------------------

    def _resources(self, kind: str | None, token: str) -> list[dict[str, Any]]:
        if token == self.audit_token_id:
            return []  # Proxmox filters by VM.Audit: a token without it sees no guest, and no error
        with self._lock:
            guests = [dict(g) for g in self._guests.values()]
            entries = [dict(e) for e in self._entries]
            down = set(self._down)
        listed = []
        for guest in guests:
            if guest["node"] in down:
                keep = ("id", "type", "vmid", "node")
                guest = {k: guest[k] for k in keep} | {"status": "unknown"}
            listed.append(guest)
        if kind is None:
            nodes = sorted({g["node"] for g in guests})
            listed += [
                {"id": f"node/{n}", "type": "node", "node": n, "status": "offline" if n in down else "online"}
                for n in nodes
            ]
        return listed + entries

    def _power(self, node: str, kind: str, vmid: int, action: str, token: str) -> tuple[int, str, Any]:
        if token == self.audit_token_id:
            return 403, f"Permission check failed (/vms/{vmid}, VM.PowerMgmt)", None
        with self._lock:
            guest = self._guests.get(vmid)
            if node in self._down:
                return 595, f"No route to host ({node})", None
            if guest is None or guest["node"] != node or guest["type"] != kind:
                conf = "qemu-server" if kind == "qemu" else "lxc"
                return 500, f"Configuration file 'nodes/{node}/{conf}/{vmid}.conf' does not exist", None
            if action not in ("start", "stop", "shutdown", "reboot", "suspend", "resume"):
                return 501, f"Method 'POST /nodes/{{node}}/{kind}/{{vmid}}/status/{action}' not implemented", None
            if action == "suspend":
                if kind == "qemu":
                    guest["status"] = "paused"
            else:
                guest["status"] = _AFTER[action]
            self._upids += 1
            start = int(time.time())
            upid = (
                f"UPID:{node}:{0x1000 + self._upids:08X}:{0x2000 + self._upids:08X}:{start:08X}:"
                f"{_UPID_TYPES[kind]}{action}:{vmid}:{token}:"
            )
        return 200, "OK", upid


def _handler(fake: FakeProxmox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection, close-delimited bodies possible

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            with fake._lock:
                fake.requests.append((method, self.path))
                failure = fake._failures.pop(0) if fake._failures else None
                garbage = fake._garbage.pop(0) if fake._garbage else None
                huge, fake._huge = fake._huge, None
            if fake._slow:
                fake._stopping.wait(fake._slow)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 65536))
            token = self._token()
            if token is None:
                return self._answer(401, "authentication failure", None)
            fake.authorized.append(token)
            if failure is not None:
                phrases = {401: "authentication failure", 403: "Permission check failed", 500: "Internal error"}
                return self._answer(failure, phrases.get(failure, "Failure"), None)
            if huge is not None:
                return self._huge(*huge)
            if garbage is not None:
                if garbage:
                    return self._answer(200, "OK", {"unexpected": True}, wrap=False)
                return self._raw(200, b"<html><body>Proxy Error</body></html>", "text/html")
            path, _, query = self.path.partition("?")
            if method == "GET" and path == "/api2/json/cluster/resources":
                kind = "vm" if query == "type=vm" else None
                return self._answer(200, "OK", fake._resources(kind, token))
            match = _POWER.fullmatch(path)
            if method == "POST" and match:
                node, kind, vmid, action = match.groups()
                status, phrase, data = fake._power(node, kind, int(vmid), action, token)
                return self._answer(status, phrase, data)
            self._answer(501, f"Method '{method} {path}' not implemented", None)

        def _token(self) -> str | None:
            header = self.headers.get("Authorization") or ""
            for token_id, secret in ((fake.token_id, fake.secret), (fake.audit_token_id, fake.audit_secret)):
                if header == f"PVEAPIToken={token_id}={secret}":
                    return token_id
            return None

        def _answer(self, status: int, phrase: str, data: Any, *, wrap: bool = True) -> None:
            body = json.dumps({"data": data} if wrap else data).encode()
            self._raw(status, body, "application/json;charset=UTF-8", phrase)

        def _raw(self, status: int, body: bytes, content_type: str, phrase: str = "OK") -> None:
            try:
                self.send_response(status, phrase)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fake._drip:
                    for i in range(len(body)):
                        if fake._stopping.wait(fake._drip):
                            return
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                else:
                    self.wfile.write(body)
            except OSError:
                pass  # the client hung up

        def _huge(self, size: int, declare_length: bool) -> None:
            try:
                self.send_response(200, "OK")
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                if declare_length:
                    self.send_header("Content-Length", str(size))
                self.end_headers()
                block = b'{"data":[' + b" " * 65527
                sent = 0
                while sent < size and not fake._stopping.is_set():
                    part = block[: min(len(block), size - sent)]
                    self.wfile.write(part)
                    sent += len(part)
                    with fake._lock:
                        fake.body_bytes_sent = sent
            except OSError:
                pass

    return Handler


@contextmanager
def fake_proxmox(directory: Path, **kwargs: Any) -> Iterator[FakeProxmox]:
    with FakeProxmox(directory, **kwargs) as fake:
        yield fake
