"""command.output against real programs: readings, hostile programs, argv that is not allowed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jsonschema
import pytest

from pilot.diagnostics import ERROR
from pilot.probes import ProbeContext, ProbeUnavailable
from pilot.probes import command as command_probe
from pilot.probes._background import Worker
from pilot.profile.validate import validate_file
from pilot.registry import PROBES

ENTRY = PROBES.get("command.output")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def program(tmp_path: Path):
    """program(body) -> the absolute path of a new executable /bin/sh script with that body."""
    count = [0]

    def make(body: str) -> str:
        count[0] += 1
        path = tmp_path / f"prog{count[0]}"
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o755)
        return str(path)

    return make


@pytest.fixture
def sensor():
    """sensor(**args) -> (reader, worker, clock): a command.output reader on a worker the test drives."""

    def make(**args):
        worker, clock = Worker(start=False), Clock()
        reader = ENTRY.factory(ProbeContext(), **args, clock=clock, worker=worker)
        return reader, worker, clock

    return make


def read_once(sensor, **args):
    reader, worker, _ = sensor(**args)
    assert reader() is None  # nothing has run yet: the read did not wait for the program
    worker.run_pending()
    return reader()


# ------------------------------------------------------------------ readings


@pytest.mark.parametrize(
    ("output", "expected"),
    [("42\n", 42), ("  -7 \n", -7), ("21.5", 21.5), ("1e3\n", 1000.0), (".5", 0.5)],
)
def test_a_number(program, sensor, output: str, expected: float) -> None:
    value = read_once(sensor, argv=[program(f"printf '{output}'")])
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("output", ["", "42 %", "nan", "inf", "1_000", "0x10", "4\n2", "forty-two"])
def test_output_that_is_not_one_number_gives_no_reading(program, sensor, output: str) -> None:
    assert read_once(sensor, argv=[program(f"printf '{output}'")]) is None


def test_text_is_the_first_non_empty_line_capped_at_255(program, sensor) -> None:
    assert read_once(sensor, argv=[program("echo; echo '  hello world  '; echo second")], parse="text") == "hello world"
    long = read_once(sensor, argv=[program("head -c 1000 /dev/zero | tr '\\0' x")], parse="text")
    assert long == "x" * 255


def test_json_values_by_path(program, sensor, tmp_path: Path) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text('{"a": {"b": [1, {"c": true}], "n": null, "t": "ok", "f": 2.5}, "list": [[3, 4]]}')
    argv = ["/bin/cat", str(doc)]
    assert read_once(sensor, argv=argv, parse="json", json_path="a.b[1].c") is True
    assert read_once(sensor, argv=argv, parse="json", json_path="a.b[0]") == 1
    assert read_once(sensor, argv=argv, parse="json", json_path="a.b[-1].c") is True
    assert read_once(sensor, argv=argv, parse="json", json_path="a.t") == "ok"
    assert read_once(sensor, argv=argv, parse="json", json_path="a.f") == 2.5
    assert read_once(sensor, argv=argv, parse="json", json_path="list[0][1]") == 4
    assert read_once(sensor, argv=argv, parse="json", json_path="a.n") is None


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("a", "the value is an object"),
        ("a.b", "the value is a list"),
        ("a.missing", "json_path: no 'missing' at step 1"),
        ("a.b[5]", "json_path: [5] is past the end of a list of 2"),
        ("a.b.0", "json_path: write [0] for a list index"),
        ("a[0]", "json_path: [0] needs a list at step 1"),
        ("a.t.x", "json_path: 'x' needs an object at step 2"),
    ],
)
def test_a_json_path_that_misses_gives_no_reading_and_says_why(
    sensor, tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str, problem: str
) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text('{"a": {"b": [1, {"c": true}], "t": "ok"}}')
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        assert read_once(sensor, argv=["/bin/cat", str(doc)], parse="json", json_path=path) is None
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.split(": no reading: ", 1)[1].startswith(problem), message


def test_json_that_is_not_json_or_nested_too_deep_gives_no_reading(program, sensor) -> None:
    assert read_once(sensor, argv=[program("echo '{\"a\": '")], parse="json") is None
    deep = "[" * 100000 + "]" * 100000
    assert read_once(sensor, argv=[program(f"printf '%s' '{deep}'")], parse="json", max_output=300000) is None


@pytest.mark.parametrize(
    ("output", "expected"),
    [("true", True), ("YES\n", True), ("on", True), ("1", True), ("false", False), ("No", False), ("0\n", False),
     ("maybe", None), ("2", None), ("", None)],
)  # fmt: skip
def test_bool_for_a_binary_sensor(program, sensor, output: str, expected: bool | None) -> None:
    assert read_once(sensor, argv=[program(f"printf '{output}'")], parse="bool") is expected


def test_bool_by_json_path_needs_a_json_true_or_false(sensor, tmp_path: Path) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text('{"ok": true, "text": "true", "n": 1}')
    argv = ["/bin/cat", str(doc)]
    assert read_once(sensor, argv=argv, parse="bool", json_path="ok") is True
    assert read_once(sensor, argv=argv, parse="bool", json_path="text") is None
    assert read_once(sensor, argv=argv, parse="bool", json_path="n") is None


def test_a_second_run_refreshes_the_reading_only_after_every(program, sensor, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    counter.write_text("0")
    argv = [program(f"n=$(($(cat {counter}) + 1)); echo $n > {counter}; echo $n")]
    reader, worker, clock = sensor(argv=argv, every="10s")
    worker.run_pending()
    assert reader() == 1
    clock.now += 9
    assert reader() == 1 and worker.pending() == []
    clock.now += 1
    assert reader() == 1  # the old reading while the new run waits for the worker
    worker.run_pending()
    assert reader() == 2


def test_by_default_the_program_runs_once_per_reading_of_the_sensor(program, sensor, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    counter.write_text("0")
    reader, worker, _ = sensor(argv=[program(f"n=$(($(cat {counter}) + 1)); echo $n > {counter}; echo $n")])
    worker.run_pending()
    for expected in (1, 2, 3):  # the clock never moves: only the readings set the pace
        assert reader() == expected
        worker.run_pending()


def test_long_command_lines_that_differ_only_at_the_end_do_not_share_a_run(tmp_path: Path) -> None:
    long = "x" * 400
    worker = Worker(start=False)
    a = ENTRY.factory(ProbeContext(), ["/bin/echo", long, "a"], "text", worker=worker)
    b = ENTRY.factory(ProbeContext(), ["/bin/echo", long, "b"], "text", worker=worker)
    assert worker.run_pending() == 2  # one run each: the shortened names did not merge them
    assert a() is not None and b() is not None
    keys = {command_probe.check(["/bin/echo", long, end]).key for end in "ab"}
    assert len(keys) == 2 and all(len(k) < 400 for k in keys)


def test_sensors_with_the_same_program_share_one_run(program, tmp_path: Path) -> None:
    doc = tmp_path / "doc.json"
    doc.write_text('{"x": 1, "y": 2}')
    worker, clock = Worker(start=False), Clock()
    x = ENTRY.factory(ProbeContext(), ["/bin/cat", str(doc)], "json", "x", clock=clock, worker=worker)
    y = ENTRY.factory(ProbeContext(), ["/bin/cat", str(doc)], "json", "y", clock=clock, worker=worker)
    assert worker.run_pending() == 1
    assert (x(), y()) == (1, 2)


# ------------------------------------------------------------------ hostile programs


def _problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pilot.probes"]


def test_a_program_that_hangs_is_stopped_and_gives_no_reading(program, sensor, caplog) -> None:
    path = program("echo 5; sleep 60")
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        assert read_once(sensor, argv=[path], timeout="500ms") is None
    assert _problems(caplog) == [
        f"probe command.output {path} (timeout 0.5s, max_output 65536): no reading: "
        "did not finish in time and was stopped"
    ]


def test_a_program_that_floods_is_killed_and_gives_no_reading(sensor, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        assert read_once(sensor, argv=["/usr/bin/yes", "1"], max_output=100) is None
    assert _problems(caplog)[0].endswith("no reading: wrote more than 100 bytes")


def test_a_program_that_fails_gives_no_reading_and_its_reason(program, sensor, caplog) -> None:
    path = program("echo 12; echo 'sensor chip not found' >&2; exit 2")
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        assert read_once(sensor, argv=[path]) is None
    assert _problems(caplog) == [
        f"probe command.output {path}: no reading: exited with status 2: sensor chip not found"
    ]


def test_a_failure_after_a_good_reading_is_no_reading_not_the_old_value(program, sensor, tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    reader, worker, clock = sensor(argv=[program(f"test -e {flag} && exit 1; echo 3")], every="5s")
    worker.run_pending()
    assert reader() == 3
    flag.write_text("")
    clock.now += 5
    reader()
    worker.run_pending()
    assert reader() is None


@pytest.mark.parametrize("parse", ["number", "text", "json"])
def test_non_utf8_output_gives_no_reading(program, sensor, caplog, parse: str) -> None:
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        assert read_once(sensor, argv=[program("printf '4\\3772'")], parse=parse) is None
    assert _problems(caplog)[0].endswith("no reading: the output is not UTF-8 (byte 1)")


@pytest.mark.parametrize("output", ["a\\033[31mred", "bell\\007", "nul\\000x", "\\302\\233c1", "\\342\\200\\256txt"])
def test_text_with_control_characters_gives_no_reading(program, sensor, output: str) -> None:
    assert read_once(sensor, argv=[program(f"printf '{output}'")], parse="text") is None


def test_a_parse_failure_is_logged_once_however_often_it_repeats(program, sensor, caplog) -> None:
    reader, worker, clock = sensor(argv=[program("echo many words")], every="1s")
    with caplog.at_level(logging.WARNING, logger="pilot.probes"):
        for _ in range(20):
            clock.now += 1
            reader()
            worker.run_pending()
            assert reader() is None
    assert len(_problems(caplog)) == 1


def test_shell_syntax_in_arguments_reaches_the_program_literally(
    sensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the program runs here: a shell would create ./pwned
    marker = tmp_path / "pwned"
    hostile = ["$(touch pwned)", "`touch pwned`", "; touch pwned", "| touch pwned", "&& touch pwned", "*"]
    assert read_once(sensor, argv=["/bin/echo", *hostile], parse="text") == " ".join(hostile)
    assert not marker.exists()


def test_the_agents_environment_never_reaches_the_program(sensor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOT_SECRET", "hunter2")
    assert read_once(sensor, argv=["/usr/bin/printenv", "PILOT_SECRET"], parse="text") is None  # exits 1: unset
    assert read_once(sensor, argv=["/usr/bin/printenv", "LANG"], parse="text") == "C.UTF-8"


# ------------------------------------------------------------------ what may run


def _reason(**args) -> str | None:
    return ENTRY.available(ProbeContext(), **args)


def test_only_an_absolute_executable_file_is_allowed(tmp_path: Path, program) -> None:
    assert _reason(argv=["echo", "hi"]) == "argv[0] must be an absolute path, not 'echo'"
    assert _reason(argv=["./prog"]) == "argv[0] must be an absolute path, not './prog'"
    assert _reason(argv=["/no/such/program"]) == "/no/such/program does not exist"
    assert _reason(argv=[str(tmp_path)]) == f"{tmp_path} is not an executable file"
    data = tmp_path / "data"
    data.write_text("#!/bin/sh\n")
    assert _reason(argv=[str(data)]) == f"{data} is not an executable file"
    assert _reason(argv=[program("echo 1")]) is None
    with pytest.raises(ProbeUnavailable, match="must be an absolute path"):
        ENTRY.factory(ProbeContext(), argv=["echo"], worker=Worker(start=False))


def test_a_program_others_could_replace_is_refused(tmp_path: Path, program) -> None:
    path = program("echo 1")
    os.chmod(path, 0o757)
    assert _reason(argv=[path]) == f"{path} is writable by every user, who could replace what runs"
    os.chmod(path, 0o755)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    inside = open_dir / "prog"
    inside.write_text("#!/bin/sh\necho 1\n")
    inside.chmod(0o755)
    assert _reason(argv=[str(inside)]) == f"{open_dir} is writable by every user, who could replace what runs"
    os.chmod(open_dir, 0o1777)  # sticky, like /tmp: only the file's owner (us) can replace it
    assert _reason(argv=[str(inside)]) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_program_owned_by_another_user_is_refused(program) -> None:
    path = program("echo 1")
    os.chown(path, 65534, 65534)
    assert _reason(argv=[path]) == f"{path} belongs to another user (uid 65534), who could replace what runs"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"argv": ["/bin/echo"], "timeout": "31s"}, "timeout must be longer than zero and at most 30s"),
        ({"argv": ["/bin/echo"], "timeout": "0s"}, "timeout must be longer than zero and at most 30s"),
        ({"argv": ["/bin/echo"], "every": "500ms"}, "every must be at least 1s"),
        ({"argv": ["/bin/echo"], "json_path": "a"}, "json_path needs parse: json or parse: bool"),
        ({"argv": ["/bin/echo"], "parse": "json", "json_path": "a..b"}, "json_path 'a..b' is not names"),
        ({"argv": ["/bin/echo"], "parse": "yaml"}, "parse must be one of number, text, json, bool"),
        ({"argv": ["/bin/echo"], "max_output": 0}, "max_output must be a whole number"),
        ({"argv": ["/bin/echo", "a\x00b"]}, "every argv element must be text"),
        ({"argv": ["/bin/echo"] * 65}, "argv must be a list of 1 to 64 strings"),
        ({"argv": "/bin/echo hi"}, "argv must be a list"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(args: dict, reason: str) -> None:
    why = _reason(**args)
    assert why is not None and why.startswith(reason), why


@pytest.mark.parametrize(
    "args",
    [
        {"argv": ["echo", "1"]},
        {"argv": ["bin/echo"]},
        {"argv": []},
        {"argv": ["/bin/echo", 3]},
        {"argv": ["/bin/echo"], "timeout": "31s"},
        {"argv": ["/bin/echo"], "timeout": "1m"},
        {"argv": ["/bin/echo"], "timeout": "30001ms"},
        {"argv": ["/bin/echo"], "timeout": 5},
        {"argv": ["/bin/echo"], "parse": "json", "json_path": "$.a"},
        {"argv": ["/bin/echo"], "parse": "json", "json_path": "a[0"},
        {"argv": ["/bin/echo"], "parse": "json", "json_path": "a\n"},
        {"argv": ["/bin/echo"], "parse": "json", "json_path": "a[?(@.x)]"},
        {"argv": ["/bin/echo"], "max_output": 2_000_000},
        {"argv": ["/bin/echo"], "shell": True},
    ],
)
def test_the_schema_refuses_what_cannot_be_allowed(args: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(args, ENTRY.params)


@pytest.mark.parametrize("timeout", ["30s", "0.5s", "29.9s", "500ms", "30000ms", "5 s"])
def test_the_schema_takes_timeouts_up_to_30s(timeout: str) -> None:
    jsonschema.validate({"argv": ["/bin/echo"], "timeout": timeout}, ENTRY.params)


def test_pilot_validate_points_at_a_bad_argument(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "pilot: 1\ndevice: {id: cmdrig, name: Programs}\nsensors:\n"
        "  ok: {probe: command.output, args: {argv: [/bin/echo, '1']}}\n"
        "  bad: {probe: command.output, args: {argv: [echo, '1'], timeout: 2m}}\n"
    )
    _, diags = validate_file(profile)
    errors = [d.text() for d in diags if d.severity == ERROR]
    assert len(errors) == 2, errors
    assert all(text.startswith(f"{profile}:5:") for text in errors), errors
    assert any("at most 30s" in text for text in errors), errors


def test_off_posix_it_says_it_is_not_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command_probe.os, "name", "nt")
    assert command_probe.program_problem("C:\\Tools\\temp.exe") == (
        "command.output is not supported on this system yet (POSIX only)"
    )
