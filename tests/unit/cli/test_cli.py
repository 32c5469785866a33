"""The `pilot` command line, driven through `pilot.cli.main(argv)` as a user would run it."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from pilot import __version__, cli
from pilot.plan import Plan
from tests.support.files import write

CORPUS = Path(__file__).resolve().parents[2] / "profiles" / "invalid"

VALID = """\
pilot: 1
device:
  name: Test Box
sensors:
  cpu_usage: {probe: cpu.percent, every: 10s, unit: "%"}
  mem_used: {probe: memory.used_percent, every: 1m}
  busy:
    expr: "cpu_usage > 90"
    platform: binary_sensor
rules:
  overload:
    when: "cpu_usage > 95 and mem_used > 90"
    for: 2m
    do: [{notify: "the machine is overloaded"}]
schedules:
  nightly: {cron: "30 23 * * 1-5", timezone: Europe/Berlin, do: [{notify: "good night"}]}
"""

# one schema error (a bare number for `every`) on line 4, column 42
INVALID = "pilot: 1\nsensors:\n  cpu_temp: {probe: thermal.cpu}\n  cpu_usage: {probe: cpu.percent, every: 10}\n"

# valid, with exactly one warning: reading twice a second
WARNING_ONLY = "pilot: 1\nsensors:\n  cpu_usage: {probe: cpu.percent, every: 500ms}\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ validate


def test_validate_valid_profile_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "ok.yaml", VALID)
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0, out
    assert "error" not in out.replace("0 error(s)", "")
    assert "1 file checked: 0 error(s), 0 warning(s)" in out


def test_validate_text_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "bad.yaml", INVALID)
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"{path}:4:42: error: $.sensors.cpu_usage.every: "), lines[0]
    assert re.fullmatch(r".+:\d+:\d+: (error|warning): (\$\S*: )?.+", lines[0])
    assert lines[-1] == "1 file checked: 1 error(s), 0 warning(s)"


def test_validate_text_format_default_equals_explicit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "bad.yaml", INVALID)
    assert run(capsys, "validate", str(path)) == run(capsys, "validate", "--format", "text", str(path))


def test_validate_json_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "bad.yaml", INVALID)
    code, out, _ = run(capsys, "validate", "--format", "json", str(path))
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False and report["files"] == 1
    [d] = report["diagnostics"]
    assert set(d) >= {"file", "line", "col", "severity", "path", "message", "code"}
    assert (d["file"], d["line"], d["col"], d["severity"], d["path"], d["code"]) == (
        str(path),
        4,
        42,
        "error",
        "$.sensors.cpu_usage.every",
        "schema",
    )
    assert "duration" in d["message"]


def test_validate_json_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "ok.yaml", VALID)
    code, out, _ = run(capsys, "validate", "--format", "json", str(path))
    assert code == 0
    assert json.loads(out) == {"valid": True, "files": 1, "diagnostics": []}


def test_validate_github_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "bad.yaml", INVALID)
    warn = write(tmp_path, "warn.yaml", WARNING_ONLY)
    code, out, _ = run(capsys, "validate", "--format", "github", str(bad), str(warn))
    assert code == 1
    lines = out.strip().splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    warnings = [line for line in lines if line.startswith("::warning ")]
    assert len(errors) == 1 and len(warnings) == 1, lines
    assert errors[0].startswith(f"::error file={bad},line=4,col=42"), errors[0]
    assert warnings[0].startswith(f"::warning file={warn},line=3,col=42"), warnings[0]
    # the message follows the properties after `::`
    assert re.fullmatch(r"::error file=[^,]+,line=\d+,col=\d+(,[a-z]+=[^:]*)?::.+", errors[0]), errors[0]
    assert "$.sensors.cpu_usage.every" in errors[0].split("::", 2)[2]
    assert lines[-1] == "2 files checked: 1 error(s), 1 warning(s)"


def test_validate_github_escapes_newlines_and_percent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a key with '%' lands in the message; a workflow command must stay on one line
    path = write(tmp_path, "bad.yaml", 'pilot: 1\n"100%\\nkey": 1\n')
    code, out, _ = run(capsys, "validate", "--format", "github", str(path))
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1, out
    assert "100%25" in errors[0] and "%0A" in errors[0]


def test_strict_turns_warnings_into_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "warn.yaml", WARNING_ONLY)
    code, out, _ = run(capsys, "validate", "--format", "json", str(path))
    assert code == 0
    [d] = json.loads(out)["diagnostics"]
    assert d["severity"] == "warning"
    code, out, _ = run(capsys, "validate", "--strict", "--format", "json", str(path))
    assert code == 1
    report = json.loads(out)
    assert report["valid"] is False
    [d] = report["diagnostics"]
    assert d["severity"] == "error" and d["path"] == "$.sensors.cpu_usage.every"


def test_quiet_prints_errors_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    warn = write(tmp_path, "warn.yaml", WARNING_ONLY)
    code, out, _ = run(capsys, "validate", "--quiet", str(warn))
    assert code == 0
    assert "warning:" not in out


def test_validate_walks_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "a/ok.yaml", VALID)
    bad = write(tmp_path, "a/b/deeper/bad.yml", INVALID)
    write(tmp_path, "a/b/warn.yaml", WARNING_ONLY)
    write(tmp_path, "a/notes.txt", "not a profile: [")
    write(tmp_path, "a/README.md", "# not a profile")
    (tmp_path / "a" / "folder.yaml").mkdir()  # a directory with a profile's name is not a file
    code, out, _ = run(capsys, "validate", "--format", "json", str(tmp_path / "a"))
    assert code == 1
    report = json.loads(out)
    assert report["files"] == 3
    files = {d["file"] for d in report["diagnostics"]}
    assert str(bad) in files
    assert {d["severity"] for d in report["diagnostics"]} == {"error", "warning"}


def test_validate_directory_of_valid_profiles_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "one.yaml", VALID)
    write(tmp_path, "two/two.yaml", VALID)
    code, out, _ = run(capsys, "validate", str(tmp_path))
    assert code == 0, out
    assert "2 files checked: 0 error(s), 0 warning(s)" in out


def test_validate_invalid_corpus_folder(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--format", "json", str(CORPUS))
    assert code == 1
    report = json.loads(out)
    assert report["files"] >= 45
    assert all(d["line"] >= 1 for d in report["diagnostics"])


def test_validate_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml" in err and "no such file" in err


def test_validate_missing_path_among_good_ones_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = write(tmp_path, "ok.yaml", VALID)
    code, _, _ = run(capsys, "validate", str(ok), str(tmp_path / "nope.yaml"))
    assert code == 2


def _unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A profile whose opening fails with EACCES. Injected where the loader opens it, not made with
    chmod: root (CI) reads any file whatever its mode, and this must run there too."""
    import builtins

    from pilot.profile import loader

    path = write(tmp_path, "secret.yaml", VALID)
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if os.path.realpath(file) == os.path.realpath(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(loader, "open", refusing_open, raising=False)
    return path


def test_validate_unreadable_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _unreadable(tmp_path, monkeypatch)
    code, out, _ = run(capsys, "validate", "--format", "json", str(path))
    assert code == 2
    [d] = json.loads(out)["diagnostics"]
    assert (d["code"], d["severity"]) == ("unreadable", "error")
    assert d["message"] == "cannot read the file: Permission denied"
    assert d["file"].endswith("secret.yaml")


def test_unreadable_file_wins_over_invalid_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = write(tmp_path, "bad.yaml", INVALID)
    path = _unreadable(tmp_path, monkeypatch)
    code, out, _ = run(capsys, "validate", "--format", "json", str(bad), str(path))
    assert code == 2
    codes = sorted(d["code"] for d in json.loads(out)["diagnostics"])
    assert codes == ["schema", "unreadable"], codes  # both files reported; the exit code is the unreadable one


def test_validate_needs_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate")
    assert code == 2
    assert "usage" in err


def test_validate_unknown_format_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "ok.yaml", VALID)
    code, _, _ = run(capsys, "validate", "--format", "xml", str(path))
    assert code == 2


