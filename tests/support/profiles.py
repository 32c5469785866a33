"""Profiles written inline in tests, compiled the way `pilot run` compiles them: validated first.

The compiler trusts its input (it runs only on documents the validator passed), so a test that
compiles a document nobody validated can pass on a profile no user could ever run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from pilot.diagnostics import ERROR
from pilot.plan import Plan
from pilot.profile.compiler import compile_document
from pilot.profile.validate import validate_file


def compile_text(
    text: str | bytes,
    *,
    facts: dict[str, Any] | None = None,
    device_id: str = "x",
    name: str = "p.yaml",
    folder: Path | None = None,
) -> Plan:
    """The Plan of a profile given as YAML text, written to `folder / name` (a temporary folder by
    default). The test fails with the validator's diagnostics if the profile has errors.

    `facts` default to none at all and the device id to "x", so the plan does not depend on the
    host the test runs on (a profile's own `device: {id: ...}` wins over device_id)."""
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="pilot-test-profile-") as tmp:
            return compile_text(text, facts=facts, device_id=device_id, name=name, folder=Path(tmp))
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    doc, diags = validate_file(path)
    errors = [d for d in diags if d.severity == ERROR]
    if doc is None or errors:
        pytest.fail(
            "the test's profile does not validate:\n" + "\n".join(d.text() for d in errors or diags), pytrace=False
        )
    return compile_document(doc, facts={} if facts is None else facts, device_id=device_id)
