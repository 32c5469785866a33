"""A reload that changes a connection setting is refused, and the log names exactly which settings changed."""

from __future__ import annotations

from pilot.agent.reload import connection_changes
from tests.support.profiles import compile_text

BASE = "pilot: 1\ndevice: {id: box, name: Box}\nmqtt: {host: broker.lan, port: 1883, keepalive: 30}\n"


def test_only_telemetry_and_commands_changed_is_no_connection_change(tmp_path):
    old = compile_text(BASE, folder=tmp_path)
    new = compile_text(BASE + "sensors:\n  up: {probe: system.uptime}\n", folder=tmp_path)
    assert connection_changes(old, new) == []


def test_each_connection_setting_is_named_as_the_profile_spells_it(tmp_path):
    old = compile_text(BASE, folder=tmp_path)
    new = compile_text(
        BASE.replace("keepalive: 30", "keepalive: 60").replace("broker.lan", "other.lan"), folder=tmp_path
    )
    assert connection_changes(old, new) == ["mqtt.host", "mqtt.keepalive"]


def test_a_new_device_id_moves_the_last_will_and_needs_a_restart(tmp_path):
    old = compile_text(BASE, folder=tmp_path)
    new = compile_text(BASE.replace("id: box", "id: box2"), folder=tmp_path)
    assert connection_changes(old, new) == ["mqtt.client_id", "device.id"]  # the client id derives from it
