"""Paths into the repository and a helper to write test files."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASIC = REPO / "tests" / "live" / "agent" / "profiles" / "basic.yaml"  # a small valid profile


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
