"""Fuzzing the loader and the validator: whatever bytes arrive, they never raise,
and every finding they produce carries a usable position.

Inputs: random text, random bytes, and random YAML-ish documents (nested maps
and lists of scalars, some shaped like profiles) dumped with random styles and
then damaged by random byte edits. Whatever loads is also run through all
validation stages.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from pilot.diagnostics import ERROR, WARNING, Diagnostic
from pilot.profile import loader
from pilot.profile.validate import validate_document

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
FILE = "fuzz.yaml"


def _check_positions(raw: bytes, diags: list[Diagnostic], *, files: set[str] | None = None) -> None:
    lines = raw.count(b"\n") + 1
    for d in diags:
        assert isinstance(d, Diagnostic)
        assert d.severity in (ERROR, WARNING), d
        assert files is None or d.file in files, d
        if d.line == 0:
            continue  # a file-level finding (too large, unreadable)
        assert d.line >= 1 and d.col >= 1, d
        assert d.line <= lines + 1, f"line {d.line} beyond the {lines}-line input: {d}"
        assert d.message, d


def _load_and_validate(raw: bytes) -> None:
    doc, diags = loader.load_text(FILE, raw)
    _check_positions(raw, diags, files={FILE})
    if doc is None:
        assert any(d.severity == ERROR for d in diags), "no document and no error"
        return
    assert not diags
    assert doc.file == FILE
    found = validate_document(doc)
    _check_positions(raw, found, files={FILE})
    for pos in list(doc.positions.values()) + list(doc.key_positions.values()):
        assert pos.line >= 1 and pos.col >= 1


# ------------------------------------------------------------------ random input


@FUZZ
@given(st.text(max_size=400))
def test_random_text_never_raises(text: str) -> None:
    _load_and_validate(text.encode("utf-8"))


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(raw: bytes) -> None:
    _load_and_validate(raw)


_YAML_CHARS = st.sampled_from(list(":-[]{},#&*!|>'\"%@`?\n\t  abc01.~\\\x00\x85\ufeff"))


@FUZZ
@given(st.lists(_YAML_CHARS, max_size=200).map("".join))
def test_yaml_punctuation_soup_never_raises(text: str) -> None:
    _load_and_validate(text.encode("utf-8"))


# ------------------------------------------------------------------ YAML-ish documents

_KEYS = st.one_of(
    st.sampled_from(
        [
            "pilot",
            "sensors",
            "commands",
            "rules",
            "schedules",
            "policies",
            "mqtt",
            "device",
            "extends",
            "description",
            "probe",
            "expr",
            "every",
            "args",
            "platform",
            "unit",
            "device_class",
            "state_class",
            "options",
            "publish",
            "min_change",
            "max_silence",
            "when",
            "do",
            "for",
            "clear",
            "cron",
            "timezone",
            "command",
            "notify",
            "delay",
            "allow",
            "cooldowns",
            "tls",
            "topic_prefix",
            "port",
            "host",
            "name",
            "id",
            "icon",
            "entity_category",
            "object_id",
            "cpu_usage",
            "cpu_temp",
            "CPU-Usage",
            "core",
            "path",
            "chip",
        ]
    ),
    st.text(min_size=1, max_size=12),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "cpu.percent",
            "thermal.cpu",
            "thermal.sensor",
            "10s",
            "0s",
            "5m",
            "10 sec",
            "cpu_usage > 90",
            "avg(cpu_usage, '5m')",
            "().__class__",
            "9**9**9",
            "30 23 * * 1-5",
            "61 * * * *",
            "Europe/Berlin",
            "Mars/Base",
            "mdi:cpu-64-bit",
            "binary_sensor",
            "sensor",
            "measurement",
            "enum",
            "config",
            "%",
            "°C",
            "",
            "2024-01-01",
            "yes",
            "on",
            "0x1F",
            "1e3",
            "~",
        ]
    ),
    st.text(max_size=20),
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=5)),
    max_leaves=25,
)
_PROFILES = st.fixed_dictionaries(
    {"pilot": st.sampled_from([1, 1, 1, 2, "1"])},
    optional={
        "sensors": st.dictionaries(_KEYS, _TREES, max_size=4),
        "rules": st.dictionaries(_KEYS, _TREES, max_size=3),
        "schedules": st.dictionaries(_KEYS, _TREES, max_size=2),
        "policies": _TREES,
        "mqtt": _TREES,
        "device": _TREES,
        "commands": _TREES,
    },
)


def _dump(tree: object, flow: bool | None, indent: int, width: int) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = flow
    yaml.indent(mapping=indent, sequence=indent + 2, offset=indent)
    yaml.width = width
    yaml.representer.ignore_aliases = lambda data: True  # shared objects are written out, not aliased
    buf = io.StringIO()
    yaml.dump(tree, buf)
    return buf.getvalue()


@st.composite
def yamlish(draw: st.DrawFn) -> bytes:
    tree = draw(st.one_of(_TREES, _PROFILES))
    text = _dump(
        tree, draw(st.sampled_from([None, True, False])), draw(st.integers(2, 6)), draw(st.sampled_from([20, 80, 4096]))
    )
    raw = bytearray(text.encode("utf-8"))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        at = draw(st.integers(0, len(raw)))
        byte = draw(st.one_of(st.sampled_from(list(b":-[]{}#&*!\t\n '\"\x00\xff\xc3")), st.integers(0, 255)))
        if kind == "insert":
            raw[at:at] = bytes([byte])
        elif raw and at < len(raw):
            if kind == "delete":
                del raw[at]
            else:
                raw[at] = byte
    return bytes(raw)


@FUZZ
@given(yamlish())
def test_random_documents_never_raise(raw: bytes) -> None:
    _load_and_validate(raw)


@FUZZ
@given(_PROFILES, st.sampled_from([None, True, False]))
@example(
    {"pilot": 2, "sensors": {"cpu": {"probe": "cpu.percent", "publish": {"min_change": float("inf")}}}}, None
)  # a non-finite number must not hide the other schema errors
def test_profile_shaped_documents_load_and_validate(tree: dict, flow: bool | None) -> None:
    raw = _dump(tree, flow, 2, 80).encode("utf-8")
    doc, diags = loader.load_text(FILE, raw)
    _check_positions(raw, diags, files={FILE})
    if doc is None:
        # ruamel's emitter occasionally writes a flow key such as ':0' unquoted, which does not
        # parse back, and text may hold a line break editors do not show (NEL, U+2028/9); that must
        # be a positioned error, never an exception
        assert diags and {d.code for d in diags} <= {"syntax", "tab", "duplicate-key", "encoding"}, diags
        return
    found = validate_document(doc)
    _check_positions(raw, found, files={FILE})
    if tree.get("pilot") != 1:  # a wrong or missing version is always reported, whatever else is wrong
        assert any(d.path in ("$.pilot", "$") and d.severity == ERROR for d in found), found


# Plausible profiles: real probe names, durations, expressions, cron strings and
# references, so most examples get past the schema and registry stages and the
# semantic checks (durations, references, expressions, cron, HA lint) run too.
_DUR = st.sampled_from(["10s", "0s", "0.5s", "1ms", "5m", "1h30m", "0ms", " 3s ", "2d"])
_EXPR = st.sampled_from(
    [
        "a > 1",
        "avg(a, '5m')",
        "b and not c",
        "max(a, b, 3)",
        "a if b else c",
        "now - a",
        "round(a, 1)",
        "clamp(a, 0, 1)",
        "rate(a, '0s')",
        "'x' in a",
        "a == 'on'",
        "min_over(q, '1m')",
        "a + b + c",
        "zz > 1",
        "a.b",
        "a[0]",
    ]
)
_SENSOR = st.one_of(
    st.fixed_dictionaries(
        {
            "probe": st.sampled_from(
                [
                    "cpu.percent",
                    "thermal.cpu",
                    "battery.state",
                    "cpu.load",
                    "disk.used_percent",
                    "net.ip",
                    "system.boot_time",
                ]
            )
        },
        optional={
            "every": _DUR,
            "expire_after": _DUR,
            "device_class": st.sampled_from(["enum", "temperature", "timestamp", "battery"]),
            "state_class": st.sampled_from(["measurement", "total"]),
            "options": st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, unique=True),
            "unit": st.sampled_from(["%", "°C", "GHz"]),
            "platform": st.sampled_from(["sensor", "binary_sensor"]),
            "entity_category": st.sampled_from(["config", "diagnostic"]),
            "publish": st.fixed_dictionaries({}, optional={"min_change": st.floats(0, 10), "max_silence": _DUR}),
            "name": st.sampled_from(["Office PC cpu", "x", None]),
        },
    ),
    st.fixed_dictionaries(
        {"expr": _EXPR}, optional={"platform": st.sampled_from(["sensor", "binary_sensor"]), "every": _DUR}
    ),
)
_STEP = st.one_of(
    st.fixed_dictionaries({"command": st.sampled_from(["x", "y"])}),
    st.fixed_dictionaries({"delay": _DUR}),
    st.just({"notify": "hi"}),
)
_SCHEDULE = st.fixed_dictionaries({"do": st.lists(_STEP, min_size=1, max_size=2)}).flatmap(
    lambda d: st.one_of(
        _DUR.map(lambda every: {**d, "every": every}),
        st.sampled_from(
            ["* * * * *", "61 * * * *", "0 0 31 2 *", "*/0 * * * *", "0 0 * * 8", "a b c d e", "1 2 3"]
        ).map(lambda cron: {**d, "cron": cron}),
        st.sampled_from(["UTC", "Nope/Zone", "../../etc/passwd", "Europe/Berlin"]).map(
            lambda tz: {**d, "cron": "* * * * *", "timezone": tz}
        ),
    )
)
_PLAUSIBLE = st.fixed_dictionaries(
    {
        "pilot": st.just(1),
        "sensors": st.dictionaries(st.sampled_from(["a", "b", "c", "q"]), _SENSOR, min_size=1, max_size=4),
    },
    optional={
        "device": st.just({"name": "Office PC"}),
        "rules": st.dictionaries(
            st.sampled_from(["r1", "r2"]),
            st.fixed_dictionaries(
                {"when": _EXPR, "do": st.lists(_STEP, min_size=1, max_size=3)},
                optional={"for": _DUR, "clear": _EXPR, "cooldown": _DUR},
            ),
        ),
        "schedules": st.dictionaries(st.sampled_from(["s1", "s2"]), _SCHEDULE),
        "policies": st.fixed_dictionaries(
            {},
            optional={
                "allow": st.lists(st.sampled_from(["x", "y"]), unique=True),
                "cooldowns": st.dictionaries(st.sampled_from(["x"]), _DUR),
            },
        ),
    },
)


@FUZZ
@given(_PLAUSIBLE, st.sampled_from([None, True, False]))
def test_plausible_profiles_validate_without_raising(tree: dict, flow: bool | None) -> None:
    raw = _dump(tree, flow, 2, 80).encode("utf-8")
    doc, diags = loader.load_text(FILE, raw)
    assert doc is not None, diags
    found = validate_document(doc)
    _check_positions(raw, found, files={FILE})


# Plausible profiles with one value swapped for something of the wrong shape: the
# registry and semantic stages run beside the schema's errors (each skipping what
# the schema found wrong), so they must cope with any shape the schema refuses.
_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "x", "10s", "a > 1", "* * * * *", "{a}"]),
    st.just([]),
    st.just({}),
    st.lists(st.sampled_from([None, 1, "x", {"a": 1}]), max_size=2),
    st.dictionaries(st.sampled_from(["a", "probe", "do", "when", "cron", "args"]), st.sampled_from([None, 1, "x"])),
)


def _paths(node: object, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, path + (i,))
    return out


@st.composite
def damaged_profiles(draw: st.DrawFn) -> dict:
    tree = copy.deepcopy(draw(_PLAUSIBLE))  # strategies hand out shared objects (st.just)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(tree)[1:]))
        parent: object = tree
        for part in path[:-1]:
            parent = parent[part]  # type: ignore[index]
        parent[path[-1]] = copy.deepcopy(draw(_JUNK))  # type: ignore[index]
    return tree


@FUZZ
@given(damaged_profiles())
def test_wrongly_shaped_values_never_crash_the_later_stages(tree: dict) -> None:
    raw = _dump(tree, None, 2, 80).encode("utf-8")
    doc, diags = loader.load_text(FILE, raw)
    assert doc is not None, diags
    found = validate_document(doc)
    _check_positions(raw, found, files={FILE})
    assert len(found) == len(set(found)), "a finding reported twice"


# ------------------------------------------------------------------ alias bomb

BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)


def test_alias_bomb_is_the_classic_one() -> None:
    assert len(BILLION_LAUGHS.encode()) == 342
    assert BILLION_LAUGHS.count("&") == 9 and BILLION_LAUGHS.count("*") == 72


def test_alias_bomb_is_rejected_at_load() -> None:
    doc, diags = loader.load_text("bomb.yaml", BILLION_LAUGHS.encode())
    assert doc is None
    assert diags and all(d.severity == ERROR for d in diags)
    assert {d.code for d in diags} <= {"anchor", "alias"}
    assert any(d.code == "alias" for d in diags)
    first = min(diags, key=lambda d: (d.line, d.col))
    assert (first.line, first.col, first.code) == (1, 4, "anchor")
    _check_positions(BILLION_LAUGHS.encode(), diags, files={"bomb.yaml"})


def test_alias_bomb_file_never_reaches_validation(tmp_path: Path) -> None:
    from pilot.profile.validate import validate_file

    path = tmp_path / "bomb.yaml"
    path.write_text(
        "pilot: 1\nsensors:\n  lol:\n    probe: cpu.percent\n    args:\n      "
        + BILLION_LAUGHS.replace("\n", "\n      ").rstrip()
        + "\n"
    )
    doc, diags = validate_file(path)
    assert doc is None
    assert {d.code for d in diags} <= {"anchor", "alias"} and diags


@pytest.mark.parametrize(
    "text, message",
    [
        (b"%YAML 1.3\n---\na: 1\n", "unsupported %YAML version"),
        (b"a: " + b"1" * 5000 + b"\n", "cannot be read"),
        (b"? [a]\n: 1\n", "map keys must be plain text"),
    ],
)
def test_loader_edge_cases_are_diagnostics(text, message):
    """Regression (code review, 675ba29): an unknown %YAML version (an assertion in ruamel) and a
    scalar the constructor cannot build (ValueError) raised out of the loader instead of becoming
    diagnostics; a map key that is a list must stay a diagnostic too."""
    doc, diags = loader.load_text("t.yaml", text)
    assert doc is None and message in diags[0].message
