"""One fake Proxmox VE API per test module (a CA per test would be slow), emptied and healed per test."""

from __future__ import annotations

import pytest

from testkit.proxmox import FakeProxmox


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with FakeProxmox(tmp_path_factory.mktemp("pve")) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProxmox):
    server.reset()
    return server
