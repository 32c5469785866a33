"""The proxmox.guests source on the fake Proxmox API: guests as instances, a node filter, power requests."""

from __future__ import annotations

import socket

import pytest

from pilot.actions import ActionError
from pilot.registry import SOURCES
from pilot.sources import SourceError
from testkit.proxmox import FakeProxmox


def source(fake: FakeProxmox, **args):
    factory = SOURCES.get("proxmox.guests").factory
    return factory(url=fake.url, token_id=fake.token_id, token_file=str(fake.token_file), ca_file=fake.ca_file, **args)


def test_guests_become_instances_keyed_by_vmid_with_their_target_and_templates_skipped(fake):
    fake.add_guest(101, "web", node="pve1", cpu=0.25, mem=512, maxmem=2048)
    fake.add_guest(205, "cache", node="pve2", kind="lxc", status="stopped")
    fake.add_guest(900, "tmpl", node="pve1", template=True)
    found = {i.key: i for i in source(fake).poll()}
    assert sorted(found) == ["101", "205"]
    web = found["101"]
    assert (web.name, web.available, web.target) == ("web", True, {"node": "pve1", "kind": "qemu", "vmid": 101})
    assert (web.fields["cpu"], web.fields["memory_percent"], web.fields["running"]) == (25.0, 25.0, True)
    assert found["205"].fields["kind"] == "container" and found["205"].fields["running"] is False


def test_a_node_filter_keeps_one_nodes_guests_and_local_means_this_host(fake, monkeypatch):
    fake.add_guest(101, "web", node="pve1")
    fake.add_guest(205, "cache", node="pve2")
    assert [i.key for i in source(fake, node="pve2").poll()] == ["205"]
    monkeypatch.setattr(socket, "gethostname", lambda: "pve1.lab.example")
    assert [i.key for i in source(fake, node="local").poll()] == ["101"]


def test_rates_come_from_the_counters_between_two_polls(fake):
    fake.add_guest(101, "web", netin=1000)
    clock = [100.0]
    factory = SOURCES.get("proxmox.guests").factory
    bound = factory(
        url=fake.url,
        token_id=fake.token_id,
        token_file=str(fake.token_file),
        ca_file=fake.ca_file,
        clock=lambda: clock[0],
    )
    assert bound.poll()[0].fields["network_in"] is None  # no interval yet
    fake.set_field(101, "netin", 31_000)
    clock[0] = 130.0
    assert bound.poll()[0].fields["network_in"] == 1000.0  # 30,000 bytes in 30 s
    fake.set_field(101, "netin", 10)  # the guest restarted: its counters start again
    clock[0] = 160.0
    assert bound.poll()[0].fields["network_in"] is None


def test_an_api_error_is_a_source_error_with_its_reason(fake):
    fake.fail(500)
    with pytest.raises(SourceError) as caught:
        source(fake).poll()
    assert caught.value.reason == "server_error"


def test_a_power_request_reaches_the_api_exactly_and_a_foreign_path_is_refused(fake):
    fake.add_guest(101, "web", node="pve1", status="stopped")
    bound = source(fake)
    assert bound.request("POST", "/nodes/pve1/qemu/101/status/start").startswith("UPID:")
    assert ("POST", "/api2/json/nodes/pve1/qemu/101/status/start") in fake.requests
    before = len(fake.requests)
    for method, path in (
        ("GET", "/nodes/pve1/qemu/101/status/start"),
        ("POST", "/nodes/pve1/qemu/101/config"),
        ("POST", "/access/users"),
        ("POST", "/nodes/pve1/qemu/099/status/start"),
    ):
        with pytest.raises(ActionError):
            bound.request(method, path)
    assert len(fake.requests) == before
