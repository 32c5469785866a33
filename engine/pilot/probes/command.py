"""command.output: a program's output as a sensor. The escape hatch, without a shell.

The profile is the allowlist: the program (an absolute path) and every argument are fixed in
the profile, and nothing from the network, a command's value or another sensor can reach
them, so there is nothing to inject into. The program must be owned by root or by the
agent's own user and writable by no one else (as sudo asks of what it runs), since whoever can
replace the file chooses what the agent runs. It runs through `run_program` (no shell, a
cleared environment, its process group killed at a deadline of at most 30 s, output capped)
on the shared background worker, never on the telemetry loop's thread; a reader returns the
last good value or None at once.

A program that hangs, floods, exits non-zero or prints something that does not parse gives
"no reading" (nothing is published, Home Assistant keeps the last state) and one log line
naming the program and why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shlex
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pilot.params import params, prop
from pilot.probes._background import background_reader
from pilot.probes._common import Reading
from pilot.probes._context import ProbeContext, ProbeUnavailable
from pilot.probes._programs import ProgramResult, run_program
from pilot.registry import PROBES
from pilot.units import DURATION_PATTERN, parse_duration

log = logging.getLogger("pilot.probes")

MAX_TIMEOUT = 30.0
MAX_OUTPUT = 1 << 20
DEFAULT_MAX_OUTPUT = 65536
MIN_EVERY = 1.0
MAX_TEXT = 255  # Home Assistant's limit for a state
MAX_ARGS = 64
MAX_ARG_LENGTH = 4096
LOG_EVERY = 600.0
PARSERS = ("number", "text", "json", "bool")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}

# A timeout of at most 30 s written as a duration: 5s, 0.5s, 30s or 500ms.
TIMEOUT_PATTERN = r"^\s*(?:(?:30|[12]?[0-9])(?:\.[0-9]+)?\s*s|(?:[0-9]{1,4}|[12][0-9]{4}|30000)\s*ms)\s*$"
# A path into a JSON document: names joined by dots and [index] steps (no filters, no evaluator).
JSON_PATH = r"^(?:[A-Za-z0-9_-]+|\[-?[0-9]{1,6}\])(?:\.[A-Za-z0-9_-]+|\[-?[0-9]{1,6}\])*(?!\n)$"
_STEP = re.compile(r"\.?([A-Za-z0-9_-]+)|\[(-?[0-9]{1,6})\]")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # C0, C1, bidi

_PARAMS = params(
    {
        "argv": prop(
            "array",
            "The program (an absolute path) and its fixed arguments, one element each. Never run through a "
            "shell: quotes, $, ; and | reach the program as they are.",
            prefixItems=[{"type": "string", "pattern": "^/", "description": "Absolute path of the program."}],
            items={"type": "string", "maxLength": MAX_ARG_LENGTH, "pattern": "^[^\\x00]*$"},
            minItems=1,
            maxItems=MAX_ARGS,
        ),
        "parse": prop(
            "string",
            "How the output becomes the reading: number (the whole output, one number), text (its first "
            f"line, at most {MAX_TEXT} characters), json (a JSON document; with json_path, one value in it) or "
            "bool, for a binary_sensor (true/false, yes/no, on/off or 1/0; with json_path, a JSON true/false).",
            enum=list(PARSERS),
            default="number",
        ),
        "json_path": prop(
            "string",
            "With parse: json, the value to read: names joined by dots and [index] steps, such as "
            "sensors.cpu.temp or disks[0].health.",
            pattern=JSON_PATH,
            maxLength=200,
        ),
        "timeout": prop(
            "string",
            "Stop the program (its whole process group) after this long; at most 30s.",
            pattern=TIMEOUT_PATTERN,
            default="5s",
            **{"x-error": "expected a timeout of at most 30s, such as 5s or 500ms"},
        ),
        "max_output": prop(
            "integer",
            "Largest output kept, in bytes; a program that writes more gives no reading.",
            minimum=1,
            maximum=MAX_OUTPUT,
            default=DEFAULT_MAX_OUTPUT,
        ),
        "every": prop(
            "string",
            "How often the program runs (at least 1s), when it should run less often than the sensor is read; "
            "by default it runs once per reading of the sensor (each reading shows the previous run's answer).",
            pattern=DURATION_PATTERN,
        ),
    },
    required=("argv",),
    examples=[
        {"argv": ["/usr/local/bin/room-temperature", "--celsius"]},
        {"argv": ["/usr/bin/cat", "/run/backup/status.json"], "parse": "json", "json_path": "last.ok"},
        {"argv": ["/usr/bin/uname", "-r"], "parse": "text", "every": "1h"},
    ],
)


@dataclass(frozen=True)
class Spec:
    """The checked arguments of one command.output sensor."""

    argv: tuple[str, ...]
    parse: str
    path: tuple[str | int, ...] | None
    timeout: float
    max_output: int
    every: float | None  # None: once per reading of the sensor

    @property
    def key(self) -> str:
        """Names the run in logs and in the background queue; sensors with the same run share it."""
        shown = shlex.join(self.argv)
        if len(shown) > 300:  # shortened for the log, so the digest keeps two long command lines apart
            digest = hashlib.sha256("\x00".join(self.argv).encode("utf-8", "surrogatepass")).hexdigest()[:12]
            shown = f"{shown[:300]}... #{digest}"
        key = f"command.output {shown}"
        if (self.timeout, self.max_output) != (5.0, DEFAULT_MAX_OUTPUT):
            key += f" (timeout {self.timeout:g}s, max_output {self.max_output})"
        return key


def parse_json_path(text: str) -> tuple[str | int, ...]:
    """'a.b[2].c' -> ('a', 'b', 2, 'c'); ValueError for anything else."""
    if not isinstance(text, str) or len(text) > 200 or not re.fullmatch(JSON_PATH, text):
        raise ValueError(f"json_path {str(text)[:60]!r} is not names joined by dots and [index] steps")
    return tuple(int(index) if index else name for name, index in _STEP.findall(text))


def program_problem(program: str) -> str | None:
    """Why the agent should not run this file, or None: absolute, executable, replaceable by no one else."""
    if os.name != "posix":
        return "command.output is not supported on this system yet (POSIX only)"
    if not isinstance(program, str) or not program.startswith("/"):
        return f"argv[0] must be an absolute path, not {str(program)[:80]!r}"
    if "\x00" in program:
        return "argv[0] holds a NUL byte"
    try:
        info = os.stat(program)
    except OSError:
        return f"{program[:200]} does not exist"
    if not stat.S_ISREG(info.st_mode) or not os.access(program, os.X_OK):
        return f"{program[:200]} is not an executable file"
    trusted = {0, os.geteuid()}
    for path in (program, os.path.dirname(os.path.realpath(program)), os.path.dirname(program)):
        info = os.stat(path)
        if info.st_uid not in trusted:
            return f"{path[:200]} belongs to another user (uid {info.st_uid}), who could replace what runs"
        if info.st_mode & stat.S_IWOTH and not (path != program and info.st_mode & stat.S_ISVTX):
            return f"{path[:200]} is writable by every user, who could replace what runs"
    return None


def check(
    argv: Any = None,
    parse: str = "number",
    json_path: str | None = None,
    timeout: str | float = "5s",
    max_output: int = DEFAULT_MAX_OUTPUT,
    every: str | float | None = None,
) -> Spec:
    """The arguments as a Spec, or ProbeUnavailable saying in one line what is wrong."""
    if not isinstance(argv, (list, tuple)) or not argv or len(argv) > MAX_ARGS:
        raise ProbeUnavailable(f"argv must be a list of 1 to {MAX_ARGS} strings")
    if not all(isinstance(a, str) and "\x00" not in a and len(a) <= MAX_ARG_LENGTH for a in argv):
        raise ProbeUnavailable(f"every argv element must be text of at most {MAX_ARG_LENGTH} characters, no NUL")
    reason = program_problem(argv[0])
    if reason:
        raise ProbeUnavailable(reason)
    if parse not in PARSERS:
        raise ProbeUnavailable(f"parse must be one of {', '.join(PARSERS)}")
    path = None
    if json_path is not None:
        if parse not in ("json", "bool"):
            raise ProbeUnavailable("json_path needs parse: json or parse: bool")
        try:
            path = parse_json_path(json_path)
        except ValueError as exc:
            raise ProbeUnavailable(str(exc)) from None
    try:
        seconds = parse_duration(timeout)
        interval = None if every is None else parse_duration(every)
    except ValueError as exc:
        raise ProbeUnavailable(str(exc)) from None
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ProbeUnavailable(f"timeout must be longer than zero and at most {MAX_TIMEOUT:g}s")
    if interval is not None and interval < MIN_EVERY:
        raise ProbeUnavailable(f"every must be at least {MIN_EVERY:g}s")
    if isinstance(max_output, bool) or not isinstance(max_output, int) or not 1 <= max_output <= MAX_OUTPUT:
        raise ProbeUnavailable(f"max_output must be a whole number of bytes from 1 to {MAX_OUTPUT}")
    return Spec(tuple(argv), parse, path, seconds, max_output, interval)


# ------------------------------------------------------------------ parsing


class Unparsable(ValueError):
    """The output is not what `parse` asked for; the message says how, without echoing it."""


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unparsable(f"the output is not UTF-8 (byte {exc.start})") from None


def _number(text: str) -> int | float:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise Unparsable(f"the output is not one number ({len(text)} characters)" if text else "the output is empty")
    if re.fullmatch(r"[+-]?[0-9]{1,18}", text):
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        raise Unparsable("the output is not a finite number")
    return value


def _text(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if _CONTROL.search(line):
        raise Unparsable("the output holds control characters")
    return line[:MAX_TEXT]


def _walk(document: Any, path: tuple[str | int, ...]) -> Any:
    here = document
    for depth, step in enumerate(path):
        where = "the document" if depth == 0 else f"step {depth}"
        if isinstance(step, int):
            if not isinstance(here, list):
                raise Unparsable(f"json_path: [{step}] needs a list at {where}")
            if not -len(here) <= step < len(here):
                raise Unparsable(f"json_path: [{step}] is past the end of a list of {len(here)}")
            here = here[step]
        else:
            if isinstance(here, list) and step.isdigit():
                raise Unparsable(f"json_path: write [{step}] for a list index")
            if not isinstance(here, dict):
                raise Unparsable(f"json_path: {step!r} needs an object at {where}")
            if step not in here:
                raise Unparsable(f"json_path: no {step[:60]!r} at {where}")
            here = here[step]
    return here


def _json(text: str, path: tuple[str | int, ...] | None) -> Reading:
    try:
        document = json.loads(text)
    except RecursionError:
        raise Unparsable("the JSON is nested too deeply") from None
    except ValueError as exc:
        raise Unparsable(f"the output is not JSON ({str(exc).split(':')[0]})") from None
    value = _walk(document, path or ())
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise Unparsable("the value is not a finite number")
        return value
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise Unparsable("the value holds control characters")
        return value[:MAX_TEXT]
    kind = "an object" if isinstance(value, dict) else "a list"
    raise Unparsable(f"the value is {kind}, not a number, text or true/false (set json_path to one inside it)")


def _bool(text: str, path: tuple[str | int, ...] | None) -> bool:
    if path is not None:
        value = _json(text, path)
        if not isinstance(value, bool):
            raise Unparsable("the value is not true or false")
        return value
    word = _text(text).lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise Unparsable("the output is not true/false, yes/no, on/off or 1/0")


def parse_output(raw: bytes, parse: str, path: tuple[str | int, ...] | None = None) -> Reading:
    """The reading in a program's (whole, ok) output; Unparsable when it does not fit."""
    text = _utf8(raw)
    if parse == "bool":
        return _bool(text, path)
    if parse == "number":
        return _number(text)
    if parse == "text":
        return _text(text)
    return _json(text, path)


