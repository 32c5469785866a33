"""validate_document runs every stage in one go: a schema error does not hide a registry or
semantic one elsewhere, nothing an error already shown causes is reported again, and a
finding is reported once."""

from __future__ import annotations

from pilot.diagnostics import ERROR
from pilot.profile import loader
from pilot.profile.validate import validate_document


def _errors(text: str) -> list[tuple[str, str]]:
    doc, diags = loader.load_text("p.yaml", text.encode())
    assert doc is not None, diags
    found = validate_document(doc)
    assert len(found) == len(set(found)), found
    return [(d.path, d.message) for d in found if d.severity == ERROR]


def test_three_stages_in_one_run() -> None:
    errors = _errors(
        "pilot: 1\n"
        "sensors:\n"
        "  a: {probe: cpu.percent, every: 10}\n"  # schema
        "  b: {probe: cpu.percentt}\n"  # registry
        "  c: {probe: cpu.percent, expire_after: 0s}\n"  # semantics
    )
    assert [p for p, _ in errors] == ["$.sensors.a.every", "$.sensors.b.probe", "$.sensors.c.expire_after"]


def test_registry_and_schema_errors_in_the_same_sensor() -> None:
    errors = _errors("pilot: 1\nsensors:\n  a: {probe: cpu.percentt, every: 10}\n")
    assert {p for p, _ in errors} == {"$.sensors.a.every", "$.sensors.a.probe"}


def test_an_entity_with_a_schema_error_is_still_declared() -> None:
    # the command and the sensor are broken, but they exist: no "no command 'lock'", no "unknown name 'a'"
    errors = _errors(
        "pilot: 1\n"
        "sensors:\n  a: {probe: cpu.percent, every: 10}\n"
        "commands:\n  lock: {action: session.lock, platform: buton}\n"
        "rules:\n  r: {when: 'a > 1', do: [{command: lock}]}\n"
        "policies:\n  allow: [lock]\n"
    )
    assert [p for p, _ in errors] == ["$.sensors.a.every", "$.commands.lock.platform"]


def test_a_broken_policies_section_is_left_out_of_the_signature_check() -> None:
    errors = _errors(
        "pilot: 1\n"
        "commands:\n  lock: {action: session.lock, policy: {signed: true}}\n"
        "policies:\n  hmac: {keyring: /etc/keys, colour: red}\n"
    )
    assert [p for p, _ in errors] == ["$.policies.hmac.colour"]


def test_args_refused_by_the_schema_are_not_checked_again() -> None:
    errors = _errors("pilot: 1\nsensors:\n  a: {probe: disk.used_percent, args: [1]}\n")
    assert errors == [("$.sensors.a.args", "expected a map (key: value), got a list")]


def test_a_sensor_with_bad_args_is_left_out_of_the_semantic_checks() -> None:
    errors = _errors("pilot: 1\nsensors:\n  a: {probe: disk.used_percent, args: {path: 3}, every: 0s}\n")
    assert [p for p, _ in errors] == ["$.sensors.a.args.path"]


def test_a_document_that_is_not_a_map_gets_only_the_schema_error() -> None:
    assert [p for p, _ in _errors("- 1\n- 2\n")] == ["$"]


def test_a_section_of_the_wrong_shape_is_skipped() -> None:
    errors = _errors("pilot: 1\nsensors: [a, b]\nrules:\n  r: {when: 'a > 1', do: [{notify: hi}]}\n")
    assert [p for p, _ in errors][0] == "$.sensors"
    assert all(p != "$.rules.r.when" for p, _ in errors), errors
