"""Talking to Proxmox VE: the guests of a cluster, and their power actions.

Stdlib only (http.client, ssl, json) rather than proxmoxer: proxmoxer pulls in requests, cannot pin a
certificate fingerprint *before* the token is sent (requests sends the request in the same call that
verifies), and reads whatever body the server sends, with no bound on its size. Here a call is one TLS
connection: connect, verify (system CAs, `ca_file`, or the pinned SHA-256 of the server's certificate,
compared before a single byte of the request leaves), send, read at most `MAX_BODY` bytes, all within one
deadline (`timeout`, for the whole call, not per read).

On the Proxmox host itself (`url` None) the client runs the local `pvesh` instead: an argv, no shell, a
cleared environment, the same deadline and output cap, and the same parsing.

What is read, from `GET /cluster/resources?type=vm` (the Proxmox VE API reference, "Resources index
(cluster wide)"). Only `id` and `type` are always present; everything else is optional and Proxmox omits
what it does not know (a guest on a node that is down comes with id, type, vmid, node and status
"unknown" only, without even its name):

    type      "qemu" | "lxc" (other types in the list are ignored)
    vmid      integer, the guest's identity across renames and migrations
    node      the node the guest is on now (pattern [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)
    name      string                           status  string ("running", "stopped", "paused", "unknown"...)
    template  boolean (Perl sends 0/1)         tags    string, separated by ";" (also "," and spaces)
    cpu       number, utilisation 0..1 of all of the guest's CPUs
    maxcpu    number of CPUs ("number", not integer: a container's cpulimit can be 0.5)
    mem maxmem disk maxdisk                     integers, bytes
    diskread diskwrite netin netout             integers, bytes since the guest started
    uptime    integer, seconds                  hastate lock   strings, only when set

Numbers are accepted as JSON numbers or as decimal strings and booleans as true/false, 0/1 or "0"/"1",
as Proxmox's own typed client accepts them (Perl may serialise a number as a string). A missing number
reads 0, a missing name "", a missing status "unknown".

A malformed entry (a field of the wrong type, a vmid out of range, a node name that is not one, a
duplicate vmid) is skipped, counted in `PveClient.skipped` with the field it failed on, and logged once per
poll; the other guests are still returned. Losing every guest's device because one entry is odd would be
worse than missing one. A body that is not `{"data": [...]}` at all fails the whole call as `bad_response`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("pilot.sources.pve")

MAX_BODY = 16 * 1024 * 1024  # a cluster of thousands of guests is a few MB
MAX_ENTRIES = 100_000  # resources listed in one answer (guests, nodes, storages): far above any cluster
POWER_ACTIONS = ("start", "shutdown", "stop", "reboot", "suspend", "resume")
KINDS = ("qemu", "lxc")
VMID_MIN, VMID_MAX = 100, 999_999_999  # Proxmox's pve-vmid
REASONS = ("unreachable", "timeout", "tls", "unauthorized", "forbidden", "not_found", "server_error")
REASONS += ("bad_response", "pvesh")

_NODE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TOKEN_ID = re.compile(r"[^\s:/@!=]+@[A-Za-z][A-Za-z0-9._-]*![A-Za-z][A-Za-z0-9._-]*")
_SECRET = re.compile(r"[!-~]{1,256}")  # printable ASCII, no space: nothing that could break the header
_UPID = re.compile(r"UPID:[!-~]{1,500}")
_TAG_SPLIT = re.compile(r"[;,\s]+")
_PVESH_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_DETAIL_MAX = 200


class PveError(Exception):
    """The call failed. `reason` is one of REASONS; `detail` is one line safe to log (bounded, no secret)."""

    def __init__(self, reason: str, detail: str) -> None:
        detail = _line(detail)
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class PveTarget:
    """Where the guests are. `url` None: the local `pvesh` (Pilot runs on the Proxmox host itself)."""

    url: str | None  # "https://pve.lan:8006"
    token_id: str | None = None  # USER@REALM!TOKENID
    token_file: str | None = None  # holds the token's secret; read at each call, never logged
    ca_file: str | None = None  # verify against this CA instead of the system's
    fingerprint: str | None = None  # SHA-256 of the server's certificate, "AB:CD:..." as Proxmox shows it
    insecure: bool = False  # no verification at all; only when written explicitly
    timeout: float = 10.0  # the whole call


@dataclass(frozen=True)
class Guest:
    """One VM or container as `/cluster/resources` reports it."""

    vmid: int
    name: str
    node: str
    kind: str  # "qemu" | "lxc"
    status: str
    template: bool
    cpu: float
    maxcpu: float
    mem: int
    maxmem: int
    disk: int
    maxdisk: int
    diskread: int
    diskwrite: int
    netin: int
    netout: int
    uptime: int
    tags: tuple[str, ...]
    hastate: str | None
    lock: str | None


class PveClient:
    """One Proxmox VE cluster (or the local host through `pvesh`). Raises ValueError at construction for a
    target that cannot be right (not https, a malformed token id or fingerprint); PveError at each call."""

    def __init__(self, target: PveTarget, *, pvesh: str = "pvesh", max_body: int = MAX_BODY) -> None:
        self.target = target
        self.max_body = max_body
        self.skipped: list[str] = []  # the first three of the last poll's malformed entries: "vmid 101: mem"
        self.skipped_count = 0  # and how many there were
        self._pvesh = pvesh
        if target.timeout <= 0 or not math.isfinite(target.timeout):
            raise ValueError("timeout must be a positive number of seconds")
        if target.url is None:
            return
        parts = urlsplit(target.url)
        if parts.scheme != "https":
            raise ValueError(f"Proxmox URL must be https://: {_line(target.url)}")
        if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ValueError("Proxmox URL is scheme, host and port only (https://pve.lan:8006)")
        if not parts.hostname:
            raise ValueError("Proxmox URL has no host")
        self._host = parts.hostname
        self._port = parts.port or 8006
        self._base = f"https://{parts.netloc}"
        if not target.token_id or not _TOKEN_ID.fullmatch(target.token_id):
            raise ValueError("token_id must be USER@REALM!TOKENID")
        if not target.token_file:
            raise ValueError("token_file is required with a URL")
        self._pin: bytes | None = None
        if target.fingerprint is not None:
            hexed = target.fingerprint.replace(":", "").strip().lower()
            if not re.fullmatch(r"[0-9a-f]{64}", hexed):
                raise ValueError("fingerprint must be a SHA-256: 32 bytes in hex, colons allowed")
            self._pin = bytes.fromhex(hexed)
        self._context = _tls_context(target)

    # -- the two calls ----------------------------------------------------------------------------------

    def guests(self) -> list[Guest]:
        """Every VM and container of the cluster, templates included (flagged), in one request."""
        if self.target.url is None:
            data = self._pvesh_json(["get", "/cluster/resources", "--type", "vm", "--output-format", "json"])
        else:
            data = self._http("GET", "/api2/json/cluster/resources?type=vm")
        if not isinstance(data, list):
            raise PveError("bad_response", f"/cluster/resources: data is {type(data).__name__}, not a list")
        return self._parse_guests(data)

    def power(self, node: str, kind: str, vmid: int, action: str) -> str:
        """Start, shut down, stop, reboot, suspend or resume one guest; returns the task's UPID (the task
        runs on in Proxmox: the guest's status changes later, seen by the next poll)."""
        path = _power_path(node, kind, vmid, action)
        if self.target.url is None:
            data = self._pvesh_json(["create", path, "--output-format", "json"])
        else:
            data = self._http("POST", "/api2/json" + path)
        if not isinstance(data, str) or not _UPID.fullmatch(data):
            raise PveError("bad_response", f"{action}: the answer is not a task id (UPID)")
        return data

    def describe_power(self, node: str, kind: str, vmid: int, action: str) -> str:
        """What `power` would do, for a dry run: the method and URL (or the pvesh argv), never the token."""
        path = _power_path(node, kind, vmid, action)
        if self.target.url is None:
            return f"{self._pvesh} create {path}"
        return f"POST {self._base}/api2/json{path}"

    # -- parsing ----------------------------------------------------------------------------------------

    def _parse_guests(self, entries: list[Any]) -> list[Guest]:
        if len(entries) > MAX_ENTRIES:
            raise PveError("bad_response", f"{len(entries)} entries: more than {MAX_ENTRIES} guests is not a cluster")
        guests: list[Guest] = []
        seen: set[int] = set()
        skipped: list[str] = []
        count = 0

        def skip(label: str) -> None:  # the first few named, the rest counted: a hostile list costs nothing
            nonlocal count
            count += 1
            if len(skipped) < 3:
                skipped.append(label)

        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                skip(f"entry {index}: not an object")
                continue
            if entry.get("type") not in KINDS:
                continue  # a node, a storage, an openvz guest of old: not ours
            try:
                guest = _guest(entry)
            except _Malformed as exc:
                label = entry.get("vmid", entry.get("id", index))
                skip(_line(f"vmid {label}: {exc}", 100))
                continue
            if guest.vmid in seen:
                skip(f"vmid {guest.vmid}: listed twice")
                continue
            seen.add(guest.vmid)
            guests.append(guest)
        self.skipped = skipped
        self.skipped_count = count
        if count:
            log.warning(
                "Proxmox: skipped %d malformed guest entr%s (%s)",
                count,
                "y" if count == 1 else "ies",
                "; ".join(skipped),
            )
        return guests

    # -- HTTPS ------------------------------------------------------------------------------------------

    def _secret(self) -> str:
        try:
            with open(self.target.token_file or "", encoding="utf-8") as handle:
                secret = handle.read(4096).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise PveError("unauthorized", f"cannot read the token file: {type(exc).__name__}") from None
        if not _SECRET.fullmatch(secret):
            raise PveError("unauthorized", "the token file does not hold one token secret")
        return secret

    def _http(self, method: str, path: str) -> Any:
        secret = self._secret()
        try:
            return self._exchange(method, path, secret)
        except PveError as exc:
            if secret in exc.detail:  # a server echoing it back in a reason phrase: still never logged
                raise PveError(exc.reason, exc.detail.replace(secret, "***")) from None
            raise

    def _exchange(self, method: str, path: str, secret: str) -> Any:
        timeout = self.target.timeout
        deadline = time.monotonic() + timeout
        raw: list[socket.socket] = []
        fired = threading.Event()

        def abort() -> None:  # the whole-call deadline: unblocks any read, however slowly the server drips
            fired.set()
            for sock in raw:
                try:  # the plain socket's shutdown: SSLSocket.shutdown would drop its TLS state under a reader
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(timeout, abort)
        timer.daemon = True
        timer.start()
        conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._context)
        try:
            try:
                sock = socket.create_connection((self._host, self._port), timeout=timeout)
                raw.append(sock)
                if fired.is_set():
                    raise TimeoutError
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                conn.sock = self._context.wrap_socket(sock, server_hostname=self._host)
                raw[:] = [conn.sock]  # wrapping took over the descriptor: abort through the TLS socket now
                if fired.is_set():
                    raise TimeoutError
                self._check_pin(conn.sock)
                conn.putrequest(method, path, skip_accept_encoding=True)
                conn.putheader("Authorization", f"PVEAPIToken={self.target.token_id}={secret}")
                conn.putheader("Accept", "application/json")
                if method == "POST":
                    conn.putheader("Content-Length", "0")
                conn.endheaders()
                response = conn.getresponse()
                body = self._read(response, path)
                if fired.is_set():  # the abort can look like a short body rather than an error
                    raise TimeoutError
            except PveError:
                raise
            except ssl.SSLCertVerificationError as exc:
                raise PveError("tls", f"certificate not trusted: {exc.verify_message}") from None
            except ssl.SSLError as exc:
                if fired.is_set():
                    raise PveError("timeout", f"no complete answer within {timeout:g} s") from None
                raise PveError("tls", f"TLS failed: {exc.reason or type(exc).__name__}") from None
            except TimeoutError:
                raise PveError("timeout", f"no complete answer within {timeout:g} s") from None
            except (http.client.HTTPException, OSError) as exc:
                if fired.is_set():
                    raise PveError("timeout", f"no complete answer within {timeout:g} s") from None
                if isinstance(exc, http.client.HTTPException):
                    raise PveError("bad_response", f"not HTTP: {type(exc).__name__}") from None
                if conn.sock is None:
                    raise PveError("unreachable", f"{self._host}:{self._port}: {_oserror(exc)}") from None
                raise PveError("unreachable", f"connection lost: {_oserror(exc)}") from None
        finally:
            timer.cancel()
            conn.close()
            for sock in raw:
                sock.close()
        return _decode_json(body, path.split("?")[0])

    def _check_pin(self, sock: ssl.SSLSocket) -> None:
        if self._pin is None:
            return
        der = sock.getpeercert(binary_form=True) or b""
        if not hmac.compare_digest(hashlib.sha256(der).digest(), self._pin):
            seen = hashlib.sha256(der).hexdigest().upper()
            shown = ":".join(seen[i : i + 2] for i in range(0, 64, 2))
            raise PveError("tls", f"certificate fingerprint {shown} is not the pinned one; nothing was sent")

    def _read(self, response: http.client.HTTPResponse, path: str) -> bytes:
        status, phrase = response.status, _line(response.reason or "", 120)
        if status != 200:
            where = path.split("?")[0]
            if status == 401:
                raise PveError("unauthorized", f"{status} {phrase} ({where})")
            if status == 403:
                raise PveError("forbidden", f"{status} {phrase} ({where})")
            if status == 404:
                raise PveError("not_found", f"{status} {phrase} ({where})")
            if status >= 500:
                raise PveError("server_error", f"{status} {phrase} ({where})")
            raise PveError("bad_response", f"{status} {phrase} ({where})")
        length = response.getheader("Content-Length")
        if length is not None and (not re.fullmatch(r"[0-9]{1,12}", length.strip()) or int(length) > self.max_body):
            raise PveError("bad_response", f"answer of {_line(length, 20)} bytes, over {self.max_body}")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = response.read(65536)
            if not chunk:
                break
            total += len(chunk)
            if total > self.max_body:
                raise PveError("bad_response", f"answer over {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- pvesh ------------------------------------------------------------------------------------------

    def _pvesh_json(self, args: list[str]) -> Any:
        out = _run(
            [self._pvesh, *args],
            timeout=self.target.timeout,
            cap=self.max_body,
        )
        text = out.strip()
        if args[0] == "create" and text.startswith(b"UPID:") and b"\n" not in text:
            text = json.dumps(text.decode("ascii", "replace")).encode()  # some versions print it bare
        return _decode_json(text, f"pvesh {args[1]}")


class _Malformed(Exception):
    """One guest entry cannot be read; the message names the field."""


def _guest(entry: dict[str, Any]) -> Guest:
    vmid = _int(entry, "vmid", required=True)
    if not VMID_MIN <= vmid <= VMID_MAX:
        raise _Malformed("vmid out of range")
    node = _str(entry, "node", required=True)
    if not _NODE.fullmatch(node):
        raise _Malformed("node")
    tags = _str(entry, "tags")
    return Guest(
        vmid=vmid,
        name=_str(entry, "name"),
        node=node,
        kind=entry["type"],
        status=_str(entry, "status") or "unknown",
        template=_bool(entry, "template"),
        cpu=_float(entry, "cpu"),
        maxcpu=_float(entry, "maxcpu"),
        mem=_int(entry, "mem"),
        maxmem=_int(entry, "maxmem"),
        disk=_int(entry, "disk"),
        maxdisk=_int(entry, "maxdisk"),
        diskread=_int(entry, "diskread"),
        diskwrite=_int(entry, "diskwrite"),
        netin=_int(entry, "netin"),
        netout=_int(entry, "netout"),
        uptime=_int(entry, "uptime"),
        tags=tuple(t for t in _TAG_SPLIT.split(tags) if t),
        hastate=_str(entry, "hastate") or None,
        lock=_str(entry, "lock") or None,
    )


def _int(entry: dict[str, Any], key: str, *, required: bool = False) -> int:
    value = entry.get(key)
    if value is None and not required:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
        return value  # a 400-digit "integer" is no byte count: it would overflow float arithmetic later
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value):
        return int(value)
    raise _Malformed(key)


