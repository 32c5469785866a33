"""The compile child: its result crosses the process boundary typed, and it runs under a deadline."""

from __future__ import annotations

import pytest

from pilot.compile_child import compile_profile
from tests.support.files import BASIC


def test_the_child_returns_a_plan_and_a_second_call_reads_the_cache(tmp_path):
    first = compile_profile(str(BASIC), cache_dir=tmp_path)
    assert first.ok and first.plan.sources[0] == str(BASIC)
    assert (tmp_path / "plan-cache.json").is_file()
    assert compile_profile(str(BASIC), cache_dir=tmp_path) == first


def test_errors_come_back_as_diagnostics(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pilot: 1\nsensors:\n  x: {probe: cpu.percnt}\n")
    result = compile_profile(str(bad))
    assert not result.ok
    assert [d.text() for d in result.errors] == [
        f"{bad}:3:14: error: $.sensors.x.probe: unknown probe 'cpu.percnt' (did you mean 'cpu.percent'?)"
    ]


def test_a_compile_past_its_deadline_is_killed_and_said_so(tmp_path):
    with pytest.raises(RuntimeError, match="took longer than 0.01 s; nothing was changed"):
        compile_profile(str(BASIC), timeout=0.01)
