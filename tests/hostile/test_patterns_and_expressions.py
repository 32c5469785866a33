"""Hostile input on the evaluation and matching paths (issue "Hostile input, round two").

Each failure is reproduced against the real agent (`pilot run`, actions recorded with
PILOT_SYSTEM_RECORD, never performed) on a real Mosquitto, and each fix is checked as a class:

- one unsigned text value against a backtracking-prone `pattern` pinned paho's network thread
  (re.fullmatch, GIL held): later commands went unanswered and SIGTERM was ignored. Patterns now
  run on RE2, in linear time; what RE2 cannot run, `pilot validate` refuses at the pattern;
- `round(x, -999999999)` passed `pilot validate` and the agent computed 10**999999999. Every
  operation is bounded now; `validate` refuses what the agent would refuse, at its column, and
  values read from sensors at run time (a 4,000-digit number) are bounded by the evaluator,
  counted as the sensor's error;
- fourteen files each extending the next four times validated (the validator caches) but
  `pilot run` never started. compose() loads each file once per call and caps depth, list
  length and the number of files, each a positioned error at the `extends` entry.

Timeouts are generous (answers within 10 s on a shared 2-core machine): they tell "answered" from
"hung", they measure nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pilot import cli, patterns
from pilot.agent import policy
from pilot.plan import Command, Entity
from testkit.agent import pilot_run

DEVICE = "evalrig"
BASE = f"pilot/{DEVICE}"
EVIL_PATTERN = r"^([a-zA-Z0-9]+\s?)*$"  # the reported one: nested quantifiers over the same letters
EVIL_VALUES = [
    "a" * 40 + "!",  # the reported payload
    "ab " * 80 + "!",  # the same class, the whole 255 characters
    "1" * 254 + "-",
]


@pytest.fixture
def agents():
    started = []
    yield started
    for agent in started:
        agent.stop()


def start_agent(agents: list, profile: Path, broker, watcher, tmp_path: Path, env: dict | None = None):
    record = tmp_path / "calls.jsonl"
    since = time.monotonic()
    agent = pilot_run(
        profile, broker.port, tmp_path / "state", env={"PILOT_SYSTEM_RECORD": str(record), **(env or {})}
    ).start()
    agents.append(agent)
    online = watcher.wait_for(
        lambda m: m.topic == f"{BASE}/availability" and m.payload == b"online", timeout=30, since=since
    )
    assert online is not None, agent.output()
    time.sleep(0.3)  # subscriptions are made before `online`; slack for the watcher
    return agent


def send(watcher, command: str, payload: str, timeout: float = 10.0) -> dict | None:
    since = time.monotonic()
    watcher.publish(f"{BASE}/cmd/{command}/set", payload)
    msg = watcher.wait_for(lambda m: m.topic == f"{BASE}/cmd/{command}/result", timeout=timeout, since=since)
    return json.loads(msg.payload) if msg is not None else None


def assert_stops_on_sigterm(agent) -> None:
    agent.signal(signal.SIGTERM)
    try:
        code = agent.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail("the agent ignored SIGTERM:\n" + agent.tail())
    assert code == 0, agent.tail()


def validate(capsys, path: Path) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = cli.main(["validate", "--format", "json", str(path)])
    return code, json.loads(capsys.readouterr().out)["diagnostics"]


def errors_at(diags: list[dict]) -> list[tuple[str, int, int, str]]:
    return [(Path(d["file"]).name, d["line"], d["col"], d["message"]) for d in diags if d["severity"] == "error"]


# ------------------------------------------------------------------ 1. patterns


PATTERN_PROFILE = f"""pilot: 1
device: {{id: {DEVICE}, name: Eval rig}}
sensors:
  cpu: {{probe: cpu.percent, every: 30s}}
commands:
  label: {{action: mqtt.publish, args: {{topic: pilot/{DEVICE}/label, payload: "{{value}}"}}, platform: text,
          max_length: 255, pattern: '{EVIL_PATTERN}'}}
  tag: {{action: process.run, args: {{argv: [/bin/echo, "{{value}}"], value_arg: "{{value}}",
        value_pattern: '^(a+)+$'}}, platform: text, max_length: 255}}
  ping: {{action: process.run, args: {{argv: [/bin/echo, ping]}}, platform: button}}