def _float(entry: dict[str, Any], key: str) -> float:
    value = entry.get(key)
    if value is None:
        return 0.0
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}(\.[0-9]{1,19})?", value):
        return float(value)
    raise _Malformed(key)


def _bool(entry: dict[str, Any], key: str) -> bool:
    value = entry.get(key)
    if value is None:
        return False
    if value in (True, False, 0, 1, "0", "1") and not isinstance(value, float):
        return value in (True, 1, "1")
    raise _Malformed(key)


def _str(entry: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = entry.get(key)
    if value is None and not required:
        return ""
    if isinstance(value, str) and len(value) <= 255 and value.isprintable():
        return value
    raise _Malformed(key)


def _power_path(node: str, kind: str, vmid: int, action: str) -> str:
    """The one place a power path is built: every part checked, so nothing from the network or a profile
    can change which endpoint is called."""
    if not isinstance(node, str) or not _NODE.fullmatch(node):
        raise ValueError(f"not a Proxmox node name: {_line(repr(node), 80)}")
    if kind not in KINDS:
        raise ValueError(f"kind must be qemu or lxc, not {_line(repr(kind), 80)}")
    if not isinstance(vmid, int) or isinstance(vmid, bool) or not VMID_MIN <= vmid <= VMID_MAX:
        raise ValueError(f"not a vmid: {_line(repr(vmid), 80)}")
    if action not in POWER_ACTIONS:
        raise ValueError(f"not a power action: {_line(repr(action), 80)} (one of {', '.join(POWER_ACTIONS)})")
    return f"/nodes/{node}/{kind}/{vmid}/status/{action}"


def _tls_context(target: PveTarget) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if target.fingerprint is not None or target.insecure:
        # A pin replaces the CA check (Proxmox's own certificates are self-signed); `_check_pin` compares
        # the certificate before anything is sent. `insecure` alone trusts whatever answers.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif target.ca_file:
        context.load_verify_locations(cafile=target.ca_file)
    else:
        context.load_default_certs()
    return context


def _decode_json(body: bytes, where: str) -> Any:
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PveError("bad_response", f"{where}: not JSON") from None
    if where.startswith("pvesh"):
        return document  # pvesh prints the data itself, not wrapped
    if not isinstance(document, dict) or "data" not in document:
        raise PveError("bad_response", f"{where}: no 'data' in the answer")
    return document["data"]


def _run(argv: list[str], *, timeout: float, cap: int) -> bytes:
    """Run argv (no shell, a cleared environment, its own session) within `timeout`, keeping at most `cap`
    bytes of its output."""
    import selectors
    import signal
    import subprocess

    env = {"PATH": _PVESH_PATH, "LC_ALL": "C.UTF-8"}
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise PveError("pvesh", f"cannot run {os.path.basename(argv[0])}: {_oserror(exc)}") from None
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    failure: PveError | None = None
    with selectors.DefaultSelector() as selector:
        assert proc.stdout is not None and proc.stderr is not None
        selector.register(proc.stdout, selectors.EVENT_READ, out)
        selector.register(proc.stderr, selectors.EVENT_READ, err)
        while selector.get_map() and failure is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = PveError("timeout", f"pvesh gave no complete answer within {timeout:g} s")
                break
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if key.data is out and len(out) > cap:
                    failure = PveError("bad_response", f"pvesh printed over {cap} bytes")
                elif key.data is err and len(err) > 8192:
                    del err[:-4096]
    if failure is None:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired:
            failure = PveError("timeout", f"pvesh did not exit within {timeout:g} s")
    if failure is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole session: a grandchild may hold the pipe
        except OSError:
            pass
        proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    if failure is not None:
        raise failure
    if proc.returncode != 0:
        last = bytes(err).decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise PveError("pvesh", f"pvesh exited with {proc.returncode}: {last[0]}")
    return bytes(out)


def _oserror(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _line(text: str, limit: int = _DETAIL_MAX) -> str:
    """One printable line of at most `limit` characters."""
    flat = "".join(c if c.isprintable() else " " for c in str(text))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
