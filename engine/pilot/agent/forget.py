"""Remove a device from Home Assistant: empty every retained message the agent left on the broker.

Home Assistant keeps a device as long as its retained discovery message is on the broker, and the
broker keeps states, capabilities and health for ever. `pilot forget` (and `pilot service uninstall
--purge`, through `forget`) clears them:

1. it collects what is retained now under the device's topics (`<prefix>/<id>/#`) and its discovery
   topics (`<discovery prefix>/+/<id>/#`): a subscription, then a marker message of its own, which
   comes back after every retained message the broker had queued for that subscription;
2. it adds the discovery topics the agent remembers announcing (`discovery.json` in the state
   directory, which also covers a discovery prefix the profile no longer names) and, failing that,
   the ones the plan would announce;
3. it sets availability `offline` (so a Home Assistant that still shows the device marks it
   unavailable at once), empties every discovery topic (Home Assistant removes the device), then
   every state, capabilities, health and activity topic (whatever was found retained under
   `<prefix>/<id>/#`), and the availability topic last;
4. it removes `discovery.json` (and `children.json`), so a later `pilot run` announces the device afresh.

Child devices (`children:`, e.g. Proxmox guests) have discovery topics of their own,
`<discovery prefix>/device/<id>_<set>_<key>/config`: they are found the same way (the device filter
cannot name them, so all device configs are read and only this device's children kept) and from the
agent's record of them (`children.json`).

The agent must be stopped first, or it announces itself again on its next reconnect; an availability
of `online` is reported as a warning.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pilot.agent import ha
from pilot.agent.children import KEY_RE, discovery_topic
from pilot.agent.state import StateDir
from pilot.plan import Plan

RECORD = "discovery.json"
CHILDREN_RECORD = "children.json"


class ForgetError(Exception):
    """The broker cannot be reached or refused us; the message explains it (see pilot.agent.brokercheck)."""


@dataclass
class ForgetReport:
    device_id: str
    broker: str
    discovery: list[str] = field(default_factory=list)  # discovery topics emptied (found retained or expected)
    retained: list[str] = field(default_factory=list)  # other retained topics of the device, emptied
    absent: list[str] = field(default_factory=list)  # expected discovery topics that held nothing
    source: str = ""  # where the expected discovery topics came from
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    applied: bool = True  # False: a dry run, nothing published

    @property
    def cleared(self) -> list[str]:
        return self.discovery + self.retained


def expected_discovery(plan: Plan, state_dir: StateDir | None) -> tuple[list[str], str]:
    """The discovery topics the agent announced (its record), or would announce (the plan)."""
    topics: list[str] = []
    source = "the profile"
    if state_dir is not None:
        record, intact = state_dir.read_json(RECORD, None)
        if isinstance(record, dict) and intact:
            if isinstance(record.get("device_topic"), str):
                topics.append(record["device_topic"])
            entity_topics = record.get("entity_topics")
            if isinstance(entity_topics, dict):
                topics += [t for t in entity_topics.values() if isinstance(t, str)]
            source = f"{state_dir.path / RECORD}"
    if state_dir is not None and plan.children:
        children, intact = state_dir.read_json(CHILDREN_RECORD, None)
        if isinstance(children, dict) and intact:
            for set_id, keys in children.items():
                if isinstance(keys, dict):
                    words = [str(set_id), *map(str, keys)]  # the file is ours, but a topic must stay a topic
                    if all(KEY_RE.fullmatch(w) for w in words):
                        topics += [discovery_topic(plan, str(set_id), str(key)) for key in keys]
    if not [t for t in topics if not _is_child(t, plan)]:
        from pilot.agent.health import entities as health_entities
        from pilot.naming import slug

        extra = health_entities(plan.device.id, slug(plan.device.name), plan.topics.health)
        messages, _ = ha.discovery_messages(plan, None, extra)
        topics += [m.topic for m in messages if m.payload]
        source = "the profile (no discovery record in the state directory)"
    return list(dict.fromkeys(topics)), source


def forget(
    plan: Plan,
    host: str,
    port: int,
    state_dir: StateDir | Path | None = None,
    *,
    timeout: float = 10.0,
    apply: bool = True,
) -> ForgetReport:
    """Clear the device's retained messages on host:port with the plan's credentials; ForgetError
    (with the reason in plain words) when the broker cannot be reached or refuses us."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from pilot.agent.brokercheck import check_settings
    from pilot.agent.mqtt import read_password, tls_context

    if state_dir is not None and not isinstance(state_dir, StateDir):
        state_dir = StateDir(Path(state_dir))
    probe = check_settings(plan.mqtt, host, port, timeout=min(timeout, 10.0))
    if not probe.ok:
        raise ForgetError(probe.text())

    base = plan.topics.base
    device_filter = f"{plan.mqtt.discovery_prefix}/+/{plan.device.id}/#"
    marker = f"{base}/_forget/{secrets.token_hex(6)}"
    retained: dict[str, bytes] = {}
    marker_seen = threading.Event()
    subscribed = threading.Event()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pilot-forget-{os.getpid()}-{secrets.token_hex(3)}")
    if plan.mqtt.username:
        client.username_pw_set(plan.mqtt.username, read_password(plan.mqtt.password_file))
    if plan.mqtt.tls is not None:
        client.tls_set_context(tls_context(plan.mqtt))
        if plan.mqtt.tls.insecure:
            client.tls_insecure_set(True)

    def on_message(c, userdata, msg) -> None:
        if msg.topic == marker:
            marker_seen.set()
        elif msg.retain and msg.payload:
            if msg.topic.startswith(all_devices_prefix) and not _is_discovery(msg.topic, plan):
                return  # another device's configuration (the child filter reads them all)
            if _is_child(msg.topic, plan) and not _child_of(msg.payload, plan):
                return  # named like one of ours (device ids may hold `_`), but another device's child
            retained[msg.topic] = msg.payload

    client.on_message = on_message
    all_devices_prefix = f"{plan.mqtt.discovery_prefix}/device/"
    filters = [(f"{base}/#", 1), (device_filter, 1)]
    if plan.children:
        filters.append((f"{all_devices_prefix}+/config", 1))
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(filters)
    client.on_subscribe = lambda *args: subscribed.set()
    deadline = time.monotonic() + timeout
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise ForgetError(f"cannot reach the broker {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        if not subscribed.wait(max(0.0, deadline - time.monotonic())):
            raise ForgetError(f"the broker {host}:{port} did not confirm the subscription within {timeout:g} s")
        client.publish(marker, b"", qos=1)  # not retained; it comes back after the retained messages
        if not marker_seen.wait(max(0.0, deadline - time.monotonic())):
            raise ForgetError(
                f"the broker {host}:{port} did not pass our own message back within {timeout:g} s "
                "(does this user lack read or write access to the device's topics?)"
            )
        expected, source = expected_discovery(plan, state_dir)
        found = dict(retained)
        report = ForgetReport(plan.device.id, f"{host}:{port}", source=source, applied=apply)
        availability = plan.topics.availability
        if found.get(availability, b"").strip() == b"online":
            report.warnings.append(
                f"{availability} says `online`: if the agent is still running it will announce the device again; "
                "stop it first (`systemctl stop pilot`, or `systemctl --user stop pilot`)"
            )
        discovery_found = sorted(t for t in found if _is_discovery(t, plan))
        report.discovery = list(dict.fromkeys(discovery_found + [t for t in expected if t in found]))
        report.absent = [t for t in expected if t not in found]
        report.retained = sorted(t for t in found if t not in report.discovery)
        if not apply:
            return report
        pending = [client.publish(availability, "offline", qos=1, retain=True)]
        for topic in report.discovery + report.absent:
            pending.append(client.publish(topic, b"", qos=1, retain=True))
        for topic in report.retained:
            if topic != availability:
                pending.append(client.publish(topic, b"", qos=1, retain=True))
        pending.append(client.publish(availability, b"", qos=1, retain=True))
        for info in pending:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise ForgetError(f"the broker {host}:{port} did not acknowledge every message within {timeout:g} s")
    finally:
        client.loop_stop()
        client.disconnect()
    if state_dir is not None:
        for name in (RECORD, CHILDREN_RECORD):
            try:
                (state_dir.path / name).unlink()
                report.notes.append(f"removed {state_dir.path / name}")
            except FileNotFoundError:
                pass
            except OSError as exc:
                report.notes.append(f"could not remove {state_dir.path / name}: {exc.strerror or exc}")
    return report


def _is_child(topic: str, plan: Plan) -> bool:
    """A child device's discovery topic: `<prefix>/device/<id>_<set>_<key>/config` for a set of the plan."""
    head = f"{plan.mqtt.discovery_prefix}/device/{plan.device.id}_"
    if not (topic.startswith(head) and topic.endswith("/config")):
        return False
    rest = topic[len(head) : -len("/config")]
    return "/" not in rest and any(rest.startswith(f"{s.id}_") for s in plan.children)


def _child_of(payload: bytes, plan: Plan) -> bool:
    """Whether a retained child-device configuration says it is under this device (`via_device`)."""
    import json

    if len(payload) > 256 * 1024:
        return False
    try:
        device = json.loads(payload).get("device") or {}
        return device.get("via_device") == f"pilot_{plan.device.id}"
    except (ValueError, AttributeError, RecursionError):
        return False


def _is_discovery(topic: str, plan: Plan) -> bool:
    if _is_child(topic, plan):
        return True
    parts = topic.split("/")
    prefix = plan.mqtt.discovery_prefix.split("/")
    return parts[: len(prefix)] == prefix and len(parts) > len(prefix) + 1 and parts[len(prefix) + 1] == plan.device.id