"""


def test_a_catastrophic_pattern_value_is_refused_and_the_agent_stays_responsive(broker, watcher, agents, tmp_path):
    profile = tmp_path / "patterns.yaml"
    profile.write_text(PATTERN_PROFILE)
    agent = start_agent(agents, profile, broker, watcher, tmp_path)
    for value in EVIL_VALUES:
        time.sleep(1.1)  # an unsigned command's rejections are answered at most once a second
        body = send(watcher, "label", value)
        assert body is not None and (body["status"], body["reason"]) == ("rejected", "bad_value"), agent.tail()
        # paho's network thread is free: the next command is answered at once
        assert (send(watcher, "ping", "PRESS") or {}).get("status") == "ok", agent.tail()
    for value in ("a" * 60 + "b", "a" * 200 + "!"):  # process.run's value_pattern, run in the pool
        body = send(watcher, "tag", value)
        assert body is not None and body["status"] == "failed", agent.tail()
        assert (send(watcher, "ping", "PRESS") or {}).get("status") == "ok", agent.tail()
    # matching still works
    assert (send(watcher, "label", "hello world 42") or {}).get("status") == "ok", agent.tail()
    assert (send(watcher, "tag", "aaaa") or {}).get("status") == "ok", agent.tail()
    assert_stops_on_sigterm(agent)


@pytest.mark.parametrize(
    "pattern, says",
    [
        (r"(a)\1", "backreferences"),
        ("(?=a)b", "lookahead"),
        ("(?<!x)y", "lookahead/lookbehind"),
        ("(?>a+)b", "atomic"),
        ("a++b", "possessive"),
        (r"ab\Z", r"\z"),
        ("(?P<n>a)(?P=n)", "backreferences"),
        ("x" * (patterns.MAX_PATTERN + 1), "the limit is"),
        ("((a{100}){100}){100}", "repetition"),
        (r"\p{L}{1000}", "too large"),
    ],
)
def test_validate_refuses_a_pattern_the_engine_cannot_run_in_linear_time(capsys, tmp_path, pattern, says):
    profile = tmp_path / "p.yaml"
    quoted = pattern.replace("'", "''")
    profile.write_text(
        "pilot: 1\ncommands:\n"
        f"  t: {{action: process.run, args: {{argv: [/bin/true]}}, platform: text, pattern: '{quoted}'}}\n"
        "  r: {action: process.run, args: {argv: [/bin/echo, v], value_arg: v,\n"
        f"      value_pattern: '{quoted}'}}, platform: text}}\n"
    )
    code, diags = validate(capsys, profile)
    assert code == 1
    found = errors_at(diags)
    assert [(f, line, col) for f, line, col, _ in found] == [
        ("p.yaml", 3, 80),
        ("p.yaml", 5, 22),
    ], found
    assert all(says in message for *_, message in found), found
    # the agent agrees: the same pattern refuses every value (never raises, never backtracks)
    entity = Entity(platform="text", unique_id="t", name=None, default_entity_id="text.t", extra={"pattern": pattern})
    command = Command(id="t", action="process.run", entity=entity, command_topic="", result_topic="", state_topic=None)
    assert policy.check_value(command, "a") == (None, "bad_value")


# ------------------------------------------------------------------ 2. expressions


@pytest.mark.parametrize(
    "expr, col_in_expr, says",
    [
        ("round(cpu, -999999999)", 11, "from -20 to 20"),  # the reported one
        ("round(cpu, 999999999) > 1", 11, "from -20 to 20"),
        ("round(cpu, cpu) > 1", 11, "written in the expression"),
        ("cpu * 100000000000000000000 > 1", 6, "at most 10**18"),
        ("cpu > 1e999", 6, "too large for a float"),
        ("'ab' * 100000000 == cpu", 0, "text can only be joined"),
        ("cpu in (1, 2) * 100000000", 7, "only after `in`"),
        ("cpu > 1 // 0", 6, "divides by zero"),
    ],
)
def test_validate_and_run_refuse_an_unbounded_expression_at_its_column(
    capsys, tmp_path, broker, expr, col_in_expr, says
):
    profile = tmp_path / "expr.yaml"
    profile.write_text(
        f"pilot: 1\ndevice: {{id: {DEVICE}, name: Eval rig}}\nsensors:\n  cpu: {{probe: cpu.percent}}\n"
        f'rules:\n  hot:\n    when: "{expr}"\n    do: [{{notify: hot}}]\n'
    )
    code, diags = validate(capsys, profile)
    assert code == 1
    found = errors_at(diags)
    assert len(found) == 1 and found[0][:3] == ("expr.yaml", 7, 12 + col_in_expr) and says in found[0][3], found
    # pilot run compiles through the same validator: it refuses promptly, and names the place
    agent = pilot_run(profile, broker.port, tmp_path / "state").start()
    try:
        code = agent.wait(60)
    except subprocess.TimeoutExpired:
        agent.kill()
        pytest.fail("pilot run neither started nor refused the profile:\n" + agent.tail())
    assert code != 0 and f"expr.yaml:7:{12 + col_in_expr}" in agent.output(), agent.tail()


HUGE_VALUE_PROFILE = f"""pilot: 1
device: {{id: {DEVICE}, name: Eval rig}}
sensors:
  big: {{probe: sysfs.read, args: {{path: /sys/class/test/value, parse: int}}, every: 1s}}
  cubed: {{expr: "round(big * big * big * big, 2) + big % 7 + max(big, 1) // 3"}}
