"""A broker per hostile module: floods, oversized and retained junk stay out of the other modules' broker."""

from __future__ import annotations

import pytest

from testkit.broker import Mosquitto, Watcher


@pytest.fixture(scope="module")
def broker():
    b = Mosquitto().start()
    yield b
    b.cleanup()


@pytest.fixture
def watcher(broker):
    w = Watcher(broker.port).start()
    yield w
    w.stop()
