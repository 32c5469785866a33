"""{placeholders} in templates: what the agent fills in passes, anything else is refused."""

from __future__ import annotations

from pilot.diagnostics import ERROR
from pilot.profile import loader
from pilot.profile.validate import validate_document

SENSORS = "sensors:\n  cpu_temp: {probe: thermal.cpu}\n  hot: {expr: 'cpu_temp > 80'}\n"


def _errors(text: str) -> list[str]:
    doc, diags = loader.load_text("p.yaml", ("pilot: 1\n" + SENSORS + text).encode())
    assert doc is not None, diags
    return [d.message for d in validate_document(doc) if d.severity == ERROR]


def test_sensor_ids_and_plain_json_braces_pass() -> None:
    assert not _errors(
        "rules:\n  r:\n    when: hot\n    do:\n"
        "      - notify: 'CPU {cpu_temp}, hot {hot}'\n"
        '      - publish: {topic: a/b, payload: \'{"t": {cpu_temp}, "x": {"y": 1}}\'}\n'
        "commands:\n  say: {action: mqtt.publish, platform: text, args: {topic: a/b, payload: 'v={value}'}}\n"
    )


def test_a_misspelt_sensor_id_is_named() -> None:
    [message] = _errors("schedules:\n  s: {every: 1h, do: [{notify: 'at {cpu_tmep}'}]}\n")
    assert message == "unknown placeholder {cpu_tmep}: a step fills in sensor ids (did you mean 'cpu_temp'?)"


def test_an_action_template_fills_in_only_value() -> None:
    [message] = _errors("commands:\n  n: {action: notify.desktop, platform: text, args: {message: '{cpu_temp}'}}\n")
    assert message == "unknown placeholder {cpu_temp}: notify.desktop fills in only {value}"
