"""wol.send: the exact magic packet, received by a real UDP socket on 127.0.0.1; bad MACs, addresses
and ports refused by the validator (at their position) and by the action itself."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from pilot.actions import ActionError, Call, System
from pilot.actions._base import RecordingSystem
from pilot.profile.validate import validate_file
from pilot.registry import ACTIONS
from tests.support.files import write

WOL = ACTIONS.get("wol.send")
# written out by hand: six 0xFF, then 00:11:22:aa:bb:cc sixteen times
EXPECTED = bytes.fromhex("ffffffffffff" + "001122aabbcc" * 16)


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)  # a bound on a hang, not a measurement
    yield sock
    sock.close()


@pytest.mark.parametrize("mac", ["00:11:22:aa:bb:cc", "00-11-22-AA-BB-CC", "001122aAbBcC"])
def test_a_real_socket_receives_the_exact_102_byte_packet(listener, make_ctx, mac: str) -> None:
    port = listener.getsockname()[1]
    (call,) = WOL.factory(make_ctx(), "PRESS", mac=mac, broadcast="127.0.0.1", port=port)
    outcome = System().perform(call)
    data, sender = listener.recvfrom(4096)
    assert data == EXPECTED and len(data) == 102
    assert sender[0] == "127.0.0.1"
    assert outcome.output == "sent 102 bytes"


def test_the_planned_call_shows_the_exact_packet_for_dry_run(make_ctx) -> None:
    (call,) = WOL.factory(make_ctx(), None, mac="00:11:22:aa:bb:cc")
    assert call == Call(kind="datagram", path="255.255.255.255:9", data=EXPECTED.hex())
    assert call.describe() == f"send 102 bytes over UDP to 255.255.255.255:9: {EXPECTED.hex()}"
    assert json.loads(json.dumps(call.to_dict())) == {
        "kind": "datagram",
        "path": "255.255.255.255:9",
        "data": EXPECTED.hex(),
    }


def test_a_recording_system_records_the_packet_and_sends_nothing(listener, make_ctx, tmp_path: Path) -> None:
    port = listener.getsockname()[1]
    (call,) = WOL.factory(make_ctx(), None, mac="00:11:22:aa:bb:cc", broadcast="127.0.0.1", port=port)
    record = tmp_path / "calls.jsonl"
    assert RecordingSystem(str(record)).perform(call).output == "recorded"
    assert json.loads(record.read_text()) == {"kind": "datagram", "path": f"127.0.0.1:{port}", "data": EXPECTED.hex()}
    # a marker sent afterwards is the first datagram the socket sees: the recording sent nothing
    System().perform(Call(kind="datagram", path=f"127.0.0.1:{port}", data="6d61726b6572"))
    assert listener.recvfrom(4096)[0] == b"marker"


def test_a_send_the_kernel_refuses_is_an_action_error_not_a_traceback() -> None:
    with pytest.raises(ActionError, match=r"^cannot send to 127\.0\.0\.1:0: "):
        System().perform(Call(kind="datagram", path="127.0.0.1:0", data=EXPECTED.hex()))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"mac": "00:11:22:aa:bb"}, "not a MAC address"),
        ({"mac": "00:11:22:aa:bb:cc:dd"}, "not a MAC address"),
        ({"mac": "00:11-22:aa:bb:cc"}, "not a MAC address"),  # mixed separators
        ({"mac": "zz:11:22:aa:bb:cc"}, "not a MAC address"),
        ({"mac": "00:11:22:aa:bb:cc\n"}, "not a MAC address"),
        ({"mac": 1122}, "not a MAC address"),
        ({"mac": "00:11:22:aa:bb:cc", "broadcast": "256.1.1.1"}, "not an IPv4 address"),
        ({"mac": "00:11:22:aa:bb:cc", "broadcast": "ff02::1"}, "not an IPv4 address"),
        ({"mac": "00:11:22:aa:bb:cc", "broadcast": "224.0.0.1"}, "is not an address a magic packet can go to"),
        ({"mac": "00:11:22:aa:bb:cc", "broadcast": "0.0.0.0"}, "is not an address a magic packet can go to"),
        ({"mac": "00:11:22:aa:bb:cc", "port": 0}, "port must be"),
        ({"mac": "00:11:22:aa:bb:cc", "port": 65536}, "port must be"),
        ({"mac": "00:11:22:aa:bb:cc", "port": True}, "port must be"),
        ({"mac": "00:11:22:aa:bb:cc", "port": "9"}, "port must be"),
    ],
)
def test_the_action_refuses_what_it_cannot_send(make_ctx, args: dict, message: str) -> None:
    with pytest.raises(ActionError, match=message):
        WOL.factory(make_ctx(), None, **args)


PROFILE = """\
pilot: 1
device: {{name: Waker}}
commands:
  wake_nas: {{action: wol.send, args: {args}}}
"""


def test_a_profile_with_a_good_mac_validates(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", PROFILE.format(args='{mac: "00:11:22:aa:bb:cc", broadcast: 192.168.1.255}'))
    assert validate_file(path)[1] == []


@pytest.mark.parametrize(
    ("args", "token", "message"),
    [
        ('{mac: "00:11:22:aa:bb"}', '"00', "not a MAC address: write six pairs of hex digits, like 00:11:22:aa:bb:cc"),
        (
            '{mac: "00:11:22:aa:bb:cc", broadcast: 192.168.1.256}',
            "192",
            "not an IPv4 address (four numbers from 0 to 255, like 192.168.1.255)",
        ),
        (
            '{mac: "00:11:22:aa:bb:cc\\n"}',
            '"00',
            "not a MAC address: write six pairs of hex digits, like 00:11:22:aa:bb:cc",
        ),
        (
            '{mac: "00:11:22:aa:bb:cc", broadcast: "10.0.0.255\\n"}',
            '"10',
            "not an IPv4 address (four numbers from 0 to 255, like 192.168.1.255)",
        ),
        ('{mac: "00:11:22:aa:bb:cc", port: 0}', "0}", "0 is out of range: must be at least 1"),
        ('{mac: "00:11:22:aa:bb:cc", host: x}', "host", "unknown key 'host'; allowed here: broadcast, mac, port"),
    ],
)
def test_the_validator_refuses_bad_arguments_at_their_position(
    tmp_path: Path, args: str, token: str, message: str
) -> None:
    text = PROFILE.format(args=args)
    path = write(tmp_path, "p.yaml", text)
    column = text.splitlines()[3].index(token) + 1
    assert [(d.line, d.col, d.message) for d in validate_file(path)[1]] == [(4, column, message)]


def test_the_validator_wants_a_mac(tmp_path: Path) -> None:
    (diag,) = validate_file(write(tmp_path, "p.yaml", PROFILE.format(args="{}")))[1]
    assert diag.line == 4 and "mac" in diag.message
