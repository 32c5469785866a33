"""wol.send: wake another machine on the network with a Wake-on-LAN magic packet.

The packet is six 0xFF bytes and then the target's MAC address sixteen times (102 bytes), sent
as one UDP datagram to a broadcast address (port 9 by default, "discard"; some cards listen on 7).
The MAC and the address come from the profile only, never from the command's value, so a press
can wake exactly the machine the profile names and nothing else. The planned call carries the
exact bytes, so dry-run shows the packet that a real press would send.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pilot.actions._base import ActionContext, ActionError, Call
from pilot.params import params, prop
from pilot.registry import ACTIONS

# the lookaheads: `$` also matches before a final "\n"
MAC_PATTERN = r"^(?!.*\n)[0-9A-Fa-f]{2}([:-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$"
_MAC = re.compile(MAC_PATTERN)


def magic_packet(mac: str) -> bytes:
    """The 102-byte magic packet for a MAC written aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabbccddeeff."""
    if not isinstance(mac, str) or not _MAC.fullmatch(mac):
        raise ActionError(f"not a MAC address: {str(mac)[:40]!r} (write it like 00:11:22:aa:bb:cc)")
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    return b"\xff" * 6 + raw * 16


def _address(broadcast: str) -> str:
    try:
        address = ipaddress.IPv4Address(broadcast)
    except (ipaddress.AddressValueError, ValueError):
        raise ActionError(f"not an IPv4 address: {str(broadcast)[:60]!r}") from None
    if address.is_multicast or address.is_unspecified:
        raise ActionError(f"{address} is not an address a magic packet can go to")
    return str(address)


@ACTIONS.register(
    "wol.send",
    params=params(
        {
            "mac": prop(
                "string",
                "MAC address of the machine to wake: 00:11:22:aa:bb:cc, 00-11-22-aa-bb-cc or 001122aabbcc.",
                pattern=MAC_PATTERN,
                **{"x-error": "not a MAC address: write six pairs of hex digits, like 00:11:22:aa:bb:cc"},
            ),
            "broadcast": prop(
                "string",
                "IPv4 address to send to: the LAN's broadcast address (e.g. 192.168.1.255) or 255.255.255.255.",
                pattern=r"^(?!.*\n)((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$",
                default="255.255.255.255",
                **{"x-error": "not an IPv4 address (four numbers from 0 to 255, like 192.168.1.255)"},
            ),
            "port": prop("integer", "UDP port: 9 (discard) or 7 (echo).", minimum=1, maximum=65535, default=9),
        },
        required=("mac",),
        examples=[{"mac": "00:11:22:aa:bb:cc", "broadcast": "192.168.1.255"}],
    ),
    privilege=None,
    platforms=("button",),
)
def send(
    ctx: ActionContext, value: Any = None, *, mac: str, broadcast: str = "255.255.255.255", port: int = 9
) -> list[Call]:
    """Wake a machine on the network with a Wake-on-LAN magic packet."""
    packet = magic_packet(mac)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ActionError(f"port must be a whole number from 1 to 65535, not {str(port)[:20]!r}")
    return [Call(kind="datagram", path=f"{_address(broadcast)}:{port}", data=packet.hex())]
