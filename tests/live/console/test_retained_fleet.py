"""A console started (or restarted) on a broker that already holds a whole fleet's retained messages.

A broker sends all of a filter's retained messages at once and queues only so many for a subscriber
(Mosquitto: 1,000 by default), so asking for everything in one go lost all but the discovery messages of
1,000 devices. The console subscribes filter by filter, each after the previous one's messages are in.
"""

from __future__ import annotations

import time

import httpx

from testkit.broker import Mosquitto
from testkit.console import ConsoleProcess
from testkit.fleet import FleetSimulator

DEVICES = 1000
COMPLETE = (DEVICES,) * 4


def counts_when_complete(console: ConsoleProcess, timeout: float = 60.0) -> tuple[int, int, int, int]:
    """(listed, online, with capabilities, with a state value), once all are DEVICES or at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        devices = httpx.get(console.url + "/api/fleet", timeout=30).json()["devices"]
        counts = (
            len(devices),
            sum(d["online"] is True for d in devices),
            sum(d["profile"] is not None for d in devices),
            sum(bool(d["key"]) and d["key"][0]["value"] is not None for d in devices),
        )
        if counts == COMPLETE or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def test_every_retained_device_availability_capability_and_state_arrives(tmp_path):
    broker = Mosquitto().start()
    simulator = FleetSimulator("127.0.0.1", broker.port, devices=DEVICES)
    console = None
    try:
        simulator.connect()
        simulator.announce()
        for device in simulator.devices:
            simulator.publish_states(device)
        # 1,000 devices: 25,000 retained messages, 1,000 of them discovery of about 10 KB
        console = ConsoleProcess(broker.port, anonymous_read=True).start()
        assert counts_when_complete(console) == COMPLETE
    finally:
        if console is not None:
            console.cleanup()
        simulator.stop(offline=False)
        broker.cleanup()


def test_devices_whose_announcement_the_broker_dropped_are_asked_for_again():
    """A whole fleet announcing at once (a broker restart) overflows the broker's queue for the console; a
    device that then publishes states without the console knowing it gets its retained topics asked for."""
    broker = Mosquitto().start()
    simulator = FleetSimulator("127.0.0.1", broker.port, devices=DEVICES, period=2.0)
    console = ConsoleProcess(broker.port, anonymous_read=True).start()
    try:
        console.wait_subscribed()
        simulator.connect()
        simulator.announce()  # 5,000 messages, 10 MB, in a fraction of a second
        simulator.start()
        assert counts_when_complete(console) == COMPLETE
    finally:
        console.cleanup()
        simulator.stop(offline=False)
        broker.cleanup()