commands:
  ping: {{action: process.run, args: {{argv: [/bin/echo, ping]}}, platform: button}}
rules:
  odd:
    when: "big % 1000003 > round(big / 7, -20) * big"
    do: [{{publish: {{topic: "~/odd", payload: "odd"}}}}]
"""


def test_a_huge_sensor_value_is_bounded_by_the_evaluator_and_counted(broker, watcher, agents, tmp_path):
    sysroot = tmp_path / "sys"
    (sysroot / "class" / "test").mkdir(parents=True)
    (sysroot / "class" / "test" / "value").write_text("9" * 4000 + "\n")  # what any sysfs file may hold
    profile = tmp_path / "huge.yaml"
    profile.write_text(HUGE_VALUE_PROFILE)
    agent = start_agent(agents, profile, broker, watcher, tmp_path, env={"PILOT_SYSFS_ROOT": str(sysroot)})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not ("sensor cubed:" in agent.output() and "rule odd:" in agent.output()):
        time.sleep(0.2)
    assert "sensor cubed:" in agent.output() and "rule odd:" in agent.output(), agent.tail()
    assert "number too large" in agent.output(), agent.tail()
    for _ in range(3):  # still answering, sensor read after sensor read
        assert (send(watcher, "ping", "PRESS") or {}).get("status") == "ok", agent.tail()
        time.sleep(1)
    assert agent.running()
    assert_stops_on_sigterm(agent)


# ------------------------------------------------------------------ 3. extends fan-out


def fan_out(folder: Path, files: int, fan: int) -> Path:
    """files f01..fNN; each extends the next one `fan` times; the last extends nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, files + 1):
        text = "pilot: 1\n"
        if i == 1:
            text += f"device: {{id: {DEVICE}, name: Eval rig}}\n"
        if i < files:
            text += "extends: [" + ", ".join([f"f{i + 1:02d}.yaml"] * fan) + "]\n"
        text += f"sensors:\n  s{i:02d}: {{probe: cpu.percent, every: 30s}}\n"
        (folder / f"f{i:02d}.yaml").write_text(text)
    return folder / "f01.yaml"


def test_an_extends_fan_out_starts_the_agent(capsys, broker, watcher, agents, tmp_path):
    top = fan_out(tmp_path / "fan", 14, 4)  # the reported one: 4**13 paths to the last file
    code, diags = validate(capsys, top)
    assert code == 0, diags
    agent = start_agent(agents, top, broker, watcher, tmp_path)  # online within 30 s, not never
    assert_stops_on_sigterm(agent)


def test_an_extends_fan_out_too_deep_is_refused_at_the_entry(capsys, broker, tmp_path):
    top = fan_out(tmp_path / "deep", 30, 4)
    code, diags = validate(capsys, top)
    assert code == 1
    found = errors_at(diags)
    assert [f[:3] for f in found] == [("f17.yaml", 2, 11)], found
    assert "nested more than 16 levels deep" in found[0][3]
    agent = pilot_run(top, broker.port, tmp_path / "state").start()
    try:
        code = agent.wait(60)
    except subprocess.TimeoutExpired:
        agent.kill()
        pytest.fail("pilot run neither started nor refused the profile:\n" + agent.tail())
    assert code != 0 and "f17.yaml:2:11" in agent.output(), agent.tail()


def test_extends_caps_on_list_length_and_file_count_are_positioned(capsys, tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir()
    for i in range(100):
        (folder / f"leaf{i:03d}.yaml").write_text(f"pilot: 1\nsensors:\n  s{i}: {{probe: cpu.percent}}\n")
    (folder / "wide.yaml").write_text("pilot: 1\nextends: [" + ", ".join(["leaf000.yaml"] * 17) + "]\n")
    code, diags = validate(capsys, folder / "wide.yaml")
    found = errors_at(diags)
    seventeenth = len("extends: [") + 16 * len("leaf000.yaml, ") + 1
    assert code == 1 and [f[:3] for f in found] == [("wide.yaml", 2, seventeenth)], found
    assert "at most 16" in found[0][3]
    for m in range(10):  # ten bases of ten leaves each: 111 files
        leaves = ", ".join(f"leaf{m * 10 + j:03d}.yaml" for j in range(10))
        (folder / f"mid{m}.yaml").write_text(f"pilot: 1\nextends: [{leaves}]\n")
    (folder / "top.yaml").write_text("pilot: 1\nextends: [" + ", ".join(f"mid{m}.yaml" for m in range(10)) + "]\n")
    code, diags = validate(capsys, folder / "top.yaml")
    found = errors_at(diags)
    assert code == 1 and len(found) == 1 and "more than 64 files" in found[0][3], found
    assert found[0][0] == "mid5.yaml" and found[0][1] == 2, found  # the entry that crossed the cap
