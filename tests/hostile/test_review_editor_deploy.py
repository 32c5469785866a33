"""A review of the profile editor and the signed deploy, as an attacker: each test is a hole found and closed.

The editor validates browser text inside the console's own process, so anything that crashes the YAML parser
takes every signed-in user's console down with it; these run the parse in a child process to see a crash as
what it is (a signal), not as a dead test runner.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

VALIDATE = """
import json, sys
from pilot.console.editor import text
print(json.dumps(text.validate(sys.stdin.read())))
"""


def validate_in_child(source: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", VALIDATE], input=source, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"the validator died with {done.returncode}: {done.stderr[-500:]}"
    return json.loads(done.stdout)


@pytest.mark.parametrize("indicator", ["- ", "? ", "- ? ", ": "])
def test_compact_block_nesting_on_one_line_is_refused_not_a_segfault(indicator):
    # 40,000 nested block collections in 80-160 KB: libyaml's composer recursed in C until the stack ran out
    answer = validate_in_child(indicator * 40_000 + "1\n")
    assert answer["ok"] is False
    first = answer["diagnostics"][0]
    assert first["line"] == 1 and "nested more than" in first["message"]
