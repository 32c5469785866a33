"""SensorSet: probes read on their intervals, derived sensors computed from them."""

from __future__ import annotations

from pilot.agent.sensorset import SensorSet
from pilot.probes import ProbeContext
from tests.support.profiles import compile_text


def test_derived_chains_are_computed_in_dependency_order(tmp_path):
    """Regression (code review, 675ba29): derived sensors were computed in profile order, so one
    listed before the sensors it reads used their previous values."""
    root = tmp_path / "sys"
    (root / "class" / "t").mkdir(parents=True)
    (root / "class" / "t" / "x").write_text("1\n")
    plan = compile_text(
        "pilot: 1\ndevice: {id: d, name: D}\nsensors:\n"
        "  x: {probe: sysfs.read, args: {path: /sys/class/t/x, parse: int}, every: 1s}\n"
        "  c: {expr: 'b + a + x'}\n  b: {expr: 'a + x'}\n  a: {expr: 'x * 2'}\n"
    )
    sensors = SensorSet(plan, ProbeContext(sysfs_root=root), lambda topic, payload: None)
    for value in (10, 30, 7):
        (root / "class" / "t" / "x").write_text(f"{value}\n")
        sensors.read_all()
        v = sensors.values()
        assert (v["a"], v["b"], v["c"]) == (2 * value, 3 * value, 6 * value)
