"""The invalid-profile corpus: every file states the diagnostics it must produce.

Each case in tests/profiles/invalid/ (not _bases/, which holds helper profiles
for the `extends` cases) opens with comment lines such as

    # expect: 12:7: error: $.sensors.cpu_temp.every: expected a duration
    # expect: _bases/bad_every.yaml:5:12: error: $.sensors.cpu_usage.every: expected a duration
    # expect: 3:1: error: tab character
    # expect-warning: 7:42: warning: $.sensors.cpu_usage.every: more often than once a second

that is `[FILE:]LINE:COL: SEVERITY: [PATH: ]MESSAGE-SUBSTRING`, the same shape as
`pilot validate` text output. FILE (relative to the case) is given when the
finding belongs to another file (a base reached through `extends`); PATH is
left out for load-stage findings, which have none. The test runs
`pilot validate --format json` on the case and requires the set of errors to
equal the expected set exactly (file, line, column, path), each message to
contain its substring, and every listed warning to be present.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from pilot import cli

CORPUS = Path(__file__).resolve().parents[2] / "profiles" / "invalid"
HELPERS = "_bases"

_EXPECT = re.compile(
    r"^(?:(?P<file>[^\s:]+\.ya?ml):)?(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning): "
    r"(?:(?P<path>\$\S*?):(?: |$))?(?P<msg>.*)$"
)


@dataclass(frozen=True)
class Expected:
    file: str
    line: int
    col: int
    severity: str
    path: str
    message: str

    @property
    def key(self) -> tuple:
        return (self.file, self.line, self.col, self.path)

    def shown(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.path}: {self.message}"


def case_files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*.yaml") if p.is_file())


def _real(path: str | Path) -> str:
    return os.path.realpath(str(path))


def expectations(case: Path) -> list[Expected]:
    out = []
    text = case.read_bytes().decode("utf-8", errors="replace")
    for raw in text.splitlines():
        if not raw.startswith("#"):
            break  # expectations live in the leading comment block
        m = re.match(r"#\s*(expect|expect-warning):\s*(.*)$", raw)
        if not m:
            continue
        spec = _EXPECT.match(m.group(2).strip())
        assert spec, f"{case.name}: cannot read expectation {raw!r}"
        sev = spec["sev"]
        assert (m.group(1) == "expect") == (sev == "error"), f"{case.name}: {raw!r}: kind and severity disagree"
        file = _real(case.parent / spec["file"]) if spec["file"] else _real(case)
        out.append(Expected(file, int(spec["line"]), int(spec["col"]), sev, spec["path"] or "", spec["msg"]))
    return out


def run_validate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main(["validate", "--format", "json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out)


_REPORTS: dict[Path, tuple[int, dict]] = {}


def case_report(capsys: pytest.CaptureFixture[str], case: Path) -> tuple[int, dict]:
    """`pilot validate --format json CASE`, run once per session (some hostile cases are slow)."""
    if case not in _REPORTS:
        _REPORTS[case] = run_validate(capsys, str(case))
    return _REPORTS[case]


def _match(expected: list[Expected], actual: list[dict]) -> tuple[list[Expected], list[dict]]:
    """Pair each expectation with one finding at the same place whose message contains it."""
    left = list(actual)
    unmatched = []
    for exp in sorted(expected, key=lambda e: -len(e.message)):
        hit = next(
            (
                d
                for d in left
                if (_real(d["file"]), d["line"], d["col"], d["path"]) == exp.key and exp.message in d["message"]
            ),
            None,
        )
        if hit is None:
            unmatched.append(exp)
        else:
            left.remove(hit)
    return unmatched, left


def _fmt(d: dict) -> str:
    return f"{d['file']}:{d['line']}:{d['col']}: {d['severity']}: [{d['code']}] {d['path']}: {d['message']}"


CASES = case_files()


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_invalid_profile(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = expectations(case)
    errors_expected = [e for e in expected if e.severity == "error"]
    assert errors_expected, f"{case.name} states no `# expect:` line"

    code, report = case_report(capsys, case)
    diags = report["diagnostics"]
    errors = [d for d in diags if d["severity"] == "error"]
    warnings = [d for d in diags if d["severity"] == "warning"]
    shown = "\n".join(_fmt(d) for d in diags) or "(no diagnostics)"

    assert code == 1, f"exit {code}, expected 1; diagnostics:\n{shown}"
    assert report["valid"] is False
    # The error set is exactly the stated one: same places...
    want = Counter(e.key for e in errors_expected)
    got = Counter((_real(d["file"]), d["line"], d["col"], d["path"]) for d in errors)
    assert got == want, (
        "error places differ\nexpected:\n" + "\n".join(e.shown() for e in errors_expected) + f"\nactual:\n{shown}"
    )
    # ...and each message says what the case states.
    missing, _ = _match(errors_expected, errors)
    assert not missing, "messages differ\nexpected:\n" + "\n".join(e.shown() for e in missing) + f"\nactual:\n{shown}"
    missing_w, _ = _match([e for e in expected if e.severity == "warning"], warnings)
    assert not missing_w, "warnings missing:\n" + "\n".join(e.shown() for e in missing_w) + f"\nactual:\n{shown}"
    for d in diags:
        assert d["line"] >= 1 and d["col"] >= 1, f"finding without a position: {_fmt(d)}"


# ------------------------------------------------------------- the corpus itself

STAGE_CODES = {
    "load": {"syntax", "tab", "duplicate-key", "anchor", "alias", "tag", "encoding", "empty", "multiple-documents"},
    "schema": {"schema"},
    "registry": {"registry"},
    "semantics": {"expression", "reference", "cron", "duration", "ha-lint"},
    "extends": {"extends", "extends-missing", "extends-cycle"},
}


def test_corpus_is_large_and_covers_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(CASES) >= 45, f"only {len(CASES)} invalid cases"
    prefixes = Counter(c.stem.split("_")[0] for c in CASES)
    for stage in ("load", "schema", "registry", "sem", "extends"):
        assert prefixes[stage] >= 1, f"no case for stage {stage}"
    codes: Counter[str] = Counter()
    for case in CASES:
        _, report = case_report(capsys, case)
        codes.update(d["code"] for d in report["diagnostics"] if d["severity"] == "error")
    for stage, wanted in STAGE_CODES.items():
        missing = wanted - set(codes)
        assert not missing, f"no case produces {stage} diagnostics with code(s) {sorted(missing)}"


def test_every_case_states_its_expectations() -> None:
    for case in CASES:
        exps = expectations(case)
        assert any(e.severity == "error" for e in exps), case.name
        for e in exps:
            if e.file != _real(case):
                assert Path(e.file).is_file(), f"{case.name}: expectation names a missing file {e.file}"


def test_helper_bases_are_not_cases() -> None:
    assert (CORPUS / HELPERS).is_dir()
    assert not any(HELPERS in c.parts for c in CASES)


# ------------------------------------------------------------- messages read well


def _corpus_messages(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    out = []
    for case in CASES:
        _, report = case_report(capsys, case)
        out += report["diagnostics"]
    return out


def test_type_errors_read_as_english(capsys: pytest.CaptureFixture[str]) -> None:
    # "expected <what>, got <what>": <what> is a noun phrase, never a whole sentence
    # (a top-level list once gave "expected a profile is a map that starts with ..., got a list").
    bad = [_fmt(d) for d in _corpus_messages(capsys) if re.match(r"^expected [^,]*\bis\b[^,]*, got ", d["message"])]
    assert not bad, "\n".join(bad)


def test_no_message_ends_in_an_empty_list(capsys: pytest.CaptureFixture[str]) -> None:
    # e.g. "unknown key 'unit'; allowed here: " for a probe that takes no args at all
    bad = [_fmt(d) for d in _corpus_messages(capsys) if d["message"].rstrip().endswith(":")]
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------- generated at test time


def _profile(tmp_path: Path, name: str, body: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


def test_zero_byte_file_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _profile(tmp_path, "empty.yaml", b"")
    code, report = run_validate(capsys, str(path))
    assert code == 1
    [d] = report["diagnostics"]
    assert (d["line"], d["col"], d["code"], d["severity"]) == (1, 1, "empty", "error")
    assert "empty" in d["message"]


def test_bom_then_nothing_is_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _profile(tmp_path, "bom.yaml", b"\xef\xbb\xbf")
    code, report = run_validate(capsys, str(path))
    assert code == 1
    assert [d["code"] for d in report["diagnostics"]] == ["empty"]


def test_invalid_utf8_written_at_test_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _profile(tmp_path, "latin1.yaml", "pilot: 1\ndevice:\n  name: Büro\n".encode("latin-1"))
    code, report = run_validate(capsys, str(path))
    assert code == 1
    [d] = report["diagnostics"]
    assert (d["line"], d["col"], d["code"]) == (3, 10, "encoding")
    assert "0xfc" in d["message"]


def test_fifty_thousand_unary_minus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expr = "-" * 50_000 + "1"
    path = _profile(tmp_path, "minus.yaml", f'pilot: 1\nsensors:\n  x: {{expr: "{expr}"}}\n')
    code, report = run_validate(capsys, str(path))
    assert code == 1
    errors = [d for d in report["diagnostics"] if d["severity"] == "error"]
    assert [(d["line"], d["col"], d["path"]) for d in errors] == [(3, 13, "$.sensors.x.expr")]
    assert "too long" in errors[0]["message"]


def test_oversized_file_is_refused_before_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    filler = "# " + "x" * 98 + "\n"
    path = _profile(tmp_path, "huge.yaml", "pilot: 1\n" + filler * 11_000)
    assert path.stat().st_size > 1024 * 1024
    code, report = run_validate(capsys, str(path))
    assert code == 1
    [d] = report["diagnostics"]
    assert d["code"] == "too-large" and d["severity"] == "error"
    assert d["line"] == 0  # a file-level finding
    assert "1 MiB" in d["message"]


def test_directory_of_cases_reports_every_file(capsys: pytest.CaptureFixture[str]) -> None:
    # Walking the folder reports, for each case, everything validating it alone does (walking
    # also validates the _bases/ helpers, whose findings may land in a case: the cycle case).
    code, report = run_validate(capsys, str(CORPUS))
    assert code == 1
    assert report["files"] == len(list(CORPUS.rglob("*.yaml")))
    by_file: dict[str, list] = {}
    for d in report["diagnostics"]:
        by_file.setdefault(_real(d["file"]), []).append(d)
    for case in CASES:
        _, alone = case_report(capsys, case)
        own = Counter(
            (d["line"], d["col"], d["path"], d["message"])
            for d in alone["diagnostics"]
            if _real(d["file"]) == _real(case)
        )
        walked = Counter((d["line"], d["col"], d["path"], d["message"]) for d in by_file.get(_real(case), []))
        assert not own - walked, case.name
