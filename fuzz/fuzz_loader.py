#!/usr/bin/env python3
"""atheris target: the YAML profile loader (pilot.profile.loader.load_text).

    python fuzz/fuzz_loader.py -runs=100000 [-max_len=8192] [CORPUS_DIR...]

Seeds worth giving it: the shipped profiles (`python fuzz/fuzz_loader.py -runs=100000 profiles/`
reads every file below profiles/ as a starting input; libFuzzer writes new finds there too, so copy
them to a scratch folder first). Properties: `load_text` never raises; it returns either a document
and no diagnostics, or no document and at least one error; every diagnostic is a `Diagnostic` for the
fuzzed file with a line within the input (0 for file-level findings) and a message; every recorded
position of a loaded document is at line and column 1 or later.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

with atheris.instrument_imports():
    from pilot.diagnostics import ERROR, WARNING, Diagnostic
    from pilot.profile import loader

FILE = "fuzz.yaml"
# ruamel prints a ReusedAnchorWarning for `&a ... &a`; the loader reports anchors itself (as errors)
warnings.simplefilter("ignore")


def TestOneInput(data: bytes) -> None:
    doc, diags = loader.load_text(FILE, data)
    # YAML breaks lines at \n, \r\n and a lone \r (and, in UTF-8, at NEL, LS and PS): count generously
    lines = (
        data.count(b"\n")
        + data.count(b"\r")
        + data.count(b"\xc2\x85")
        + data.count(b"\xe2\x80\xa8")
        + data.count(b"\xe2\x80\xa9")
        + 1
    )
    for d in diags:
        if not isinstance(d, Diagnostic) or d.severity not in (ERROR, WARNING) or d.file != FILE or not d.message:
            raise AssertionError(f"bad diagnostic {d!r}")
        if d.line != 0 and not (1 <= d.line <= lines + 1 and d.col >= 1):
            raise AssertionError(f"diagnostic outside the {lines}-line input: {d!r}")
    if doc is None:
        if not any(d.severity == ERROR for d in diags):
            raise AssertionError("no document and no error")
        return
    if diags:
        raise AssertionError(f"a document and diagnostics: {diags!r}")
    for pos in list(doc.positions.values()) + list(doc.key_positions.values()):
        if pos.line < 1 or pos.col < 1:
            raise AssertionError(f"position {pos!r}")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
