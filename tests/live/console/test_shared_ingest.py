"""Two consoles behind one load balancer: one PostgreSQL database, one MQTT 5 shared subscription.

Each instance shows every live value, and each reading is stored exactly once, by whichever instance
the broker handed it to.
"""

from __future__ import annotations

import json
import time

from testkit.broker import Mosquitto, Watcher
from testkit.console import ConsoleProcess
from tests.live.console.conftest import wait

READINGS = 40


def test_two_instances_split_the_writes_and_both_show_every_value(postgres, tmp_path):
    url = postgres.create_database("shared_ingest")
    config = tmp_path / "console.yaml"
    config.write_text("broker:\n  shared_group: consoles\n")
    broker = Mosquitto().start()
    watcher = Watcher(broker.port).start()
    users = [("ada", "admin", "ada-admin-password")]
    consoles = [
        ConsoleProcess(broker.port, users=users, database=url, extra_args=["--config", str(config)]) for _ in range(2)
    ]
    try:
        for console in consoles:
            console.start().wait_subscribed()
        clients = [c.client("ada", "ada-admin-password") for c in consoles]
        discovery = {
            "device": {"identifiers": ["pilot_sim1"], "name": "Sim 1"},
            "origin": {"name": "Pilot"},
            "components": {
                "pilot_sim1_load": {
                    "platform": "sensor",
                    "unit_of_measurement": "%",
                    "state_topic": "pilot/sim1/state/load",
                }
            },
        }
        watcher.publish("homeassistant/device/sim1/config", json.dumps(discovery), retain=True)
        for client in clients:
            wait(lambda c=client: any(d["id"] == "sim1" for d in c.get("/api/fleet").json()["devices"]))
        for i in range(READINGS):
            watcher.publish("pilot/sim1/state/load", str(i))
            time.sleep(0.01)  # distinct receive times: each reading is its own row
        for client in clients:
            wait(lambda c=client: c.get("/api/devices/sim1").json()["entities"][0]["value"] == str(READINGS - 1))

        def stored():
            stats = [c.get("/api/stats").json()["ingest"]["samples"] for c in clients]
            return stats if sum(stats) >= READINGS else None

        shares = wait(stored)
        assert sum(shares) == READINGS  # each reading stored once, not once per instance

        def history():
            series = clients[0].get("/api/devices/sim1/history/load?range=1h").json()
            return series if len(series["values"]) >= READINGS else None

        series = wait(history)
        assert sorted(series["values"]) == [float(i) for i in range(READINGS)]
        other = clients[1].get("/api/devices/sim1/history/load?range=1h").json()
        assert sorted(other["values"]) == sorted(series["values"])
    finally:
        for console in consoles:
            console.cleanup()
        watcher.stop()
        broker.cleanup()
