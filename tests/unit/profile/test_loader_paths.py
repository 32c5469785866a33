"""libyaml (fast) and ruamel's pure-Python parser must load every profile to the same result.

The fast path is what runs wherever ruamel.yaml.clib is installed; the pure path is the fallback
and the source of syntax-error messages. Both see every file of both corpora here."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.profile import loader

REPO = Path(__file__).resolve().parents[3]
FILES = sorted(
    p for d in ("tests/profiles/valid", "tests/profiles/invalid", "profiles") for p in (REPO / d).rglob("*.yaml")
)


def load(path: Path, fast: bool, monkeypatch) -> tuple:
    monkeypatch.setattr(loader, "_FAST", fast)
    doc, diags = loader.load_text(str(path), path.read_bytes())
    if doc is None:
        return None, [(d.line, d.col, d.message) for d in diags]
    return (
        doc.data,
        sorted(doc.positions.items()),
        sorted(doc.key_positions.items()),
        sorted(doc.quoted),
        sorted(doc.blocks),
    ), []


@pytest.mark.skipif(not loader._c_parser_available(), reason="ruamel.yaml.clib not installed")
@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_fast_and_pure_loaders_agree(path, monkeypatch):
    assert load(path, True, monkeypatch) == load(path, False, monkeypatch)


def test_corpora_are_there():
    assert len(FILES) > 100


VALID = sorted((REPO / "tests/profiles/valid").glob("*.yaml"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_valid_profile_compiles_with_no_errors(path):
    """Agreement between the two parsers says nothing about validity: a valid case must compile to a
    plan. The only findings allowed are warnings about secret files this host does not have."""
    from pilot.diagnostics import WARNING
    from pilot.profile.pipeline import compile_file

    _doc, result = compile_file(path, facts={}, device_id="x")
    assert result.plan is not None and result.errors == (), [d.text() for d in result.diagnostics]
    for d in result.diagnostics:
        assert d.severity == WARNING and "cannot be read on this machine" in d.message, d.text()


def test_the_valid_corpus_is_there():
    assert len(VALID) == 12
