"""The client end's uid of a loopback connection, from tables in the format of /proc/net/tcp and tcp6
(proc(5): hexadecimal address words in the host's byte order, the port in hex, the uid in the 8th field)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from pilot.console.localpeer import MAX_TABLE, peer_uid

HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
# 8470 is 2116 in hex, 50000 is C350
ROWS = [
    "   0: 0100007F:2116 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n",  # listener
    "   1: 0100007F:2116 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n",  # our end
    "   2: 0100007F:C350 0100007F:2116 01 00000000:00000000 00:00000000 00000000  1000        0 3 1\n",  # client
]


def table(tmp_path: Path, tcp: list[str], tcp6: list[str] | None = None) -> Path:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(HEAD + "".join(tcp))
    if tcp6 is not None:
        (tmp_path / "net" / "tcp6").write_text(HEAD + "".join(tcp6))
    return tmp_path


def test_the_client_ends_row_names_its_uid(tmp_path):
    assert peer_uid(50000, 8470, table(tmp_path, ROWS)) == 1000


def test_our_own_end_of_the_same_connection_is_not_taken_for_the_client(tmp_path):
    assert peer_uid(50000, 8470, table(tmp_path, ROWS[:2])) is None


def test_big_endian_hosts_print_the_address_the_other_way_round(tmp_path):
    row = "   2: 7F000001:C350 7F000001:2116 01 00000000:00000000 00:00000000 00000000  1001        0 3 1\n"
    assert peer_uid(50000, 8470, table(tmp_path, [row])) == 1001


def test_a_connection_from_another_host_is_nobodys(tmp_path):
    row = "   2: 0A00000A:C350 0100007F:2116 01 00000000:00000000 00:00000000 00000000  1000        0 3 1\n"
    assert peer_uid(50000, 8470, table(tmp_path, [row])) is None


def test_ipv6_loopback_and_v4_mapped_rows(tmp_path):
    v6 = "   0: 00000000000000000000000001000000:C350 00000000000000000000000001000000:2116 01 0:0 0:0 0 1002 0 4 1\n"
    mapped = (
        "   1: 0000000000000000FFFF00000100007F:C351 0000000000000000FFFF00000100007F:2116 01 0:0 0:0 0 1003 0 5 1\n"
    )
    proc = table(tmp_path, [], [v6, mapped])
    assert peer_uid(50000, 8470, proc) == 1002
    assert peer_uid(50001, 8470, proc) == 1003


@pytest.mark.parametrize("row", ["garbage\n", "   2: 0100007F:ZZZZ 0100007F:2116 01 x x x x\n", "\x00\xff" * 40 + "\n"])
def test_rows_that_are_not_rows_are_skipped(tmp_path, row):
    assert peer_uid(50000, 8470, table(tmp_path, [row, *ROWS])) == 1000


def test_no_table_is_no_answer(tmp_path):
    assert peer_uid(50000, 8470, tmp_path) is None


def test_this_hosts_real_table_knows_a_connection_this_process_made():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            accepted, _ = server.accept()
            with accepted:
                assert peer_uid(client.getsockname()[1], server.getsockname()[1]) == os.getuid()


def test_bytes_that_are_not_text_are_skipped(tmp_path):
    proc = table(tmp_path, [])
    (proc / "net" / "tcp").write_bytes(HEAD.encode() + b"   9: \xff\xfe\x00:C350 \xc3(:2116 01\n" + ROWS[2].encode())
    assert peer_uid(50000, 8470, proc) == 1000


def test_a_uid_that_is_not_a_number_is_no_answer(tmp_path):
    assert peer_uid(50000, 8470, table(tmp_path, [ROWS[2].replace("  1000 ", " -1000 ")])) is None


def test_a_table_is_read_only_up_to_its_cap(tmp_path):
    filler = "   7: 0A00000A:0001 0A00000A:0002 01 00000000:00000000 00:00000000 00000000     0        0 7 1\n"
    rows = [filler] * (MAX_TABLE // len(filler) + 1)
    assert peer_uid(50000, 8470, table(tmp_path, [*rows, ROWS[2]])) is None  # the client's row lies past the cap
    (tmp_path / "small").mkdir()
    assert peer_uid(50000, 8470, table(tmp_path / "small", [*rows[:10], ROWS[2]])) == 1000
