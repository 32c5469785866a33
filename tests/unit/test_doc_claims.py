"""docs/security.md's threat model names the tests that show each defence: every one of them exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_test_the_threat_model_names_exists():
    text = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    table = text[text.index("## Threat model") : text.index("## Commands")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 15
    missing = []
    for row in rows:
        current = None
        for file, name in re.findall(r"`(tests/[\w/]+\.py)?(?:::([\w*]+))?", row.split("|")[4]):
            if file:
                current = REPO / file
                assert current.is_file(), f"{file} does not exist"
            if name:
                source = current.read_text(encoding="utf-8")
                pattern = name.replace("*", r"\w*")
                if not re.search(rf"^def {pattern}\(", source, re.M):
                    missing.append(f"{current.relative_to(REPO)}::{name}")
    assert missing == []
