"""The floor for bench/commands.py: the least an MQTT command agent can be.

A bare paho-mqtt client that subscribes to one button's command topic, runs
/bin/true with subprocess (no shell) right on paho's network thread, and
publishes a JSON result (QoS 1, not retained). No guards, no validation, no
pool, no audit, no logging: whatever Pilot's command path costs above this is
the price of its features. The socket has TCP_NODELAY, as Pilot's has.

    python bench/commands_floor.py --broker 127.0.0.1:1883 [--device-id benchfloor]

Topics: floor/<id>/cmd/noop/set (subscribed, QoS 1), floor/<id>/cmd/noop/result.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True, metavar="HOST:PORT")
    parser.add_argument("--device-id", default="benchfloor")
    args = parser.parse_args(argv)
    host, _, port = args.broker.rpartition(":")
    command_topic = f"floor/{args.device_id}/cmd/noop/set"
    result_topic = f"floor/{args.device_id}/cmd/noop/result"

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"floor-{args.device_id}")

    def on_socket_open(client, userdata, sock) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(command_topic, 1)

    def on_message(client, userdata, msg) -> None:
        if msg.retain or msg.payload != b"PRESS":
            return
        rc = subprocess.run(
            ["/bin/true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
        body = {"status": "ok" if rc == 0 else "failed", "ts": int(time.time())}
        client.publish(result_topic, json.dumps(body, separators=(",", ":")), qos=1, retain=False)

    client.on_socket_open = on_socket_open
    client.on_connect = on_connect
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.connect(host or "127.0.0.1", int(port))
    client.loop_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