# ------------------------------------------------------------------ the probe


def _run(spec: Spec, runner: Callable[..., ProgramResult]) -> Callable[[], bytes]:
    def work() -> bytes:
        result = runner(list(spec.argv), timeout=spec.timeout, max_output=spec.max_output)
        if not result.ok:
            raise ProbeUnavailable(result.problem(spec.max_output) or "failed")
        return result.stdout

    return work


class _Parsed:
    """Parses each new output once and logs a parse failure once per kind every LOG_EVERY."""

    def __init__(self, spec: Spec, clock: Callable[[], float]) -> None:
        self.spec, self.clock = spec, clock
        self.raw: bytes | None = None
        self.value: Reading = None
        self.logged: dict[str, float] = {}

    def __call__(self, raw: bytes | None) -> Reading:
        if raw is None:
            return None
        if raw is not self.raw:
            self.raw = raw
            try:
                self.value = parse_output(raw, self.spec.parse, self.spec.path)
            except Unparsable as exc:
                self.value = None
                self._note(str(exc))
        return self.value

    def _note(self, problem: str) -> None:
        now = self.clock()
        last = self.logged.get(problem)
        if last is None or now - last >= LOG_EVERY:
            if len(self.logged) > 32:
                self.logged.clear()
            self.logged[problem] = now
            log.warning("probe %s: no reading: %s", self.spec.key, problem)