# ------------------------------------------------------------------ general


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"pilot {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", __version__)


def test_unknown_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "frobnicate")
    assert code == 2
    assert "frobnicate" in err


def test_no_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 2
    assert "validate" in out  # the help lists the subcommands


# ------------------------------------------------------------------ schema


def _consts(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if "const" in node:
            found.add(node["const"])
        for value in node.values():
            found |= _consts(value)
    elif isinstance(node, list):
        for value in node:
            found |= _consts(value)
    return found


def test_schema_is_valid_2020_12(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    probe = schema["$defs"]["sensor"]["properties"]["probe"]
    choices = _consts(probe)
    assert "cpu.percent" in choices
    from pilot.registry import PROBES

    assert choices == set(PROBES.names())


def test_schema_checks_profiles_like_the_validator(capsys: pytest.CaptureFixture[str]) -> None:
    from ruamel.yaml import YAML

    _, out, _ = run(capsys, "schema")
    validator = Draft202012Validator(json.loads(out))
    good = YAML(typ="safe").load(VALID)
    assert list(validator.iter_errors(good)) == []
    bad = YAML(typ="safe").load("pilot: 1\nsensors:\n  x: {probe: cpu.precent}\n")
    assert list(validator.iter_errors(bad))
    bad_args = YAML(typ="safe").load("pilot: 1\nsensors:\n  x: {probe: cpu.percent, args: {cores: 1}}\n")
    assert list(validator.iter_errors(bad_args))


def test_schema_pack(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema", "--pack")
    assert code == 0
    schema = json.loads(out)
    Draft202012Validator.check_schema(schema)
    assert "pack" in schema["required"] and "name" in schema["required"]
    validator = Draft202012Validator(schema)
    assert not list(validator.iter_errors({"pack": 1, "name": "x", "version": "1.0.0", "description": "d"}))
    assert list(validator.iter_errors({"pack": 1, "name": "x", "version": "one", "description": "d"}))


def test_schema_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "schema", "--write", str(tmp_path / "out"))
    assert code == 0
    profile = json.loads((tmp_path / "out" / "profile.v1.schema.json").read_text(encoding="utf-8"))
    pack = json.loads((tmp_path / "out" / "pack.v1.schema.json").read_text(encoding="utf-8"))
    _, printed, _ = run(capsys, "schema")
    assert profile == json.loads(printed)
    Draft202012Validator.check_schema(pack)


# ------------------------------------------------------------------ probes


def test_probes_json_lists_every_probe(capsys: pytest.CaptureFixture[str]) -> None:
    from pilot.registry import PROBES

    code, out, _ = run(capsys, "probes", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == PROBES.names()
    assert len(rows) == len({r["name"] for r in rows})
    for r in rows:
        assert r["status"] in ("ok", "unavailable", "needs args"), r
        assert r["summary"], r
        if r["status"] != "ok":
            assert isinstance(r["value"], str) and r["value"], r  # the reason
    cpu = next(r for r in rows if r["name"] == "cpu.percent")
    assert cpu["status"] == "ok", cpu
    assert isinstance(cpu["value"], (int, float)) and not isinstance(cpu["value"], bool)
    assert 0 <= cpu["value"] <= 100
    assert cpu["unit"] == "%"
    sensor = next(r for r in rows if r["name"] == "thermal.sensor")
    assert sensor["status"] == "needs args"


def test_probes_no_values_reads_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "probes", "--json", "--no-values")
    assert code == 0
    rows = json.loads(out)
    assert rows and all(r["status"] == "skipped" and r["value"] is None for r in rows)


def test_probes_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "probes", "--no-values")
    assert code == 0
    assert re.search(r"^cpu\.percent\s+CPU usage", out, re.M)


# ------------------------------------------------------------------ detect


def test_detect_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "detect", "--json")
    assert code == 0
    report = json.loads(out)
    facts = report["facts"]
    for key in ("os", "arch", "cpu.vendor", "has"):
        assert key in facts, key
    assert isinstance(facts["has"], list)
    assert facts["os"] in ("linux", "windows", "darwin", "freebsd")
    device_id = facts["device_id"]
    assert re.fullmatch(r"[0-9a-f]{12}", device_id), device_id
    hostname = socket.gethostname()
    assert device_id != hostname and hostname.lower() not in device_id
    assert isinstance(report["packs"], list)
    for pack in report["packs"]:
        assert {"name", "version", "matches"} <= set(pack)
        assert pack["matches"] or pack["why_not"]
    names = [p["name"] for p in report["packs"] if p["matches"]]
    assert report["best"] is None or report["best"] in names


