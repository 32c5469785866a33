"""The Proxmox VE client against an in-process fake Proxmox API (testkit/proxmox.py) and a pvesh stand-in."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from pilot.sources import pve
from pilot.sources.pve import Guest, PveClient, PveError, PveTarget
from testkit import pki
from testkit.proxmox import FakeProxmox

PVESH = Path(__file__).resolve().parents[2] / "fixtures" / "pvesh" / "pvesh"


def client(fake: FakeProxmox, **overrides) -> PveClient:
    target = dict(url=fake.url, token_id=fake.token_id, token_file=str(fake.token_file), ca_file=fake.ca_file)
    target.update(overrides)
    max_body = target.pop("max_body", pve.MAX_BODY)
    return PveClient(PveTarget(**target), max_body=max_body)


def reason(call) -> str:
    with pytest.raises(PveError) as caught:
        call()
    return caught.value.reason


# -- reading guests ----------------------------------------------------------------------------------------


def test_guests_are_parsed_field_by_field_and_templates_flagged(fake):
    fake.add_guest(
        100, "web", node="pve1", status="running", tags="prod;web, dmz", hastate="started",
        cpu=0.25, maxcpu=4, mem=2147483648, maxmem=4294967296, disk=1000, maxdisk=34359738368,
        diskread=111, diskwrite=222, netin=333, netout=444, uptime=86400,
    )  # fmt: skip
    fake.add_guest(101, "dns", node="pve2", kind="lxc", status="stopped", maxcpu=0.5, maxmem=536870912)
    fake.add_guest(9000, "tmpl", status="stopped", template=True, lock="backup")
    guests = client(fake).guests()
    assert guests == [
        Guest(
            vmid=100, name="web", node="pve1", kind="qemu", status="running", template=False, cpu=0.25,
            maxcpu=4.0, mem=2147483648, maxmem=4294967296, disk=1000, maxdisk=34359738368, diskread=111,
            diskwrite=222, netin=333, netout=444, uptime=86400, tags=("prod", "web", "dmz"), hastate="started",
            lock=None,
        ),
        Guest(
            vmid=101, name="dns", node="pve2", kind="lxc", status="stopped", template=False, cpu=0.0,
            maxcpu=0.5, mem=0, maxmem=536870912, disk=0, maxdisk=0, diskread=0, diskwrite=0, netin=0,
            netout=0, uptime=0, tags=(), hastate=None, lock=None,
        ),
        Guest(
            vmid=9000, name="tmpl", node="pve1", kind="qemu", status="stopped", template=True, cpu=0.0,
            maxcpu=1.0, mem=0, maxmem=0, disk=0, maxdisk=0, diskread=0, diskwrite=0, netin=0, netout=0,
            uptime=0, tags=(), hastate=None, lock="backup",
        ),
    ]  # fmt: skip


def test_one_get_of_cluster_resources_type_vm_with_the_exact_token(fake):
    fake.add_guest(100, "web")
    client(fake).guests()
    assert fake.requests == [("GET", "/api2/json/cluster/resources?type=vm")]
    # the fake accepts only the exact header "PVEAPIToken=root@pam!pilot=<secret>" (the file's newline stripped)
    assert fake.authorized == ["root@pam!pilot"]


def test_rename_and_migration_keep_the_vmid_and_report_the_new_name_and_node(fake):
    fake.add_guest(100, "web", node="pve1")
    pve_client = client(fake)
    fake.rename(100, "www")
    fake.migrate(100, "pve3")
    [guest] = pve_client.guests()
    assert (guest.vmid, guest.name, guest.node) == (100, "www", "pve3")


def test_a_guest_on_a_node_that_is_down_reads_unknown_with_zero_figures(fake):
    fake.add_guest(100, "web", node="pve1", mem=5, uptime=9)
    fake.add_guest(101, "db", node="pve2", mem=7)
    fake.node_down("pve1")
    first, second = client(fake).guests()
    assert (first.vmid, first.status, first.name, first.mem, first.uptime) == (100, "unknown", "", 0, 0)
    assert (second.vmid, second.status, second.mem) == (101, "running", 7)


def test_removed_guests_are_gone_from_the_next_poll(fake):
    fake.add_guest(100, "web")
    fake.add_guest(101, "db")
    pve_client = client(fake)
    assert [g.vmid for g in pve_client.guests()] == [100, 101]
    fake.remove_guest(100)
    assert [g.vmid for g in pve_client.guests()] == [101]


def test_entries_of_other_types_are_ignored_without_counting_as_malformed(fake):
    fake.add_guest(100, "web")
    fake.add_entry({"id": "node/pve1", "type": "node", "node": "pve1", "status": "online"})
    fake.add_entry({"id": "openvz/50", "type": "openvz", "vmid": 50, "node": "pve1"})
    pve_client = client(fake)
    assert [g.vmid for g in pve_client.guests()] == [100]
    assert pve_client.skipped == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mem", "lots"),
        ("cpu", True),
        ("vmid", 99),
        ("node", "../etc"),
        ("template", 2),
        ("name", ["x"]),
        ("uptime", 10**400),  # a JSON integer no counter can be: it would overflow float arithmetic later
        ("cpu", 10**400),
    ],
)
def test_a_malformed_guest_is_skipped_and_named_while_the_others_are_kept(fake, key, value):
    fake.add_guest(100, "web")
    fake.add_guest(101, "db")
    fake.set_field(101, key, value)
    pve_client = client(fake)
    assert [g.vmid for g in pve_client.guests()] == [100]
    assert len(pve_client.skipped) == 1
    assert pve_client.skipped[0].endswith(key if key != "vmid" else "vmid out of range")


def test_numbers_sent_as_strings_and_booleans_as_strings_are_read_as_proxmox_sends_them(fake):
    fake.add_guest(100, "web")
    fake.set_field(100, "mem", "1024")
    fake.set_field(100, "cpu", "0.5")
    fake.set_field(100, "template", "1")
    [guest] = client(fake).guests()
    assert (guest.mem, guest.cpu, guest.template) == (1024, 0.5, True)


def test_a_vmid_listed_twice_is_kept_once(fake):
    fake.add_guest(100, "web")
    fake.add_entry({"id": "qemu/100", "type": "qemu", "vmid": 100, "node": "pve2", "name": "twin"})
    pve_client = client(fake)
    assert [(g.vmid, g.name) for g in pve_client.guests()] == [(100, "web")]
    assert pve_client.skipped == ["vmid 100: listed twice"]


# -- failures ------------------------------------------------------------------------------------------------


def test_a_wrong_token_is_unauthorized(fake, tmp_path):
    wrong = tmp_path / "token"
    wrong.write_text("00000000-0000-0000-0000-000000000000\n")
    assert reason(client(fake, token_file=str(wrong)).guests) == "unauthorized"
    assert fake.authorized == []


def test_an_unreadable_token_file_is_unauthorized_and_nothing_is_sent(fake, tmp_path):
    assert reason(client(fake, token_file=str(tmp_path / "missing")).guests) == "unauthorized"
    assert fake.requests == []


@pytest.mark.parametrize(("status", "expected"), [(401, "unauthorized"), (403, "forbidden"), (500, "server_error")])
def test_http_statuses_map_to_reasons(fake, status, expected):
    fake.fail(status)
    with pytest.raises(PveError) as caught:
        client(fake).guests()
    assert caught.value.reason == expected
    assert caught.value.detail.startswith(f"{status} ")
    assert fake.secret not in caught.value.detail


def test_an_unknown_path_is_a_server_error_like_proxmox_501(fake):
    with pytest.raises(PveError) as caught:
        client(fake)._http("GET", "/api2/json/nowhere")
    assert (caught.value.reason, caught.value.detail[:4]) == ("server_error", "501 ")


@pytest.mark.parametrize("shape", [False, True])
def test_garbage_is_a_bad_response(fake, shape):
    fake.garbage(shape=shape)
    assert reason(client(fake).guests) == "bad_response"


def test_data_that_is_not_a_list_is_a_bad_response(fake):
    fake.add_entry({"id": "qemu/100"})
    pve_client = client(fake)
    pve_client._http = lambda method, path: {"not": "a list"}
    assert reason(pve_client.guests) == "bad_response"


@pytest.mark.parametrize("declare_length", [True, False])
def test_an_oversized_answer_is_refused_without_reading_it_all(fake, declare_length):
    size = 64 * 1024 * 1024
    fake.huge(size, declare_length=declare_length)
    assert reason(client(fake, max_body=1024 * 1024).guests) == "bad_response"
    # the client hung up: the server could send no more than the cap plus what the socket buffers hold
    assert fake.body_bytes_sent < size // 2


def test_the_default_body_cap_is_16_mib():
    assert pve.MAX_BODY == 16 * 1024 * 1024


def test_an_answer_slower_than_the_timeout_is_a_timeout(fake):
    fake.slow(5)
    assert reason(client(fake, timeout=0.5).guests) == "timeout"


def test_the_deadline_covers_the_whole_call_not_each_read(fake):
    fake.add_guest(100, "web")
    fake.drip(0.05)  # a byte every 50 ms: each read is quick, the whole answer takes seconds
    assert reason(client(fake, timeout=0.5).guests) == "timeout"


def test_a_closed_port_is_unreachable(fake):
    from testkit.broker import free_port

    assert reason(client(fake, url=f"https://127.0.0.1:{free_port()}").guests) == "unreachable"


# -- TLS -----------------------------------------------------------------------------------------------------


def test_an_unknown_ca_is_a_tls_error_and_nothing_is_sent(fake, tmp_path):
    pki.make_ca(tmp_path, "other-ca")
    assert reason(client(fake, ca_file=str(tmp_path / "other-ca.crt")).guests) == "tls"
    assert fake.requests == []


def test_the_system_cas_do_not_trust_a_private_ca(fake):
    assert reason(client(fake, ca_file=None).guests) == "tls"
    assert fake.requests == []


def test_the_right_fingerprint_is_trusted_without_a_ca(fake):
    fake.add_guest(100, "web")
    assert [g.vmid for g in client(fake, ca_file=None, fingerprint=fake.cert_fingerprint).guests()] == [100]


def test_a_fingerprint_in_lower_case_without_colons_is_the_same_pin(fake):
    fake.add_guest(100, "web")
    pin = fake.cert_fingerprint.replace(":", "").lower()
    assert [g.vmid for g in client(fake, ca_file=None, fingerprint=pin).guests()] == [100]


def test_a_wrong_fingerprint_is_a_tls_error_and_the_token_never_left(fake):
    wrong = ":".join(["AB"] * 32)
    with pytest.raises(PveError) as caught:
        client(fake, ca_file=None, fingerprint=wrong).guests()
    assert caught.value.reason == "tls"
    assert fake.cert_fingerprint in caught.value.detail  # what the server showed, to compare by hand
    assert fake.requests == []  # the server received no request at all, so no token


def test_a_wrong_fingerprint_refuses_even_with_a_trusted_ca(fake):
    wrong = ":".join(["CD"] * 32)
    assert reason(client(fake, fingerprint=wrong).guests) == "tls"
    assert fake.requests == []


def test_insecure_trusts_an_unknown_certificate_only_when_set(fake):
    fake.add_guest(100, "web")
    assert [g.vmid for g in client(fake, ca_file=None, insecure=True).guests()] == [100]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "http://127.0.0.1:8006"}, "https"),
        ({"url": "https://127.0.0.1:8006/api2/json"}, "scheme, host and port only"),
        ({"token_id": "root@pam"}, "USER@REALM!TOKENID"),
        ({"token_file": None}, "token_file"),
        ({"fingerprint": "AB:CD"}, "SHA-256"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_a_target_that_cannot_be_right_is_refused_at_construction(fake, overrides, message):
    with pytest.raises(ValueError, match=message):
        client(fake, **overrides)


# -- power -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "action", "before", "after"),
    [
        ("qemu", "shutdown", "running", "stopped"),
        ("qemu", "stop", "running", "stopped"),
        ("qemu", "start", "stopped", "running"),
        ("qemu", "suspend", "running", "paused"),
        ("qemu", "resume", "paused", "running"),
        ("lxc", "reboot", "running", "running"),
    ],
)
def test_power_posts_the_exact_path_and_returns_the_upid(fake, kind, action, before, after):
    fake.add_guest(100, "web", node="pve1", kind=kind, status=before)
    upid = client(fake).power("pve1", kind, 100, action)
    assert fake.requests == [("POST", f"/api2/json/nodes/pve1/{kind}/100/status/{action}")]
    prefix = "qm" if kind == "qemu" else "vz"
    assert upid.startswith("UPID:pve1:") and upid.endswith(f":{prefix}{action}:100:root@pam!pilot:")
    assert fake.guest(100)["status"] == after


def test_power_on_a_guest_that_moved_is_a_server_error(fake):
    fake.add_guest(100, "web", node="pve1")
    fake.migrate(100, "pve2")
    assert reason(lambda: client(fake).power("pve1", "qemu", 100, "stop")) == "server_error"
    assert fake.guest(100)["status"] == "running"


def test_power_without_the_privilege_is_forbidden(fake):
    fake.add_guest(100, "web")
    audit = client(fake, token_id=fake.audit_token_id, token_file=str(fake.audit_token_file))
    assert audit.guests() == []  # Proxmox lists only what a token may audit: no error, no guest
    assert reason(lambda: audit.power("pve1", "qemu", 100, "stop")) == "forbidden"
    assert fake.guest(100)["status"] == "running"


def test_a_power_answer_that_is_not_a_upid_is_a_bad_response(fake):
    fake.garbage(shape=True)
    fake.add_guest(100, "web")
    assert reason(lambda: client(fake).power("pve1", "qemu", 100, "stop")) == "bad_response"


@pytest.mark.parametrize(
    ("node", "kind", "vmid", "action"),
    [
        ("../x", "qemu", 100, "stop"),
        ("pve1/..", "qemu", 100, "stop"),
        ("pve1?x=1", "qemu", 100, "stop"),
        ("", "qemu", 100, "stop"),
        ("pve1", "qemu/../", 100, "stop"),
        ("pve1", "openvz", 100, "stop"),
        ("pve1", "qemu", "1; rm", "stop"),
        ("pve1", "qemu", "100", "stop"),
        ("pve1", "qemu", True, "stop"),
        ("pve1", "qemu", 99, "stop"),
        ("pve1", "qemu", 1_000_000_000, "stop"),
        ("pve1", "qemu", 100, "destroy"),
        ("pve1", "qemu", 100, "stop/../../delete"),
    ],
)
def test_hostile_path_parts_are_refused_before_any_request(fake, node, kind, vmid, action):
    pve_client = client(fake)
    with pytest.raises(ValueError):
        pve_client.power(node, kind, vmid, action)
    with pytest.raises(ValueError):
        pve_client.describe_power(node, kind, vmid, action)
    assert fake.requests == []


def test_describe_power_names_method_and_url_and_never_the_token(fake):
    text = client(fake).describe_power("pve1", "qemu", 100, "shutdown")
    assert text == f"POST https://127.0.0.1:{fake.port}/api2/json/nodes/pve1/qemu/100/status/shutdown"
    assert fake.requests == []


# -- pvesh on the host itself ---------------------------------------------------------------------------------


def wrapper(tmp_path: Path, body: str) -> str:
    """A `pvesh` for one test: a shell script that records its argv and environment, then runs `body`."""
    script = tmp_path / "pvesh"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {shlex.quote(str(tmp_path / "argv"))}\n'
        f"env > {shlex.quote(str(tmp_path / 'env'))}\n" + body + "\n"
    )
    script.chmod(0o755)
    return str(script)


def standin(tmp_path: Path) -> str:
    return wrapper(tmp_path, f'exec {shlex.quote(sys.executable)} {shlex.quote(str(PVESH))} "$@"')


def local(pvesh: str, timeout: float = 10.0) -> PveClient:
    return PveClient(PveTarget(url=None, timeout=timeout), pvesh=pvesh)


def test_pvesh_get_runs_the_exact_argv_with_a_cleared_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PILOT_SOMETHING_SECRET", "hunter2")
    guests = local(standin(tmp_path)).guests()
    assert (tmp_path / "argv").read_text().splitlines() == [
        "get", "/cluster/resources", "--type", "vm", "--output-format", "json",
    ]  # fmt: skip
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    assert "PILOT_SOMETHING_SECRET" not in env
    assert env["PATH"] == "/usr/sbin:/usr/bin:/sbin:/bin"
    assert [(g.vmid, g.kind, g.node, g.template, g.maxcpu, g.tags) for g in guests] == [
        (100, "qemu", "pve1", False, 4.0, ("prod", "web")),
        (101, "lxc", "pve2", False, 0.5, ()),
        (9000, "qemu", "pve1", True, 2.0, ()),
    ]


def test_pvesh_power_runs_create_on_the_status_path_and_returns_the_upid(tmp_path):
    upid = local(standin(tmp_path)).power("pve1", "lxc", 101, "shutdown")
    assert (tmp_path / "argv").read_text().splitlines() == [
        "create", "/nodes/pve1/lxc/101/status/shutdown", "--output-format", "json",
    ]  # fmt: skip
    assert upid == "UPID:pve1:0000C0DE:0001F00D:66000000:vzshutdown:101:root@pam:"


def test_pvesh_describe_power_is_the_command(tmp_path):
    assert local("/usr/bin/pvesh").describe_power("pve1", "qemu", 100, "stop") == (
        "/usr/bin/pvesh create /nodes/pve1/qemu/100/status/stop"
    )


def test_pvesh_that_does_not_finish_is_a_timeout(tmp_path):
    pvesh = wrapper(tmp_path, "exec sleep 30")
    assert reason(local(pvesh, timeout=0.5).guests) == "timeout"


def test_pvesh_exiting_non_zero_is_a_pvesh_error_with_its_last_words(tmp_path):
    pvesh = wrapper(tmp_path, "echo 'ipcc_send_rec[1] failed: Connection refused' >&2; exit 255")
    with pytest.raises(PveError) as caught:
        local(pvesh).guests()
    assert caught.value.reason == "pvesh"
    assert caught.value.detail == "pvesh exited with 255: ipcc_send_rec[1] failed: Connection refused"


def test_pvesh_missing_is_a_pvesh_error(tmp_path):
    assert reason(local(str(tmp_path / "nowhere")).guests) == "pvesh"


def test_pvesh_printing_non_utf8_is_a_bad_response(tmp_path):
    pvesh = wrapper(tmp_path, r"printf '[\377]'")
    assert reason(local(pvesh).guests) == "bad_response"


def test_pvesh_printing_more_than_the_cap_is_a_bad_response(tmp_path):
    pvesh = wrapper(tmp_path, "exec yes")
    pve_client = PveClient(PveTarget(url=None), pvesh=pvesh, max_body=1024 * 1024)
    assert reason(pve_client.guests) == "bad_response"


def test_the_standin_refuses_an_unexpected_argv(tmp_path):
    assert os.access(PVESH, os.X_OK)
    pvesh = standin(tmp_path)
    assert reason(lambda: local(pvesh)._pvesh_json(["get", "/nodes"])) == "pvesh"


def test_tls_below_1_2_is_never_offered(fake):
    for target in (
        PveTarget(url=fake.url),
        PveTarget(url=fake.url, ca_file=fake.ca_file),
        PveTarget(url=fake.url, fingerprint=fake.cert_fingerprint),
        PveTarget(url=fake.url, insecure=True),
    ):
        assert pve._tls_context(target).minimum_version == pve.ssl.TLSVersion.TLSv1_2


def test_power_on_a_node_that_is_down_is_a_server_error(fake):
    fake.add_guest(100, "web", node="pve1")
    fake.node_down("pve1")
    with pytest.raises(PveError) as caught:
        client(fake).power("pve1", "qemu", 100, "start")
    assert (caught.value.reason, caught.value.detail[:4]) == ("server_error", "595 ")


def test_a_list_of_junk_entries_keeps_three_labels_and_a_count_not_one_string_each(fake):
    """A hostile answer within the body cap must not cost memory per entry."""
    fake.add_guest(100, "web")
    for index in range(500):
        fake.add_entry({"id": f"qemu/{1000 + index}", "type": "qemu", "vmid": "x"})
    pve_client = client(fake)
    assert [g.vmid for g in pve_client.guests()] == [100]
    assert len(pve_client.skipped) == 3 and pve_client.skipped_count == 500


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b'{"data": []}\xff', b'{"data": "\xc3"}'],
    ids=["deeply nested", "deeply nested data", "trailing non-UTF-8", "broken UTF-8"],
)
def test_an_answer_nested_too_deep_or_not_utf8_is_a_bad_response_not_a_crash(body):
    with pytest.raises(PveError) as caught:
        pve._decode_json(body, "GET /cluster/resources")
    assert caught.value.reason == "bad_response"
