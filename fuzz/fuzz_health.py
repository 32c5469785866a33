#!/usr/bin/env python3
"""atheris target: the health report parser (pilot.agent.health), which reads `pilot/<id>/health`.

    python fuzz/fuzz_health.py -runs=100000 [-max_len=8192] [CORPUS_DIR...]

Anyone who may publish on the broker reaches this parser. Half the inputs are raw bytes; the other
half are built by a FuzzedDataProvider into report-shaped JSON (each field valid or not, nested or
not), so the fuzzer gets past the size, depth and JSON checks into the schema. Properties:
`parse_report` never raises; it returns None or a dict whose instance is 12 lower-case hex digits,
whose ts is a finite number in range, whose known counters are non-negative ints, flags booleans,
and which holds no text anywhere but the instance id; `Health.on_report` never raises and never
believes an instance id that is not 12 hex digits.

Importable without atheris (tests/hostile imports it and calls `check`); only running it needs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

try:
    import atheris
except ImportError:  # tests import this file to replay inputs through `check`
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from pilot.agent import health
else:
    from pilot.agent import health

KEYS = sorted(health.COUNTERS | health.FLAGS | {"rejected_by_reason", "instance", "ts", "zz_new", "A b"})


def check(payload: bytes) -> None:
    """The properties, for one input."""
    report = health.parse_report(payload)
    if report is not None:
        assert len(payload) <= health.MAX_REPORT_BYTES
        assert health.INSTANCE_RE.match(report["instance"])
        ts = report["ts"]
        assert type(ts) in (int, float) and 0 < ts < 2**40
        for key, value in report.items():
            if key in health.COUNTERS:
                assert type(value) is int and 0 <= value < health.MAX_COUNTER
            elif key in health.FLAGS:
                assert type(value) is bool
            elif key == "rejected_by_reason":
                assert len(value) <= health.MAX_REASONS
                assert all(health.KEY_RE.match(k) and type(v) is int for k, v in value.items())
            elif key not in ("instance", "ts"):
                assert health.KEY_RE.match(key) and type(value) in (int, float)
    state = health.Health()
    state.on_report(payload)
    state.on_report(payload, retained=True)
    assert state.other_instance is None or health.INSTANCE_RE.match(state.other_instance)


def _value(fdp, depth: int = 0):
    choice = fdp.ConsumeIntInRange(0, 9)
    if choice == 0:
        return fdp.ConsumeInt(8)
    if choice == 1:
        return fdp.ConsumeFloat()
    if choice == 2:
        return fdp.ConsumeBool()
    if choice == 3:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    if choice == 4 and depth < 4:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if choice == 5 and depth < 4:
        return {fdp.ConsumeUnicodeNoSurrogates(8): _value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))}
    if choice == 6:
        return fdp.ConsumeBytes(6).hex()  # a well-formed instance id
    return fdp.ConsumeIntInRange(0, 2**41)


def TestOneInput(data: bytes) -> None:
    if not data or data[0] & 1 == 0:
        check(data[1:])
        return
    fdp = atheris.FuzzedDataProvider(data[1:])
    body = {KEYS[fdp.ConsumeIntInRange(0, len(KEYS) - 1)]: _value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 8))}
    if fdp.ConsumeBool():
        body["instance"] = fdp.ConsumeBytes(6).hex()
    if fdp.ConsumeBool():
        body["ts"] = fdp.ConsumeIntInRange(0, 2**41)
    check(json.dumps(body, allow_nan=True).encode())


if __name__ == "__main__":
    if atheris is None:
        sys.exit("atheris is not installed: `.venv/bin/python -m pip install atheris` (see fuzz/README.md)")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
