"""Who is on the other end of a loopback connection: the uid that owns the client's socket.

A console that `pilot console --open` starts for its user hands the browser a one-time sign-in link on the
browser's command line, which every local user can read in /proc. So that link only signs in a browser of
the same user: the console looks the connection up in the kernel's socket tables (/proc/net/tcp and tcp6,
the table identd reads), where the client end's row carries the uid that opened it. Linux only; elsewhere
the answer is None and the caller decides.
"""

from __future__ import annotations

from pathlib import Path

MAX_TABLE = 8 << 20  # bytes read of a socket table: a busy host has tens of thousands of rows, 150 bytes each


def _port(address: str) -> int | None:
    """The port of a `HEXADDR:HEXPORT` field, or None when it is not one."""
    _, sep, port = address.rpartition(":")
    try:
        return int(port, 16) if sep else None
    except ValueError:
        return None


def _v4_loopback(word: str) -> bool:
    """An IPv4 address as the kernel prints it (one 32-bit word in host byte order) in 127.0.0.0/8."""
    return len(word) == 8 and (word.endswith("7F") or word.startswith("7F"))


def _loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 or ::ffff:127.x.y.z, in either byte order."""
    host = address.rpartition(":")[0].upper()
    if len(host) == 8:
        return _v4_loopback(host)
    if len(host) != 32:
        return False
    if host in ("00000000000000000000000001000000", "00000000000000000000000000000001"):
        return True
    return host[:16] == "0" * 16 and host[16:24] in ("FFFF0000", "0000FFFF") and _v4_loopback(host[24:])


def peer_uid(client_port: int, server_port: int, proc: Path = Path("/proc")) -> int | None:
    """The uid owning the loopback socket whose local port is `client_port` and whose remote port is
    `server_port` (the browser's end of a connection to us), or None when no table says."""
    for name in ("tcp", "tcp6"):
        try:
            with open(proc / "net" / name, "rb") as table:
                data = table.read(MAX_TABLE)
        except OSError:
            continue
        for raw in data.decode("ascii", "replace").splitlines()[1:]:
            fields = raw.split()
            if len(fields) < 8:
                continue
            local, remote, uid = fields[1], fields[2], fields[7]
            if _port(local) == client_port and _port(remote) == server_port and _loopback(local) and _loopback(remote):
                return int(uid) if uid.isdigit() else None
    return None