def test_detect_device_id_is_stable(capsys: pytest.CaptureFixture[str]) -> None:
    first = json.loads(run(capsys, "detect", "--json")[1])["facts"]["device_id"]
    second = json.loads(run(capsys, "detect", "--json")[1])["facts"]["device_id"]
    assert first == second


def test_detect_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "detect")
    assert code == 0
    assert "Host facts" in out and "Profile packs" in out


def test_detect_says_which_optional_parts_of_the_best_pack_this_host_turns_on(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no desktop session (no session bus, no audio session, no system bus), the desktop pack's media
    and volume commands and its idle and media sensors are listed as off, each with the reason."""
    for name in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    code, out, _ = run(capsys, "detect", "--json")
    assert code == 0
    report = json.loads(out)
    if report["best"] not in ("linux-desktop", "linux-laptop"):
        pytest.skip(f"this host matches {report['best']}, which has no desktop part")
    optional = {(o["kind"], o["id"]): o for o in report["optional"]}
    for key in [("command", c) for c in ("play_pause", "next_track", "previous_track", "set_volume", "mute")] + [
        ("sensor", s) for s in ("user_idle", "screen_locked", "media_state", "volume")
    ]:
        assert key in optional, key
        assert optional[key]["works"] is False and optional[key]["why_not"], optional[key]
    assert all(o["works"] is (o["why_not"] is None) for o in report["optional"])
    code, text, _ = run(capsys, "detect")
    assert "Optional sensors and commands of that profile, on this host" in text
    assert re.search(r"^  \[off\] command play_pause +\(no session bus", text, re.M), text


def test_check_skips_an_optional_command_that_cannot_work_here(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no loginctl
    path = write(
        tmp_path,
        "p.yaml",
        "pilot: 1\ndevice: {name: Desk}\ncommands:\n  lock: {action: session.lock, optional: true}\n",
    )
    _code, out, _ = run(capsys, "check", str(path))
    assert "  [skip] lock (session.lock): loginctl (systemd-logind) is not installed\n" in out, out


# ------------------------------------------------------------------ plan


def _device_id(capsys: pytest.CaptureFixture[str]) -> str:
    return json.loads(run(capsys, "detect", "--json")[1])["facts"]["device_id"]


def test_plan_prints_state_topics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "ok.yaml", VALID)
    device_id = _device_id(capsys)
    code, out, _ = run(capsys, "plan", str(path))
    assert code == 0, out
    for sensor in ("cpu_usage", "mem_used", "busy"):
        assert f"pilot/{device_id}/state/{sensor}" in out
    assert f"homeassistant/device/{device_id}/config" in out


def test_plan_lists_child_sets_their_sensors_and_each_commands_guards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "pilot: 1\ndevice: {id: pve1, name: PVE}\nchildren:\n  guests:\n    source: proxmox.guests\n"
        "    optional: true\n    sensors: {status: {}, cpu: {}}\n"
        "    commands: {start: {}, stop: {policy: {cooldown: 1h}}}\npolicies: {allow: [guests.start]}\n"
    )
    code, out, _ = run(capsys, "plan", str(write(tmp_path, "pve.yaml", text)))
    assert code == 0, out
    section = out[out.index("Children (1)") : out.index("Policy")]
    assert section.splitlines()[1:] == [
        "  guests: proxmox.guests every 30s, optional; topics pilot/pve1/guests/<key>/...",
        "    sensors: status, cpu",
        "    command guests.start: no extra guard",
        "    command guests.stop: confirm 10s; cooldown 1h (not in policies.allow)",
        "",
    ]


def test_plan_uses_declared_device_id_and_prefix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("  name: Test Box\n", "  name: Test Box\n  id: testbox-1\nmqtt:\n  topic_prefix: lab\n")
    path = write(tmp_path, "ok.yaml", text)
    code, out, _ = run(capsys, "plan", str(path))
    assert code == 0, out
    assert "lab/testbox-1/state/cpu_usage" in out
    assert "pilot/" not in out.replace("pilot-", "")


def test_plan_json_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pilot.profile.compiler import compile_document
    from pilot.profile.validate import validate_file

    path = write(tmp_path, "ok.yaml", VALID)
    code, out, _ = run(capsys, "plan", "--json", str(path))
    assert code == 0
    data = json.loads(out)
    plan = Plan.from_dict(data)
    assert isinstance(plan, Plan)
    assert json.loads(json.dumps(plan.to_dict(), default=str)) == data
    assert Plan.from_dict(plan.to_dict()) == plan
    doc, diags = validate_file(path)
    assert doc is not None and not diags
    assert compile_document(doc) == plan
    device_id = _device_id(capsys)
    assert [s.state_topic for s in plan.sensors] == [
        f"pilot/{device_id}/state/{s}" for s in ("cpu_usage", "mem_used", "busy")
    ]
    assert [r.id for r in plan.rules] == ["overload"] and [s.id for s in plan.schedules] == ["nightly"]


def test_plan_of_invalid_profile_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "bad.yaml", INVALID)
    code, out, err = run(capsys, "plan", str(path))
    assert code == 1
    assert out == ""
    assert f"{path}:4:42: error:" in err


def test_validate_a_folder_named_like_a_profile_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.yaml").mkdir()
    code, out, err = run(capsys, "validate", str(tmp_path / "x.yaml"))
    assert code == 2, out
    assert "x.yaml: is a folder, not a profile file, and holds no *.yaml or *.yml file" in err
    assert "checked" not in out


def test_validate_an_empty_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = write(tmp_path, "ok.yaml", VALID)
    (tmp_path / "empty").mkdir()
    write(tmp_path, "empty/notes.txt", "not a profile")
    code, _, err = run(capsys, "validate", str(ok), str(tmp_path / "empty"))
    assert code == 2
    assert "empty: is a folder that holds no *.yaml or *.yml file" in err
