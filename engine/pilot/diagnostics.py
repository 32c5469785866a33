"""Positioned findings about a profile, and the reporters that print them.

Every problem found anywhere (YAML load, schema, registry, semantics) becomes a
Diagnostic carrying the file, line and column that hold the bad value and the
path to it in the document, so a user never has to guess where to look.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from pilot.escaping import escape

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int  # 1-based; 0 when the problem has no place in a file
    col: int  # 1-based
    severity: str
    path: str  # JSONPath-like: $.sensors.cpu_temp.every
    message: str
    code: str = ""

    def text(self) -> str:
        """One line: the file name, path and message may hold anything a profile or a file name
        can (a newline, an escape sequence), so they are escaped and cannot start a line of their own."""
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        path = f"{self.path}: " if self.path else ""
        return escape(f"{where}: {self.severity}: {path}{self.message}")


def json_path(parts: Sequence[object]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.replace("_", "a").replace("-", "a").isalnum():
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part), ensure_ascii=False)}]"
    return out


def has_errors(diags: Iterable[Diagnostic]) -> bool:
    return any(d.severity == ERROR for d in diags)


def _summary(diags: Sequence[Diagnostic], files: int) -> str:
    errors = sum(d.severity == ERROR for d in diags)
    warnings = sum(d.severity == WARNING for d in diags)
    noun = "file" if files == 1 else "files"
    return f"{files} {noun} checked: {errors} error(s), {warnings} warning(s)"


def report_text(diags: Sequence[Diagnostic], files: int) -> str:
    lines = [d.text() for d in diags]
    lines.append(_summary(diags, files))
    return "\n".join(lines)


def report_json(diags: Sequence[Diagnostic], files: int) -> str:
    return json.dumps(
        {
            "valid": not has_errors(diags),
            "files": files,
            "diagnostics": [asdict(d) for d in diags],
        },
        indent=2,
        ensure_ascii=False,
    )


def _gh_escape(value: str, *, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def report_github(diags: Sequence[Diagnostic], files: int) -> str:
    """GitHub Actions workflow commands: each finding becomes an inline annotation."""
    lines = []
    for d in diags:
        kind = "error" if d.severity == ERROR else "warning"
        props = f"file={_gh_escape(d.file, prop=True)}"
        if d.line:
            props += f",line={d.line},col={d.col}"
        title = _gh_escape(f"pilot {d.code or 'validate'}", prop=True)
        msg = _gh_escape(f"{d.path}: {d.message}" if d.path else d.message)
        lines.append(f"::{kind} {props},title={title}::{msg}")
    lines.append(_summary(diags, files))
    return "\n".join(lines)


REPORTERS = {"text": report_text, "json": report_json, "github": report_github}
