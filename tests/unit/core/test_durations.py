"""Durations are finite: a number too large for a float (or YAML's .inf and .nan) is refused, not read as
an interval that never ends (a probe with such an `every` would never refresh and never go stale)."""

from __future__ import annotations

import pytest

from pilot.units import parse_duration


@pytest.mark.parametrize("text", ["9" * 400 + "s", "1" + "0" * 310 + "d", float("inf"), float("nan"), -float("inf")])
def test_a_duration_beyond_any_float_is_refused(text):
    with pytest.raises(ValueError) as refused:
        parse_duration(text)
    assert len(str(refused.value)) < 120  # the text is not echoed back whole


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10.0), ("1h30m", 5400.0), ("250ms", 0.25), (90, 90.0)])
def test_ordinary_durations_still_read(text, seconds):
    assert parse_duration(text) == seconds


def test_a_profile_with_an_endless_interval_gets_a_positioned_error(tmp_path):
    from pilot.profile.validate import validate_file

    path = tmp_path / "p.yaml"
    path.write_text(f"pilot: 1\nsensors:\n  cpu: {{probe: cpu.percent, every: {'9' * 400}s}}\n")
    _doc, diags = validate_file(path)
    assert [d.line for d in diags] == [3] and diags[0].severity == "error", [d.text() for d in diags]
