"""Each promise the docs make names the test that fails when the promise breaks: every one exists.

docs/security.md's threat model names its tests in the last column; docs/security.md, mqtt.md,
rules.md, robustness.md and console.md end with "## Where each promise is tested", a table of promise and test.
A test reference is `tests/path.py::test_name` (`*` matches part of a name); later names in the same
cell may omit the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LEDGER = "## Where each promise is tested"
DOCS_WITH_LEDGER = [
    "security.md",
    "mqtt.md",
    "rules.md",
    "robustness.md",
    "console.md",
    "desktop.md",
    "programs.md",
    "plugins.md",
]


def table_rows(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]


def missing_tests(cell: str) -> list[str]:
    """The references in one table cell that name no existing file or test function."""
    missing, current = [], None
    refs = re.findall(r"`(tests/[\w/]+\.py)?(?:::([\w*]+))?", cell)
    assert refs, f"no test named in: {cell[:120]}"
    for file, name in refs:
        if file:
            current = REPO / file
            if not current.is_file():
                missing.append(file)
                current = None
        if name and current is not None:
            pattern = name.replace("*", r"\w*")
            if not re.search(rf"^(?:async )?def {pattern}\(", current.read_text(encoding="utf-8"), re.M):
                missing.append(f"{current.relative_to(REPO)}::{name}")
    return missing


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def test_every_test_the_threat_model_names_exists():
    text = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    rows = table_rows(section(text, "## Threat model"))
    assert len(rows) >= 15
    missing = [m for row in rows for m in missing_tests(row[3])]
    assert missing == []


@pytest.mark.parametrize("doc", DOCS_WITH_LEDGER)
def test_every_promise_in_the_ledger_names_an_existing_test(doc):
    text = (REPO / "docs" / doc).read_text(encoding="utf-8")
    assert LEDGER in text, f"docs/{doc} has no '{LEDGER}' section"
    rows = table_rows(section(text, LEDGER))
    assert rows, f"docs/{doc}: the ledger is empty"
    missing = [m for row in rows for m in missing_tests(row[-1])]
    assert missing == []


def test_missing_tests_finds_a_name_that_does_not_exist():
    assert missing_tests("`tests/unit/test_doc_claims.py::test_no_such_thing`") == [
        "tests/unit/test_doc_claims.py::test_no_such_thing"
    ]
    assert missing_tests("`tests/unit/test_doc_claims.py::test_missing_tests_finds_*`") == []
    assert missing_tests("`tests/no/such/file.py::test_x`") == ["tests/no/such/file.py"]
