"""File -> Plan: load, validate, and compile only what validated.

The one path from a profile file to a Plan. `pilot plan`, `pilot service install`
and the compile worker all take it, so none of them can compile a document that
was never validated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pilot.diagnostics import ERROR, Diagnostic
from pilot.plan import CompileResult
from pilot.profile.compiler import compile_document
from pilot.profile.loader import BaseCache, Document
from pilot.profile.validate import is_pack_manifest, validate_file


def compile_file(
    path: str | os.PathLike[str],
    *,
    cache: BaseCache | None = None,
    facts: dict[str, Any] | None = None,
    device_id: str | None = None,
) -> tuple[Document | None, CompileResult]:
    """(the composed document or None, the result). The result's diagnostics are its errors when
    there is no plan, and its warnings when there is one."""
    if is_pack_manifest(Path(path)):
        message = "this is a pack manifest, not a profile; give one of the pack's profiles"
        return None, CompileResult(None, (Diagnostic(str(path), 0, 0, ERROR, "", message, "pack"),))
    doc, diags = validate_file(path, cache=cache)
    errors = [d for d in diags if d.severity == ERROR]
    if doc is None or errors:
        return None, CompileResult(None, tuple(errors or diags))
    return doc, CompileResult(compile_document(doc, facts=facts, device_id=device_id), tuple(diags))