def _available(ctx: ProbeContext, **args: Any) -> str | None:
    try:
        check(**args)
    except ProbeUnavailable as exc:
        return str(exc)
    except TypeError as exc:  # an argument the schema would have refused
        return str(exc)
    return None


@PROBES.register(
    "command.output",
    params=_PARAMS,
    defaults={"platform": "sensor", "icon": "mdi:console"},
    available=_available,
)
def command_output(
    ctx: ProbeContext,
    argv: list[str],
    parse: str = "number",
    json_path: str | None = None,
    timeout: str | float = "5s",
    max_output: int = DEFAULT_MAX_OUTPUT,
    every: str | float | None = None,
    *,
    runner: Callable[..., ProgramResult] = run_program,
    clock: Callable[[], float] = time.monotonic,
    worker: Any = None,
) -> Callable[[], Reading]:
    """A program's output as a sensor: a number, a line of text, on/off, or a value in its JSON.

    The program is an absolute path with fixed arguments from the profile, run without a
    shell, with only PATH and LANG in its environment, in its own process group that is
    killed at the timeout (at most 30 s), its output capped at max_output bytes. It runs on
    Pilot's one background thread, once per reading of the sensor (or every `every`), and each
    reading publishes the last answer.
    A program that hangs, floods, fails or prints what does not parse gives no reading and a
    log line that says why.
    """
    spec = check(argv, parse, json_path, timeout, max_output, every)
    raw = background_reader(
        spec.key,
        _run(spec, runner),
        every=spec.every,
        stale_after=None if spec.every is None else 3 * spec.every + spec.timeout,
        clock=clock,
        worker=worker,
    )
    parsed = _Parsed(spec, clock)
    return lambda: parsed(raw())
